"""The worker sandbox (issue 3, docs/sandbox.md), attacked by hostile
functions (tests/sandbox/hostile.c) through the real daemon.

Every attack must be refused with its documented error: a call the seccomp
filter refuses kills the instance and the invocation (or the deploy, for
attacks made while loading) answers 500 sandbox_violation naming the call;
a path or resource the kernel refuses otherwise comes back as the errno the
function saw. After each one the daemon keeps serving and a good function
still answers.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import uuid

import pytest
import requests

from conftest import BUILD, SOFAASD, Daemon, example, testfn

ROOT = os.geteuid() == 0


def hostile(stage=""):
    return os.path.join(BUILD, "tests", "sandbox",
                        "hostile%s.so" % ("_" + stage if stage else ""))


# attack -> (argument or None, the system call the daemon must name)
TRAPPED = {
    "fork": (None, "clone"),
    "vfork": (None, "vfork"),
    # posix_spawn blocks every signal around clone, so the kernel kills the
    # instance with SIGSYS without running the reporter: refused, unnamed.
    "system": (None, "(unreported"),
    "execve": (None, "execve"),
    "connect_unix": ("/run/systemd/notify", "socket"),
    "connect_abstract": ("@sofaas-test-abstract", "socket"),
    "ptrace": (None, "ptrace"),
    "vm_readv": (None, "process_vm_readv"),
    "kill_parent": (None, "kill"),
    "kill_all": (None, "kill"),
    "mount": (None, "mount"),
    "unshare": (None, "unshare"),
    "setns": (None, "setns"),
    "keyctl": (None, "keyctl"),
    "bpf": (None, "bpf"),
    "perf_event_open": (None, "perf_event_open"),
    "io_uring_setup": (None, "io_uring_setup"),
    "userfaultfd": (None, "userfaultfd"),
    "int80": (None, "getpid (20, i386)"),
    "setown": (None, "fcntl"),
}


def attack_path(name, arg=None):
    if name == "connect_abstract":
        name = "connect_unix"
    q = "?attack=" + name
    if arg is not None:
        q += "&arg=" + requests.utils.quote(str(arg), safe="/@")
    return q


def still_serving(d):
    """The daemon is alive and a good function answers."""
    assert d.proc.poll() is None, d.log()
    r = d.invoke("hello")
    assert r.status_code == 200, r.text
    assert r.text == "Hello from sofaas!\n"


def deploy_with(d, name, so, config=None, params=None, expect=201):
    with open(so, "rb") as f:
        body = f.read()
    headers = d.headers()
    if config is not None:
        headers["X-Sofaas-Config"] = json.dumps(config)
    r = requests.put(d.url("/v1/functions/" + name), data=body,
                     params=params, headers=headers, timeout=30)
    if expect is not None:
        assert r.status_code == expect, (r.status_code, r.text)
    return r


def assert_violation(r, syscall, d):
    assert r.status_code == 500, (r.status_code, r.text)
    err = r.json()["error"]
    assert err["code"] == "sandbox_violation", err
    assert "sandbox refused system call " + syscall in err["message"], err
    assert "sandbox refused system call " + syscall in d.log()


@pytest.fixture
def sbd(daemon):
    """A daemon with hello and the handle-stage hostile function. The
    hostile function is given file_access so that the layers behind the
    serve-stage file ban (Landlock, the private /tmp, quotas) are what each
    attack meets; test_files_are_refused_while_serving covers the ban."""
    daemon.deploy("hello", example("hello"))
    deploy_with(daemon, "hostile", hostile(), config={"file_access": True})
    return daemon


# ---- attacks from sofaas_handle -------------------------------------------

@pytest.mark.parametrize("name", sorted(TRAPPED))
def test_trapped_from_handle(sbd, name):
    arg, syscall = TRAPPED[name]
    r = sbd.invoke("hostile", attack_path(name, arg))
    assert_violation(r, syscall, sbd)
    still_serving(sbd)
    # The replacement instance of the hostile function works too.
    r = sbd.invoke("hostile", "?attack=getpid")
    assert r.status_code == 200 and int(r.text) > 0


def test_connect_to_daemon_port_is_refused(sbd):
    r = sbd.invoke("hostile", attack_path("connect_tcp", sbd.port))
    assert_violation(r, "socket", sbd)
    still_serving(sbd)


def test_ptrace_leaves_daemon_untraced(sbd):
    assert_violation(sbd.invoke("hostile", attack_path("ptrace")), "ptrace",
                     sbd)
    with open("/proc/%d/status" % sbd.proc.pid) as f:
        assert "TracerPid:\t0\n" in f.read()
    still_serving(sbd)


def test_kill_sibling_worker_is_refused(sbd):
    sbd.deploy("victim", hostile())
    pid = int(sbd.invoke("victim", "?attack=getpid").text)
    r = sbd.invoke("hostile", attack_path("kill_pid", pid))
    assert_violation(r, "kill", sbd)
    # Same instance, still alive.
    assert int(sbd.invoke("victim", "?attack=getpid").text) == pid
    still_serving(sbd)


def test_threads_are_allowed(sbd):
    # pthread_create tries clone3 (ENOSYS here), then clone with
    # CLONE_THREAD, which the filters allow, also after init.
    r = sbd.invoke("hostile", "?attack=thread")
    assert (r.status_code, r.text) == (200, "thread ok")


def test_clone3_gets_enosys(sbd):
    r = sbd.invoke("hostile", attack_path("clone3"))
    assert r.status_code == 200
    assert r.text.startswith("refused: ENOSYS"), r.text
    still_serving(sbd)


@pytest.fixture
def sbd_var():
    """Like sbd, but the state directory is outside /tmp, so the private
    /tmp does not hide it and Landlock (and the uid) must refuse."""
    state = "/var/tmp/sofaas-test-" + uuid.uuid4().hex
    os.makedirs(state)
    d = Daemon(os.path.join(state, "state")).start()
    try:
        d.deploy("hello", example("hello"))
        d.deploy("hostile", hostile())
        yield d
    finally:
        d.stop()
        shutil.rmtree(state, ignore_errors=True)


def test_sigsys_cannot_be_taken_from_the_reporter(sbd):
    r = sbd.invoke("hostile", "?attack=sigsys")
    assert r.status_code == 200
    assert r.text.startswith("refused: EINVAL"), r.text
    # ... so the next refused call is still reported and named.
    assert_violation(sbd.invoke("hostile", "?attack=mount"), "mount", sbd)
    still_serving(sbd)


@pytest.mark.parametrize("what", ["shadow", "sqlite", "artifact"])
def test_reading_outside_the_sandbox_is_refused(sbd_var, what):
    sbd = sbd_var
    if what == "shadow":
        path = "/etc/shadow"
    elif what == "sqlite":
        path = os.path.join(sbd.state_dir, "sofaas.db")
    else:
        sha = sbd.deploy("other", example("echo")).json()["sha256"]
        path = os.path.join(sbd.state_dir, "artifacts", sha + ".so")
    assert os.path.exists(path)
    r = sbd.invoke("hostile", attack_path("read", path))
    assert r.status_code == 200
    assert r.text.startswith("refused: EACCES"), r.text
    still_serving(sbd)


def test_state_under_host_tmp_is_hidden(sbd):
    # With the state directory under /tmp, the private /tmp hides it.
    path = os.path.join(sbd.state_dir, "sofaas.db")
    assert os.path.exists(path)
    r = sbd.invoke("hostile", attack_path("read", path))
    assert r.text.startswith("refused: ENOENT"), r.text


@pytest.mark.parametrize("where", ["state", "var_tmp", "host_tmp_dir"])
def test_writing_outside_tmp_is_refused(sbd, tmp_path, where):
    name = "escape-" + uuid.uuid4().hex
    path = {"state": os.path.join(sbd.state_dir, name),
            "var_tmp": os.path.join("/var/tmp", name),
            "host_tmp_dir": str(tmp_path / name)}[where]
    r = sbd.invoke("hostile", attack_path("write", path))
    assert r.status_code == 200
    assert r.text.startswith("refused: E"), r.text
    assert not os.path.exists(path)
    still_serving(sbd)


def test_tmp_is_private_to_the_instance(sbd):
    name = "private-" + uuid.uuid4().hex
    r = sbd.invoke("hostile", attack_path("write_tmp", name))
    assert r.status_code == 200 and r.text == "wrote /tmp/" + name, r.text
    assert not os.path.exists("/tmp/" + name)


@pytest.mark.parametrize("tmp_mb", [3, None])
def test_filling_tmp_stops_at_the_quota(sbd, tmp_mb):
    # The worker mounts its /tmp at the default size (64) before LOAD and
    # resizes it at LOAD for any other tmp_mb: both must hold.
    params = {"file_access": "true"}
    if tmp_mb is not None:
        params["tmp_mb"] = str(tmp_mb)
    name = "filler-%s" % (tmp_mb or "default")
    deploy_with(sbd, name, hostile(), params=params)
    r = sbd.invoke(name, "?attack=fill_tmp")
    assert r.status_code == 200
    assert r.text.startswith("refused: ENOSPC"), r.text
    written = int(r.text.split(" after ")[1].split(" ")[0])
    quota = (tmp_mb or 64) << 20
    # 1 MiB files: the last whole one that fit is within 1 MiB of it.
    assert quota - (2 << 20) <= written <= quota, written
    still_serving(sbd)


def test_only_ipc_and_stdio_are_open(sbd):
    r = sbd.invoke("hostile", "?attack=fds")
    assert r.status_code == 200
    assert sorted(r.text.split(), key=int) == ["0", "1", "2", "3"], r.text


def test_only_ipc_and_stdio_are_open_in_init(daemon):
    # Also none of what the worker prepared before it was given the
    # function (host network namespace, Landlock rulesets; sandbox.md).
    deploy_with(daemon, "fdsinit", hostile("init"),
                config={"env": {"ATTACK": "fds"}})
    r = daemon.invoke("fdsinit")
    assert r.status_code == 200
    assert sorted(r.text.split(), key=int) == ["0", "1", "2", "3"], r.text


def test_environment_is_only_the_configured_env(daemon):
    deploy_with(daemon, "envfn", hostile(),
                config={"env": {"GREETING": "hi", "ANSWER": "42"}})
    r = daemon.invoke("envfn", "?attack=env")
    assert r.status_code == 200
    assert sorted(r.text.split("\n")[:-1]) == ["ANSWER=42", "GREETING=hi"]


def test_status_shows_seccomp_and_no_new_privs(sbd):
    r = sbd.invoke("hostile", "?attack=status")
    assert r.status_code == 200
    assert "\nSeccomp:\t2\n" in r.text
    assert "\nNoNewPrivs:\t1\n" in r.text
    assert "\nCapEff:\t0000000000000000\n" in r.text
    if ROOT:
        assert "\nUid:\t65534\t65534\t65534\t65534\n" in r.text
        # Emptied before the worker was given the function (sandbox.md).
        assert "\nCapBnd:\t0000000000000000\n" in r.text
        assert "\nCapAmb:\t0000000000000000\n" in r.text


def test_files_are_refused_while_serving(daemon):
    """Without file_access (the default) a serving instance cannot open or
    create any file, not even in its own /tmp: EACCES, and it keeps
    serving. With file_access the same calls reach the other layers."""
    daemon.deploy("hello", example("hello"))
    daemon.deploy("hostile", hostile())
    for attack in [attack_path("write_tmp", "x"),
                   attack_path("read", "/etc/hostname"),
                   attack_path("status")]:
        r = daemon.invoke("hostile", attack)
        assert r.status_code == 200, r.text
        assert r.text.startswith("refused: EACCES"), (attack, r.text)
        assert "ESCAPED" not in r.text
    assert daemon.invoke("hello").text == "Hello from sofaas!\n"
    r = requests.patch(daemon.url("/v1/functions/hostile"),
                       data=json.dumps({"file_access": True}))
    assert r.status_code == 200 and r.json()["config"]["file_access"] is True
    r = daemon.invoke("hostile", attack_path("write_tmp", "x"))
    assert r.text == "wrote /tmp/x", r.text
    r = daemon.invoke("hostile", attack_path("status"))
    assert "\nSeccomp:\t2\n" in r.text


def test_serve_stage_forbids_new_executable_memory(sbd):
    r = sbd.invoke("hostile", "?attack=exec_mem")
    assert_violation(r, "mmap", sbd)
    still_serving(sbd)


# ---- network: true --------------------------------------------------------

def test_network_true_reaches_a_loopback_listener(daemon):
    daemon.deploy("hello", example("hello"))
    deploy_with(daemon, "netfn", hostile(), params={"network": "true"})
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        srv.settimeout(10)
        port = srv.getsockname()[1]
        r = daemon.invoke("netfn", attack_path("connect_tcp", port))
        assert r.status_code == 200
        assert r.text == "connected", r.text
        conn, _ = srv.accept()
        conn.close()
    # Sockets, not processes: the rest of the sandbox still holds.
    r = daemon.invoke("netfn", attack_path("connect_unix", "@x"))
    assert_violation(r, "socket", daemon)
    r = daemon.invoke("netfn", attack_path("fork"))
    assert_violation(r, "clone", daemon)
    still_serving(daemon)


def test_network_false_cannot_reach_a_loopback_listener(sbd):
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        r = sbd.invoke("hostile",
                       attack_path("connect_tcp", srv.getsockname()[1]))
    assert_violation(r, "socket", sbd)


# ---- the same escapes while loading: constructor and sofaas_init ----------

LOAD_REFUSED = {
    # attack -> (argument, expected report prefix)
    "clone3": (None, "refused: ENOSYS"),
    "read": ("/etc/shadow", "refused: EACCES"),
    "write": ("/var/tmp/sofaas-escape-from-load", "refused: E"),
}


@pytest.mark.parametrize("stage", ["ctor", "init"])
@pytest.mark.parametrize("name", sorted(TRAPPED))
def test_trapped_while_loading(daemon, stage, name):
    arg, syscall = TRAPPED[name]
    daemon.deploy("hello", example("hello"))
    env = {"ATTACK": "connect_unix" if name == "connect_abstract" else name}
    if arg is not None:
        env["ATTACK_ARG"] = str(arg)
    r = deploy_with(daemon, "evil", hostile(stage), config={"env": env},
                    expect=None)
    assert_violation(r, syscall, daemon)
    # Not recorded: the deploy failed.
    assert requests.get(daemon.url("/v1/functions/evil"),
                        timeout=10).status_code == 404
    still_serving(daemon)


@pytest.mark.parametrize("stage", ["ctor", "init"])
@pytest.mark.parametrize("name", sorted(LOAD_REFUSED))
def test_refused_while_loading(daemon, stage, name):
    arg, expect = LOAD_REFUSED[name]
    daemon.deploy("hello", example("hello"))
    env = {"ATTACK": name}
    if arg is not None:
        env["ATTACK_ARG"] = arg
    deploy_with(daemon, "evil", hostile(stage), config={"env": env})
    r = daemon.invoke("evil")
    assert r.status_code == 200
    assert r.text.startswith(expect), r.text
    if arg and name == "write":
        assert not os.path.exists(arg)
    still_serving(daemon)


@pytest.mark.parametrize("stage", ["ctor", "init"])
@pytest.mark.parametrize("inner", ["exec_mem", "write_tmp"])
def test_thread_started_while_loading_gets_the_serve_stage(daemon, stage,
                                                           inner):
    """A thread that sofaas_init (or a constructor) starts and that attacks
    only while serving must meet the serve stage's filter too (seccomp
    filters are per thread: the worker syncs it to every thread), not the
    broader load-stage one: no new executable memory, no file access."""
    daemon.deploy("hello", example("hello"))
    deploy_with(daemon, "evil", hostile(stage),
                config={"env": {"ATTACK": "late_thread",
                                "ATTACK_ARG": inner}})
    r = daemon.invoke("evil")
    if inner == "exec_mem":
        assert_violation(r, "mmap", daemon)
    else:
        assert r.status_code == 200, r.text
        assert r.text == "refused: EACCES (open in /tmp)", r.text
    still_serving(daemon)


@pytest.mark.skipif(not ROOT, reason="a non-root daemon's workers make "
                    "their own namespaces")
def test_workers_share_one_empty_network_namespace(daemon):
    """Without network, workers join one network namespace the daemon made
    (not one each: creating one costs ~1 ms of CPU per worker): not the
    host's, and holding nothing but a loopback interface."""
    pids = []
    for name in ("a", "b"):
        daemon.deploy(name, testfn("whoami"))
        r = daemon.invoke(name)
        assert r.status_code == 200, r.text
        pids.append(int(r.text))
    ns = {os.readlink("/proc/%d/ns/net" % pid) for pid in pids}
    assert len(ns) == 1, ns
    assert ns != {os.readlink("/proc/%d/ns/net" % daemon.proc.pid)}
    with open("/proc/%d/net/dev" % pids[0]) as f:
        ifaces = [line.split(":")[0].strip() for line in f.readlines()[2:]]
    assert ifaces == ["lo"], ifaces


