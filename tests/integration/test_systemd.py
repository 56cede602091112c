"""systemd integration: the notify protocol over a fake NOTIFY_SOCKET
(exact messages, their order, the watchdog) and socket activation with a
pre-bound listening socket handed over as fd 3 (LISTEN_FDS/LISTEN_PID)."""
import fcntl
import os
import signal
import socket
import subprocess
import time
import uuid

import pytest
import requests

from conftest import SOFAASD, free_port


class FakeNotify:
    """A datagram socket standing in for systemd's notification socket."""

    def __init__(self, path=None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if path is None:  # abstract: "@name" in NOTIFY_SOCKET
            name = "sofaas-test-" + uuid.uuid4().hex
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self.sock.bind(path)
            self.address = path
        self.messages = []

    def recv(self, timeout=15):
        self.sock.settimeout(timeout)
        m = self.sock.recv(4096).decode()
        self.messages.append(m)
        return m

    def wait_for(self, prefix, timeout=15):
        """Receives until a message starts with prefix; returns it."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = self.recv(max(0.1, deadline - time.time()))
            if m.startswith(prefix):
                return m
        raise AssertionError("no %r in %r" % (prefix, self.messages))

    def drain(self, quiet=0.3):
        try:
            while True:
                self.recv(quiet)
        except socket.timeout:
            pass

    def close(self):
        self.sock.close()


def lifecycle(messages):
    """The state messages, without watchdog pings and status refreshes."""
    return [m for m in messages
            if m != "WATCHDOG=1" and not m.startswith("STATUS=")]


def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def start_plain(tmp_path, env, args=(), name="state"):
    """Starts sofaasd without waiting on /healthz (READY is what we watch)."""
    port = free_port()
    full = dict(os.environ)
    full.update(env)
    logf = open(tmp_path / (name + ".log"), "ab")
    proc = subprocess.Popen(
        [SOFAASD, "--listen", "127.0.0.1:%d" % port, "--state-dir",
         str(tmp_path / name), "--workers", "2", "--log-level", "debug"]
        + list(args), stdout=logf, stderr=subprocess.STDOUT, env=full)
    return proc, port, logf


def stop(proc, logf):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    logf.close()
    return proc.returncode


@pytest.mark.parametrize("abstract", [False, True])
def test_notify_sequence(tmp_path, abstract):
    n = FakeNotify(None if abstract else str(tmp_path / "notify"))
    proc, port, logf = start_plain(tmp_path, {"NOTIFY_SOCKET": n.address})
    try:
        ready = n.wait_for("READY=1")
        # READY=1 comes only once the daemon serves and the generic pool
        # (--workers 2) is up, and it carries the status line.
        assert requests.get("http://127.0.0.1:%d/healthz" % port,
                            timeout=5).status_code == 200
        assert ready.startswith("READY=1\nSTATUS=serving on 127.0.0.1:%d;"
                                % port), ready
        assert "workers: 2 generic" in ready, ready
        assert "functions 0" in ready, ready

        proc.send_signal(signal.SIGHUP)
        reloading = n.wait_for("RELOADING=1")
        lines = reloading.split("\n")
        assert lines[0] == "RELOADING=1"
        assert lines[1].startswith("MONOTONIC_USEC=")
        assert int(lines[1].split("=")[1]) > 0
        assert lines[2] == "STATUS=reloading configuration"
        again = n.wait_for("READY=1")
        assert "STATUS=serving on" in again

        proc.send_signal(signal.SIGTERM)
        n.wait_for("STOPPING=1")
        assert proc.wait(15) == 0
        n.drain()
    finally:
        stop(proc, logf)
        n.close()
    seq = [m.split("\n")[0] for m in lifecycle(n.messages)]
    assert seq == ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"], \
        n.messages
    assert "STOPPING=1\nSTATUS=stopping" in n.messages
    # No watchdog was asked for, so none is fed.
    assert "WATCHDOG=1" not in n.messages


def test_watchdog_pings_from_the_loop(tmp_path):
    n = FakeNotify(str(tmp_path / "notify"))
    # 400 ms period: the daemon must ping every 200 ms.
    proc, port, logf = start_plain(
        tmp_path, {"NOTIFY_SOCKET": n.address, "WATCHDOG_USEC": "400000"})
    try:
        n.wait_for("READY=1")
        for _ in range(3):
            n.wait_for("WATCHDOG=1", timeout=10)
        # A loop stalled by SIGSTOP sends nothing: the pings come from the
        # loop, not from a helper thread.
        proc.send_signal(signal.SIGSTOP)
        time.sleep(0.1)
        n.drain(quiet=0.2)
        before = len(n.messages)
        time.sleep(1.0)
        n.drain(quiet=0.1)
        assert len(n.messages) == before, n.messages[before:]
        proc.send_signal(signal.SIGCONT)
        n.wait_for("WATCHDOG=1", timeout=10)
    finally:
        proc.send_signal(signal.SIGCONT)
        stop(proc, logf)
        n.close()


def test_watchdog_for_another_pid_is_ignored(tmp_path):
    n = FakeNotify(str(tmp_path / "notify"))
    proc, port, logf = start_plain(
        tmp_path, {"NOTIFY_SOCKET": n.address, "WATCHDOG_USEC": "200000",
                   "WATCHDOG_PID": "1"})
    try:
        n.wait_for("READY=1")
        n.drain(quiet=0.5)
    finally:
        stop(proc, logf)
        n.close()
    assert "WATCHDOG=1" not in n.messages


def test_workers_never_see_the_notify_socket(tmp_path):
    n = FakeNotify(str(tmp_path / "notify"))
    proc, port, logf = start_plain(tmp_path, {"NOTIFY_SOCKET": n.address,
                                              "WATCHDOG_USEC": "10000000"})
    try:
        n.wait_for("READY=1")
        kids = children(proc.pid)
        assert len(kids) >= 2
        for k in kids:
            with open("/proc/%d/environ" % k, "rb") as f:
                env = f.read()
            assert b"NOTIFY_SOCKET" not in env
            assert b"WATCHDOG_USEC" not in env
    finally:
        stop(proc, logf)
        n.close()


# ---- socket activation --------------------------------------------------

def listening_socket():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    return s


def activated(tmp_path, listen_pid_expr="$$", names="other:http"):
    """Starts sofaasd the way systemd does with two sockets: fd 3 (named
    "other") and fd 4 (named "http", the one to serve on). bash (dash cannot
    redirect fds above 9) sets LISTEN_PID to its own pid, which exec keeps.
    Returns (proc, http socket, other socket, --listen port, log file, log
    path)."""
    other_sock, http_sock = listening_socket(), listening_socket()
    h_other = fcntl.fcntl(other_sock.fileno(), fcntl.F_DUPFD, 50)
    h_http = fcntl.fcntl(http_sock.fileno(), fcntl.F_DUPFD, 50)
    unused = free_port()  # --listen: must stay unused when fds are passed
    env = dict(os.environ)
    env["SOFAAS_NAMES"] = names
    logp = tmp_path / "act.log"
    logf = open(logp, "ab")
    script = ('LISTEN_PID=%s LISTEN_FDS=2 LISTEN_FDNAMES="$SOFAAS_NAMES" '
              'exec "$0" "$@" 3<&%d 4<&%d %d<&- %d<&-'
              % (listen_pid_expr, h_other, h_http, h_other, h_http))
    proc = subprocess.Popen(
        ["bash", "-c", script, SOFAASD, "--listen", "127.0.0.1:%d" % unused,
         "--state-dir", str(tmp_path / "state"), "--workers", "1",
         "--log-level", "debug"],
        pass_fds=[h_other, h_http], stdout=logf, stderr=subprocess.STDOUT,
        env=env)
    os.close(h_other)
    os.close(h_http)
    return proc, http_sock, other_sock, unused, logf, logp


def wait_http(port, proc, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "sofaasd exited: %s" % proc.returncode
        try:
            r = requests.get("http://127.0.0.1:%d/healthz" % port, timeout=1)
            if r.status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    raise AssertionError("no answer on port %d" % port)


def test_listen_fds_serves_on_the_passed_socket(tmp_path):
    proc, http_sock, other_sock, unused, logf, logp = activated(tmp_path)
    port = http_sock.getsockname()[1]
    inode = os.fstat(http_sock.fileno()).st_ino
    try:
        wait_http(port, proc)
        # The configured address was not bound.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", unused), timeout=2).close()
        log = logp.read_text()
        assert "socket_activated=yes" in log
        assert "addr=127.0.0.1:%d" % port in log
        # The passed socket (fd 4 here) is close-on-exec: no worker holds
        # it. (fd 3 would be overwritten by the worker's IPC channel anyway.)
        kids = children(proc.pid)
        assert kids
        for k in kids:
            for fd in os.listdir("/proc/%d/fd" % k):
                try:
                    target = os.readlink("/proc/%d/fd/%s" % (k, fd))
                except OSError:
                    continue
                assert target != "socket:[%d]" % inode, (k, fd)
    finally:
        assert stop(proc, logf) == 0
        http_sock.close()
        other_sock.close()


def test_listen_fds_several_without_http_name_fail(tmp_path):
    proc, http_sock, other_sock, unused, logf, logp = activated(
        tmp_path, names="a:b")
    try:
        assert proc.wait(30) == 1
        assert "none named http" in logp.read_text()
    finally:
        stop(proc, logf)
        http_sock.close()
        other_sock.close()


def test_listen_fds_for_another_pid_are_ignored(tmp_path):
    proc, http_sock, other_sock, unused, logf, logp = activated(
        tmp_path, listen_pid_expr="1")
    try:
        wait_http(unused, proc)
        assert "socket_activated=no" in logp.read_text()
    finally:
        stop(proc, logf)
        http_sock.close()
        other_sock.close()


def test_listen_fds_not_a_listening_socket_fails(tmp_path):
    """A datagram socket as fd 3 is a configuration error, said clearly."""
    pre = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    pre.bind(("127.0.0.1", 0))
    high = fcntl.fcntl(pre.fileno(), fcntl.F_DUPFD, 50)
    logp = tmp_path / "bad.log"
    with open(logp, "wb") as logf:
        proc = subprocess.run(
            ["bash", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@" 3<&%d '
             '%d<&-' % (high, high), SOFAASD, "--state-dir", str(tmp_path / "state")],
            pass_fds=[high], stdout=logf, stderr=subprocess.STDOUT,
            timeout=30)
    os.close(high)
    pre.close()
    assert proc.returncode == 1
    assert "not a listening stream socket" in logp.read_text()


def test_signals_while_draining_are_ignored(daemon_factory, tmp_path):
    """SIGHUP or a second SIGTERM during the drain must neither kill the
    daemon (default signal action) nor restart the lifecycle."""
    import concurrent.futures
    from conftest import testfn

    n = FakeNotify(str(tmp_path / "notify"))
    d = daemon_factory(env={"NOTIFY_SOCKET": n.address})
    try:
        n.wait_for("READY=1")
        d.deploy("sleepy", testfn("sleepy"))
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            f = ex.submit(d.invoke, "sleepy", params={"ms": "1500"})
            time.sleep(0.5)  # the call is in a worker now
            d.proc.send_signal(signal.SIGTERM)
            n.wait_for("STOPPING=1")
            d.proc.send_signal(signal.SIGHUP)
            d.proc.send_signal(signal.SIGTERM)
            r = f.result(timeout=30)
        assert r.status_code == 200 and r.text == "slept 1500\n"
        assert d.proc.wait(30) == 0
        n.drain()
    finally:
        n.close()
    seq = [m.split("\n")[0] for m in lifecycle(n.messages)]
    assert seq == ["READY=1", "STOPPING=1"], n.messages
    assert "SIGHUP ignored" in d.log()
