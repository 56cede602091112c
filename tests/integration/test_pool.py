"""Warm-pool manager: provisioned and reserved concurrency, queue bounds,
idle retirement, recycling, redeploys, crash-loop backoff and templates.

Every test drives the real daemon over HTTP and reads its view of the pool
from GET /v1/functions/{name} ("instances"). Waits poll for a state with a
generous deadline; nothing asserts on how long anything took.
"""
import json
import os
import re
import signal
import threading
import time

import pytest
import requests

from conftest import example
from conftest import testfn as test_function_path  # noqa: F401

fnpath = test_function_path
del test_function_path

POLL_DEADLINE = 30  # seconds; only bounds a wait, never asserted on


def instances(d, name):
    r = requests.get(d.url("/v1/functions/" + name), headers=d.headers(),
                     timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["instances"]


def wait_for(pred, what, deadline=POLL_DEADLINE):
    end = time.time() + deadline
    last = None
    while time.time() < end:
        last = pred()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError("timed out waiting for " + what)


def wait_instances(d, name, **want):
    def ok():
        s = instances(d, name)
        return s if all(s[k] == v for k, v in want.items()) else None
    return wait_for(ok, "%s instances %r" % (name, want))


def background(fn, *args, **kw):
    """Runs fn in a thread; returns (thread, box) where box holds result."""
    box = {}

    def run():
        try:
            box["r"] = fn(*args, **kw)
        except Exception as e:  # surfaced by the test through box
            box["e"] = e
    t = threading.Thread(target=run)
    t.start()
    return t, box


def result(t, box):
    t.join(60)
    assert not t.is_alive()
    if "e" in box:
        raise box["e"]
    return box["r"]


def no_predict(daemon_factory, *extra):
    """A daemon whose warm target is min_warm only (no prediction)."""
    return daemon_factory(args=["--predictive-warming", "off"] + list(extra))


def test_warm_invocation_reports_no_cold_start(daemon_factory):
    daemon = no_predict(daemon_factory)
    daemon.deploy("hello", example("hello"))
    first = daemon.invoke("hello", "/")
    assert first.status_code == 200
    assert first.headers.get("X-Sofaas-Cold-Start") == "1"
    inst = first.headers["X-Sofaas-Instance"]
    second = daemon.invoke("hello", "/")
    assert second.status_code == 200
    assert "X-Sofaas-Cold-Start" not in second.headers
    assert second.headers["X-Sofaas-Instance"] == inst


def test_min_warm_ready_after_deploy_and_restart(daemon_factory):
    d = no_predict(daemon_factory)
    d.deploy("hello", example("hello"), params={"min_warm": "2"})
    s = wait_instances(d, "hello", idle=2, loading=0)
    assert s["warm_target"] == 2
    r = d.invoke("hello", "/")
    assert r.status_code == 200
    assert "X-Sofaas-Cold-Start" not in r.headers

    d.restart()
    wait_instances(d, "hello", idle=2, loading=0)
    r = d.invoke("hello", "/")
    assert r.status_code == 200
    assert "X-Sofaas-Cold-Start" not in r.headers


def test_min_warm_via_patch_and_recreated_after_crash(daemon_factory):
    d = no_predict(daemon_factory)
    d.deploy("crash", fnpath("crash"))
    assert instances(d, "crash")["idle"] == 0
    r = requests.patch(d.url("/v1/functions/crash"), json={"min_warm": 1},
                       headers=d.headers(), timeout=10)
    assert r.status_code == 200, r.text
    wait_instances(d, "crash", idle=1, loading=0)
    r = d.invoke("crash", "/crash")
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "function_crashed"
    # The crashed instance is replaced without any new request.
    wait_instances(d, "crash", idle=1, loading=0, busy=0)
    r = d.invoke("crash", "/")
    assert r.status_code == 200
    assert "X-Sofaas-Cold-Start" not in r.headers


def test_idle_instances_above_min_warm_retire(daemon_factory):
    d = no_predict(daemon_factory)
    d.deploy("who", fnpath("whoami"),
             params={"min_warm": "1", "idle_timeout_s": "1"})
    wait_instances(d, "who", idle=1, loading=0)
    threads = [background(d.invoke, "who", "/", params={"ms": "400"})
               for _ in range(3)]
    pids = {result(*t).text for t in threads}
    assert len(pids) >= 2  # more instances than min_warm were needed
    # ...and they retire back down to min_warm, never below.
    wait_instances(d, "who", idle=1, busy=0, loading=0)
    time.sleep(1.5)
    assert instances(d, "who")["idle"] == 1


def test_scale_to_zero_and_back(daemon_factory):
    d = no_predict(daemon_factory)
    d.deploy("hello", example("hello"), params={"idle_timeout_s": "1"})
    r = d.invoke("hello", "/")
    assert r.status_code == 200 and r.headers.get("X-Sofaas-Cold-Start") == "1"
    wait_instances(d, "hello", idle=0, busy=0, loading=0, draining=0)
    r = d.invoke("hello", "/")
    assert r.status_code == 200
    assert r.headers.get("X-Sofaas-Cold-Start") == "1"


def test_max_concurrency_is_never_exceeded(daemon_factory):
    d = daemon_factory(args=["--max-workers", "16"])
    d.deploy("who", fnpath("whoami"),
             params={"max_concurrency": "2", "max_queue": "100"})
    seen = {}
    lock = threading.Lock()
    peak = {"busy": 0}
    stop = threading.Event()

    def client():
        for _ in range(3):
            r = d.invoke("who", "/", params={"ms": "100"})
            assert r.status_code == 200, r.text
            with lock:
                seen[r.text.strip()] = r.headers["X-Sofaas-Instance"]

    def watch():
        while not stop.is_set():
            s = instances(d, "who")
            peak["busy"] = max(peak["busy"], s["busy"] + s["loading"])
            time.sleep(0.02)

    w = threading.Thread(target=watch)
    w.start()
    ts = [threading.Thread(target=client) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    stop.set()
    w.join()
    assert 1 <= len(seen) <= 2, seen
    assert peak["busy"] <= 2


def test_queue_overflow_gives_429_with_retry_after(daemon_factory):
    d = daemon_factory()
    d.deploy("who", fnpath("whoami"),
             params={"max_concurrency": "1", "max_queue": "1",
                     "queue_timeout_ms": "60000"})
    first = background(d.invoke, "who", "/", params={"ms": "1500"})
    wait_instances(d, "who", busy=1)
    second = background(d.invoke, "who", "/", params={"ms": "1"})
    wait_instances(d, "who", queued=1)
    r = d.invoke("who", "/")
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "throttled"
    assert int(r.headers["Retry-After"]) >= 1
    assert result(*first).status_code == 200
    assert result(*second).status_code == 200


def test_queue_timeout_gives_429(daemon_factory):
    d = daemon_factory()
    d.deploy("who", fnpath("whoami"),
             params={"max_concurrency": "1", "max_queue": "10",
                     "queue_timeout_ms": "200", "timeout_ms": "20000"})
    first = background(d.invoke, "who", "/", params={"ms": "3000"})
    wait_instances(d, "who", busy=1)
    r = d.invoke("who", "/")
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "throttled"
    assert "queue_timeout_ms" in r.json()["error"]["message"]
    assert int(r.headers["Retry-After"]) >= 1
    assert result(*first).status_code == 200


def test_recycling_after_max_invocations(daemon_factory):
    daemon = no_predict(daemon_factory)
    daemon.deploy("who", fnpath("whoami"),
                  params={"max_invocations_per_instance": "2"})
    pids = [daemon.invoke("who", "/").text for _ in range(4)]
    assert pids[0] == pids[1]
    assert pids[2] == pids[3]
    assert pids[0] != pids[2]


def test_redeploy_switches_versions_without_failing_inflight(daemon):
    daemon.deploy("fn", fnpath("whoami"))
    inflight = [background(daemon.invoke, "fn", "/", params={"ms": "1000"})
                for _ in range(3)]
    wait_for(lambda: instances(daemon, "fn")["busy"] >= 1, "busy instances")
    daemon.deploy("fn", fnpath("sleepy"))
    # New invocations go to the new version at once...
    r = daemon.invoke("fn", "/")
    assert r.status_code == 200 and r.text.startswith("slept"), r.text
    # ...while the old version's in-flight requests complete normally.
    for t in inflight:
        r = result(*t)
        assert r.status_code == 200, r.text
        assert r.text.strip().isdigit()
    wait_instances(daemon, "fn", draining=0, busy=0)


def test_crash_loop_backoff_503_then_recovers(daemon_factory):
    d = no_predict(daemon_factory)
    d.deploy("crash", fnpath("crash"))
    d.deploy("hello", example("hello"))
    codes = []
    r = None
    for _ in range(20):
        r = d.invoke("crash", "/crash")
        codes.append(r.status_code)
        if r.status_code == 503:
            break
    assert r.status_code == 503, codes
    assert codes[:-1] and all(c == 502 for c in codes[:-1])
    assert r.json()["error"]["code"] == "function_unavailable"
    retry = int(r.headers["Retry-After"])
    assert retry >= 1
    assert instances(d, "crash")["backoff_ms"] > 0
    # Other functions are unaffected.
    assert d.invoke("hello", "/").status_code == 200
    # While backing off, even healthy paths are refused...
    r = d.invoke("crash", "/")
    assert r.status_code in (503, 200)
    # ...and the function recovers by itself.
    r = wait_for(lambda: (lambda x: x if x.status_code == 200 else None)(
        d.invoke("crash", "/")), "recovery", deadline=retry + 30)
    assert r.text == "alive\n"
    assert instances(d, "crash")["backoff_ms"] == 0


def test_template_children_serve_without_rerunning_init(daemon_factory):
    daemon = no_predict(daemon_factory)
    daemon.deploy("si", example("slow-init"),
                  params={"template": "true",
                          "max_invocations_per_instance": "1"})
    bodies = []
    for n in (10, 100, 1000, 10000):
        r = daemon.invoke("si", "/", params={"n": str(n)})
        assert r.status_code == 200, r.text
        assert r.headers.get("X-Sofaas-Cold-Start") == "1"
        bodies.append(r.json())
    assert [b["pi"] for b in bodies] == [4, 25, 168, 1229]
    # One init, in the template; each instance is a different child of it.
    assert len({b["init_ns"] for b in bodies}) == 1
    assert len({b["init_pid"] for b in bodies}) == 1
    assert len({b["pid"] for b in bodies}) == 4
    assert all(b["pid"] != b["init_pid"] for b in bodies)
    s = instances(daemon, "si")
    assert s["template"] == 1 and s["template_active"]
    assert s["template_init_us"] > 0


def anon_huge_kib(pid):
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith("AnonHugePages:"):
                return int(line.split()[1])
    return 0


def huge_page_collapse_possible():
    """MADV_COLLAPSE: Linux 6.1, THP not switched off for the machine."""
    major, minor = (int(x) for x in
                    re.match(r"(\d+)\.(\d+)", os.uname().release).groups())
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            mode = f.read()
    except OSError:
        return False
    return (major, minor) >= (6, 1) and "[never]" not in mode


def test_template_memory_is_in_huge_pages_its_children_share(daemon_factory):
    """What init built is moved into 2 MiB pages before the template forks
    (fewer page-table entries to copy per fork and to tear down per exit,
    docs/pool.md); the forked instances map the same huge pages."""
    if not huge_page_collapse_possible():
        pytest.skip("no MADV_COLLAPSE on this kernel")
    daemon = no_predict(daemon_factory)
    daemon.deploy("si", example("slow-init"), params={"template": "true"})
    b = daemon.invoke("si", "/", params={"n": "1000"}).json()
    assert b["pi"] == 168 and b["pid"] != b["init_pid"]
    # slow-init's table is one 16 MiB malloc: at least 7 aligned 2 MiB
    # ranges of it, whatever its alignment.
    assert anon_huge_kib(b["init_pid"]) >= 7 * 2048
    assert anon_huge_kib(b["pid"]) >= 7 * 2048


def test_template_auto_turns_on_after_slow_init(daemon_factory):
    daemon = no_predict(daemon_factory)
    daemon.deploy("si", example("slow-init"),
                  params={"max_invocations_per_instance": "1"})
    first = daemon.invoke("si", "/").json()
    # The first instance ran init itself (no template yet).
    assert first["init_pid"] == first["pid"]
    assert instances(daemon, "si")["template_active"]
    later = [daemon.invoke("si", "/").json() for _ in range(3)]
    assert len({b["init_ns"] for b in later}) == 1
    assert all(b["init_pid"] != b["pid"] for b in later)
    assert later[0]["init_ns"] != first["init_ns"]


def test_template_off_runs_init_in_every_instance(daemon_factory):
    daemon = no_predict(daemon_factory)
    daemon.deploy("si", example("slow-init"),
                  params={"template": "false",
                          "max_invocations_per_instance": "1"})
    bodies = [daemon.invoke("si", "/").json() for _ in range(2)]
    assert all(b["init_pid"] == b["pid"] for b in bodies)
    assert instances(daemon, "si")["template"] == 0


def test_template_child_crash_is_detected(daemon_factory):
    d = no_predict(daemon_factory)
    d.deploy("crash", fnpath("crash"), params={"template": "true"})
    assert d.invoke("crash", "/").status_code == 200
    r = d.invoke("crash", "/crash")
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "function_crashed"
    r = d.invoke("crash", "/")
    assert r.status_code == 200
    assert r.headers.get("X-Sofaas-Cold-Start") == "1"


def test_template_min_warm_and_redeploy(daemon_factory):
    d = no_predict(daemon_factory)
    d.deploy("si", example("slow-init"),
             params={"template": "true", "min_warm": "2"})
    wait_instances(d, "si", idle=2, loading=0, template=1)
    bodies = [d.invoke("si", "/").json() for _ in range(2)]
    assert all(b["init_pid"] != b["pid"] for b in bodies)
    d.deploy("si", example("slow-init"))  # same code, new version
    s = wait_instances(d, "si", idle=2, loading=0, template=1, draining=0)
    assert s["template"] == 1
    r = d.invoke("si", "/").json()
    assert r["init_ns"] != bodies[0]["init_ns"]


def test_lru_eviction_under_max_workers(daemon_factory):
    d = daemon_factory(args=["--workers", "1", "--max-workers", "3",
                             "--predictive-warming", "off"])
    names = ["f%d" % i for i in range(5)]
    for n in names:
        d.deploy(n, fnpath("whoami"))
    for _ in range(2):
        for n in names:
            r = d.invoke(n, "/")
            assert r.status_code == 200, r.text


def test_function_get_shows_instances_and_settings(daemon):
    daemon.deploy("hello", example("hello"),
                  params={"max_concurrency": "3", "idle_timeout_s": "60"})
    daemon.invoke("hello", "/")
    r = requests.get(daemon.url("/v1/functions/hello"), timeout=10)
    body = r.json()
    assert body["config"]["max_concurrency"] == 3
    assert body["config"]["idle_timeout_s"] == 60
    for k in ("loading", "idle", "busy", "draining", "template", "queued",
              "warm_target", "backoff_ms"):
        assert k in body["instances"], k
    assert body["instances"]["idle"] == 1
    json.dumps(body)


def test_predictive_warming_keeps_headroom_and_is_switchable(daemon_factory):
    for mode in ("on", "off"):
        d = daemon_factory(args=["--predictive-warming", mode], name=mode)
        d.deploy("who", fnpath("whoami"), params={"idle_timeout_s": "3600"})
        ts = [background(d.invoke, "who", "/", params={"ms": "1500"})
              for _ in range(2)]
        wait_instances(d, "who", busy=2)
        for t in ts:
            assert result(*t).status_code == 200
        if mode == "on":
            # Twice the recent peak of 2, kept warm without new requests.
            s = wait_for(lambda: (lambda s: s if s["warm_target"] >= 3 and
                                  s["idle"] >= s["warm_target"] else None)(
                instances(d, "who")), "predicted instances")
            assert s["recent_peak"] > 0
        else:
            time.sleep(2.5)  # a few ticks: nothing beyond what was used
            s = instances(d, "who")
            assert s["warm_target"] == 0 and s["idle"] == 2
        d.stop()


def test_instance_passing_a_descriptor_is_killed(daemon):
    """Only a template with a FORK in flight may pass a descriptor."""
    daemon.deploy("fdpass", fnpath("fdpass"))
    assert daemon.invoke("fdpass", "/").status_code == 200
    r = daemon.invoke("fdpass", "/pass")
    # A serve-stage seccomp filter may stop the sendmsg itself first.
    code = r.json()["error"]["code"]
    assert (r.status_code, code) in ((502, "invalid_response"),
                                     (500, "sandbox_violation")), r.text
    if code == "invalid_response":
        assert "unexpected file descriptor" in daemon.log()
    assert daemon.invoke("fdpass", "/").status_code == 200


def deploy_hostile(d, name, env):
    """forge_fork as a template, its behaviour chosen by env (see its
    source): its init takes over the template's channel."""
    d.deploy(name, fnpath("forge_fork"), params={"template": "true"})
    r = requests.patch(d.url("/v1/functions/" + name), json={"env": env},
                       headers=d.headers(), timeout=10)
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("env", [
    {"VICTIM": "parent"},
    {"VICTIM": "self"},
    {"VICTIM": "parent", "VIA_SPARE": "1"},
], ids=["forked-daemon", "forked-self", "spare-daemon"])
def test_template_cannot_hand_over_a_process_it_did_not_fork(daemon_factory,
                                                             env):
    """A template's init is user code: it can answer FORK itself. A pid in
    FORKED, or in a SPARE offered after a real child, that is not a child
    of the template (here the daemon, or the template itself) must not be
    tracked, moved into a cgroup or killed: the template is killed as a
    protocol error instead."""
    d = daemon_factory()
    with open("/proc/%d/cgroup" % d.proc.pid) as f:
        cgroups_before = f.read()
    deploy_hostile(d, "forge", env)
    try:
        r = d.invoke("forge", "/", timeout=60)
        assert r.status_code != 200, r.text
    except requests.ConnectionError:
        pass  # asserted just below
    assert d.proc.poll() is None, "the daemon was killed: %s" % d.log()[-2000:]
    assert requests.get(d.url("/healthz"), timeout=10).status_code == 200
    with open("/proc/%d/cgroup" % d.proc.pid) as f:
        assert f.read() == cgroups_before
    log = d.log()
    assert "forked instance is not the template's child" in log
    if "VIA_SPARE" in env:
        assert re.search(r"forked instance is not the template's child\" "
                         r"function=forge instance=\d+ pid=%d spare=1"
                         % d.proc.pid, log), log[-3000:]


def test_template_cannot_send_spare_frames_at_will(daemon_factory):
    """One SPARE may follow each FORKED that handed over a child, no more:
    each costs the daemon a cgroup leaf and a move. A template (its init is
    user code) that sends them unasked is killed as a protocol error."""
    d = daemon_factory()
    deploy_hostile(d, "flood", {"FLOOD": "1"})
    r = d.invoke("flood", "/", timeout=60)
    assert r.status_code != 200, r.text
    log = d.log()
    assert re.search(r'unexpected frame from worker" instance=\d+ type=9 ',
                     log), log[-3000:]
    assert "spare taken" not in log
    assert requests.get(d.url("/healthz"), timeout=10).status_code == 200


def test_template_cannot_fill_the_daemons_fd_table(daemon_factory):
    """Descriptors ride the first byte of FORKED and SPARE, so the daemon
    keeps those that came before the rest of a frame. A template that
    sends a FORKED a byte at a time, 64 descriptors on each byte, is
    killed at the first byte, not left to fill the daemon's fd table."""
    d = daemon_factory()
    fds_before = len(os.listdir("/proc/%d/fd" % d.proc.pid))
    deploy_hostile(d, "fdflood", {"FDFLOOD": "1"})
    r = d.invoke("fdflood", "/", timeout=60)
    assert r.status_code != 200, r.text
    log = d.log()
    assert "worker passed an unexpected file descriptor" in log, log[-3000:]
    assert requests.get(d.url("/healthz"), timeout=10).status_code == 200
    assert len(os.listdir("/proc/%d/fd" % d.proc.pid)) < fds_before + 50


def test_template_spare_is_in_its_own_leaf_before_it_serves(daemon_factory):
    """The spare a template forks ahead is offered (SPARE) and moved into
    its memory cgroup leaf before an invocation takes it; once taken it
    must be in that leaf, under its instance id, with its function's
    limit."""
    d = no_predict(daemon_factory)
    m = re.search(r'worker memory cgroups active" mode=\S+ root=(\S+)',
                  d.log())
    if m is None:
        pytest.skip("no worker memory cgroups on this host")
    root = m.group(1)
    d.deploy("who", fnpath("whoami"),
             params={"template": "true", "memory_mb": "64"})
    seen = {}
    r = d.invoke("who", "/")
    assert r.status_code == 200, r.text
    seen[r.headers["X-Sofaas-Instance"]] = int(r.text)
    time.sleep(0.5)  # FORKED, then SPARE with no FORK in flight
    for burst in (2, 3):
        with_new = []

        def call():
            with_new.append(d.invoke("who", "/", params={"ms": "400"}))
        ts = [threading.Thread(target=call) for _ in range(burst)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        for r in with_new:
            assert r.status_code == 200, r.text
            seen[r.headers["X-Sofaas-Instance"]] = int(r.text)
        time.sleep(0.5)
    assert len(seen) == 3
    assert "spare taken" in d.log()
    for inst, pid in seen.items():
        leaf = os.path.join(root, "w" + inst)
        with open(os.path.join(leaf, "cgroup.procs")) as f:
            assert str(pid) in f.read().split(), (inst, pid)
        limit = "memory.max" if os.path.exists(
            os.path.join(leaf, "memory.max")) else "memory.limit_in_bytes"
        with open(os.path.join(leaf, limit)) as f:
            assert int(f.read()) == 64 << 20


def test_template_death_takes_children_and_recovers(daemon_factory):
    d = no_predict(daemon_factory)
    d.deploy("si", example("slow-init"), params={"template": "true"})
    first = d.invoke("si", "/").json()
    assert first["pid"] != first["init_pid"]
    os.kill(first["init_pid"], signal.SIGKILL)
    # The children die with their template; counted as one failure only.
    wait_instances(d, "si", template=0, idle=0, loading=0)
    assert instances(d, "si")["backoff_ms"] == 0
    again = d.invoke("si", "/")
    assert again.status_code == 200
    body = again.json()
    assert body["init_ns"] != first["init_ns"]
    assert body["pid"] != body["init_pid"]


def test_pool_settings_are_validated_naming_the_field(daemon):
    for params, key in [({"min_warm": "-1"}, "min_warm"),
                        ({"max_concurrency": "99999"}, "max_concurrency"),
                        ({"idle_timeout_s": "0"}, "idle_timeout_s"),
                        ({"max_queue": "x"}, "max_queue"),
                        ({"template": "maybe"}, "template")]:
        r = daemon.deploy("fn", example("hello"), params=params, expect=400)
        assert key in r.json()["error"]["message"], (params, r.text)
    daemon.deploy("fn", example("hello"))
    for body, key in [({"min_warm": -1}, "min_warm"),
                      ({"queue_timeout_ms": "10"}, "queue_timeout_ms"),
                      ({"max_invocations_per_instance": 1.5},
                       "max_invocations_per_instance"),
                      ({"template": 3}, "template")]:
        r = requests.patch(daemon.url("/v1/functions/fn"), json=body,
                           headers=daemon.headers(), timeout=10)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["error"]["code"] == "invalid_config"
        assert key in r.json()["error"]["message"], (body, r.text)
    # Nothing was recorded by the refused requests.
    assert requests.get(daemon.url("/v1/functions/fn"),
                        timeout=10).json()["version"] == 1


def test_template_instances_output_is_tagged_per_request(daemon_factory):
    """Each forked instance gets its own output pipe from the template."""
    d = no_predict(daemon_factory)
    d.deploy("chatty", fnpath("chatty"),
             params={"template": "true", "max_invocations_per_instance": "1"})
    seen = []
    for n in range(2):
        rid = "tpl-%d" % n
        r = d.invoke("chatty", "?n=2", headers={"X-Request-Id": rid})
        assert r.status_code == 200
        seen.append(int(r.headers["X-Sofaas-Instance"]))
        got = requests.get(d.url("/v1/functions/chatty/logs"),
                           params={"request_id": rid}, headers=d.headers(),
                           timeout=10).json()["logs"]
        assert [l["message"] for l in got] == [
            "out 0 request " + rid, "out 1 request " + rid,
            "err request " + rid]
        assert all(l["instance"] == seen[-1] for l in got)
    assert seen[0] != seen[1]
    # init ran once, in the template, and is nobody's request's output.
    alll = requests.get(d.url("/v1/functions/chatty/logs"),
                        headers=d.headers(), timeout=10).json()["logs"]
    init = [l for l in alll if l["message"] == "chatty init"]
    assert len(init) == 1 and init[0]["request_id"] is None


def test_retired_instances_leave_no_cgroup_leaf(daemon):
    """Each instance's memory cgroup leaf is removed after it retires (from
    a thread: on cgroup v1 an rmdir can wait ~10-20 ms for the kernel)."""
    m = re.search(r'worker memory cgroups active" mode=\S+ root=(\S+)',
                  daemon.log())
    if m is None:
        pytest.skip("no worker memory cgroups on this host")
    root = m.group(1)
    # A live instance has its leaf there (so the check below means something).
    daemon.deploy("kept", example("hello"))
    r = daemon.invoke("kept")
    assert r.status_code == 200
    live = "w" + r.headers["X-Sofaas-Instance"]
    assert os.path.isdir(os.path.join(root, live))
    daemon.deploy("recycled", example("hello"),
                  params={"max_invocations_per_instance": "1"})
    ids = set()
    for _ in range(8):
        r = daemon.invoke("recycled")
        assert r.status_code == 200
        ids.add(r.headers["X-Sofaas-Instance"])
    assert len(ids) == 8  # each served once, then retired

    def left():
        return {i for i in ids if os.path.isdir(os.path.join(root, "w" + i))}
    wait_for(lambda: not left(), "the retired instances' cgroup leaves "
             "to be removed")
    assert left() == set()
    assert requests.get(daemon.url("/healthz"), timeout=10).status_code == 200