@pytest.mark.parametrize("stage", ["ctor", "init"])
def test_status_while_loading(daemon, stage):
    deploy_with(daemon, "evil", hostile(stage),
                config={"env": {"ATTACK": "status"}})
    r = daemon.invoke("evil")
    assert "\nSeccomp:\t2\n" in r.text
    assert "\nNoNewPrivs:\t1\n" in r.text
    assert "\nCapEff:\t0000000000000000\n" in r.text
    if ROOT:
        assert "\nCapBnd:\t0000000000000000\n" in r.text


# ---- daemon side -----------------------------------------------------------

def test_start_logs_the_sandbox_layers(daemon):
    assert 'msg="sandbox layers" seccomp=trap' in daemon.log()


def test_check_sandbox_builds_a_real_sandbox():
    out = subprocess.run([SOFAASD, "--check-sandbox"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "seccomp (trap)" in out.stdout
    assert "result   load and serve stages applied" in out.stdout
    assert "status   Seccomp:\t2" in out.stdout
    assert out.stdout.rstrip().endswith("sandbox: usable")


def test_sandbox_off_is_loud_and_unconfined(daemon_factory):
    d = daemon_factory(args=["--sandbox", "off"])
    assert "SANDBOX DISABLED" in d.log()
    d.deploy("hostile", hostile())
    r = d.invoke("hostile", "?attack=status")
    assert "\nSeccomp:\t0\n" in r.text


@pytest.mark.skipif(not ROOT, reason="needs root to switch users")
def test_worker_user_flag(daemon_factory):
    d = daemon_factory(args=["--worker-user", "12345:12346"])
    deploy_with(d, "hostile", hostile(), config={"file_access": True})
    r = d.invoke("hostile", "?attack=status")
    assert "\nUid:\t12345\t12345\t12345\t12345\n" in r.text
    assert "\nGid:\t12346\t12346\t12346\t12346\n" in r.text


def test_worker_user_root_is_refused(daemon_factory):
    d = daemon_factory(args=["--worker-user", "0:0"], start=False)
    d.start(wait=False)
    assert d.proc.wait(15) != 0


def test_sandbox_setup_failure_fails_closed(sbd):
    # Take the artifact away between deploy and first load: opening it is
    # a sandbox step (it is loaded through an fd opened before the uid
    # drop), so the instance must refuse to start and say why.
    sha = sbd.deploy("gone", example("echo")).json()["sha256"]
    os.unlink(os.path.join(sbd.state_dir, "artifacts", sha + ".so"))
    r = sbd.invoke("gone")
    assert r.status_code == 502, r.text
    err = r.json()["error"]
    assert err["code"] == "init_failed"
    assert "sandbox setup failed: open artifact: No such file" in \
        err["message"], err
    assert "sandbox setup failed, refusing to run the function" in sbd.log()
    still_serving(sbd)


def as_user(*args, caps=False):
    """Runs sofaasd as uid/gid 1234 (optionally with ambient CAP_SETUID and
    CAP_SETGID, as systemd's AmbientCapabilities= would give it)."""
    cmd = ["setpriv", "--reuid=1234", "--regid=1234", "--clear-groups"]
    probe = subprocess.run(cmd + [SOFAASD, "--version"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("the build directory is not reachable for uid 1234")
    if caps:
        cmd += ["--inh-caps=+setuid,+setgid",
                "--ambient-caps=+setuid,+setgid"]
    return subprocess.run(cmd + [SOFAASD] + list(args), capture_output=True,
                          text=True, timeout=60)


needs_root_and_setpriv = pytest.mark.skipif(
    not ROOT or shutil.which("setpriv") is None,
    reason="needs root and setpriv to start the daemon as another user")


@needs_root_and_setpriv
def test_unprivileged_daemon_uses_a_user_namespace():
    out = as_user("--check-sandbox")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "status   Uid:\t1234\t1234\t1234\t1234" in out.stdout
    assert "status   Seccomp:\t2" in out.stdout
    assert "check    write /tmp/probe: ok" in out.stdout  # private /tmp


@needs_root_and_setpriv
def test_unprivileged_daemon_with_setuid_caps_switches_user():
    out = as_user("--check-sandbox", "--worker-user", "12345:12346",
                  caps=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "status   Uid:\t12345\t12345\t12345\t12345" in out.stdout
    assert "status   CapEff:\t0000000000000000" in out.stdout
    # Without the capabilities the same setting is refused at start.
    out = as_user("--check-sandbox", "--worker-user", "12345:12346")
    assert out.returncode != 0
    assert "CAP_SETUID" in out.stderr


@needs_root_and_setpriv
def test_unprivileged_daemon_with_setuid_caps_prepares_workers_ahead():
    """The packaged configuration: a non-root daemon with CAP_SETUID and
    CAP_SETGID. Its workers switch to the worker uid and build their user
    namespace and the others before HELLO (so they can no longer open the
    state directory: the daemon passes the artifact open with LOAD), load
    PRE ahead, and still give a function with network the host's network
    namespace and one without its own."""
    cmd = ["setpriv", "--reuid=1234", "--regid=1234", "--clear-groups"]
    if subprocess.run(cmd + [SOFAASD, "--version"],
                      capture_output=True).returncode != 0:
        pytest.skip("the build directory is not reachable for uid 1234")
    top = "/var/tmp/sofaas-test-" + uuid.uuid4().hex
    os.makedirs(os.path.join(top, "state"))
    for path in (top, os.path.join(top, "state")):
        os.chown(path, 1234, 1234)
    d = Daemon(os.path.join(top, "state"),
               args=["--worker-user", "12345:12346"],
               wrap=cmd + ["--inh-caps=+setuid,+setgid",
                           "--ambient-caps=+setuid,+setgid"])
    try:
        d.start()
        deploy_with(d, "nonet", testfn("whoami"))
        deploy_with(d, "net", testfn("whoami"), params={"network": "true"})
        pids = {}
        for name in ("nonet", "net"):
            r = d.invoke(name)
            assert r.status_code == 200, r.text
            pids[name] = int(r.text)
        mine = {k: os.readlink("/proc/self/ns/" + k) for k in ("net", "user")}
        for name, pid in pids.items():
            with open("/proc/%d/status" % pid) as f:
                assert "\nUid:\t12345\t12345\t12345\t12345\n" in f.read()
            assert os.readlink("/proc/%d/ns/user" % pid) != mine["user"]
        assert os.readlink("/proc/%d/ns/net" % pids["net"]) == mine["net"]
        assert os.readlink("/proc/%d/ns/net" % pids["nonet"]) != mine["net"]
        loads = re.findall(r'msg="sandbox in force" stage=load .*', d.log())
        assert loads and all("userns=1" in x and "seccomp_ahead=1" in x
                             for x in loads), loads
    finally:
        d.stop()
        shutil.rmtree(top, ignore_errors=True)

