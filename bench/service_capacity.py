#!/usr/bin/python3
"""Capacity figures for docs/operations.md: for several pool.generic_min
values, how long sofaasd takes from exec to READY=1 (over a fake
NOTIFY_SOCKET, as under systemd), and what each generic worker costs in
memory (RSS) and in daemon file descriptors.

Baseline measured in the same run: spawning the same number of
`sofaas-worker --version`-like trivial processes (/bin/true) one after the
other, so the startup figure is shown as a ratio to plain fork+exec cost.
Prints numbers; never fails on them.

    /usr/bin/python3 bench/service_capacity.py [BUILD_DIR]
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

BUILD = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "build")
SOFAASD = os.path.join(BUILD, "bin", "sofaasd")
RUNS = 3


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def children(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        return [int(x) for x in f.read().split()]


def one_run(workers, tmp):
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = os.path.join(tmp, "notify")
    if os.path.exists(path):
        os.unlink(path)
    ns.bind(path)
    ns.settimeout(60)
    state = os.path.join(tmp, "state")
    shutil.rmtree(state, ignore_errors=True)
    env = dict(os.environ, NOTIFY_SOCKET=path)
    t0 = time.perf_counter()
    p = subprocess.Popen([SOFAASD, "--listen", "127.0.0.1:%d" % free_port(),
                          "--state-dir", state, "--workers", str(workers),
                          "--max-workers", str(workers + 1),
                          "--log-level", "warn"],
                         env=env, stderr=subprocess.DEVNULL)
    try:
        while not ns.recv(4096).startswith(b"READY=1"):
            pass
        ready_s = time.perf_counter() - t0
        kids = children(p.pid)
        worker_rss = sum(rss_kb(k) for k in kids) / max(1, len(kids))
        daemon_rss = rss_kb(p.pid)
        fds = len(os.listdir("/proc/%d/fd" % p.pid))
        return ready_s, worker_rss, daemon_rss, fds
    finally:
        p.terminate()
        p.wait(30)
        ns.close()


def baseline(n):
    t0 = time.perf_counter()
    for _ in range(n):
        subprocess.run(["/bin/true"])
    return time.perf_counter() - t0


def main():
    tmp = tempfile.mkdtemp(prefix="sofaas-cap-")
    print("%-8s %12s %12s %8s %14s %14s %10s" % (
        "workers", "ready_ms", "base_ms", "ratio", "worker_rss_kb",
        "daemon_rss_kb", "daemon_fds"))
    for n in (1, 4, 16, 32):
        res = [one_run(n, tmp) for _ in range(RUNS)]
        ready = sorted(r[0] for r in res)[RUNS // 2]
        base = sorted(baseline(n) for _ in range(RUNS))[RUNS // 2]
        w_rss = sum(r[1] for r in res) / RUNS
        d_rss = sum(r[2] for r in res) / RUNS
        fds = res[-1][3]
        print("%-8d %12.1f %12.1f %8.2f %14.0f %14.0f %10d" % (
            n, ready * 1e3, base * 1e3, ready / base if base else 0,
            w_rss, d_rss, fds))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
