"""Function faults: each gives its documented JSON error, the worker is
replaced, and the daemon keeps serving."""
import json
import os
import signal
import subprocess
import time

import pytest
import requests

from conftest import example, testfn


def error_of(r):
    return r.status_code, r.json()["error"]["code"], r.json()["error"]["message"]


def assert_recovers(d, name="faulty"):
    r = d.invoke(name)
    assert r.status_code == 200 and r.text == "ok\n"


@pytest.mark.parametrize("path,sig", [("/abort", "SIGABRT"),
                                      ("/stack", "SIGSEGV")])
def test_crash_names_the_signal(daemon, path, sig):
    daemon.deploy("faulty", testfn("faulty"))
    st, code, msg = error_of(daemon.invoke("faulty", path))
    assert (st, code) == (502, "function_crashed")
    assert sig in msg
    assert_recovers(daemon)


def test_exit_mid_request_names_the_status(daemon):
    daemon.deploy("faulty", testfn("faulty"))
    st, code, msg = error_of(daemon.invoke("faulty", "/exit"))
    assert (st, code) == (502, "function_crashed")
    assert "status 3" in msg
    assert_recovers(daemon)


def test_timeout_kills_a_function_that_ignores_signals(daemon):
    daemon.deploy("faulty", testfn("faulty"), params={"timeout_ms": "300"})
    # The call returning at all (the client gives up after 30 s) shows the
    # worker that ignores every signal was killed.
    st, code, msg = error_of(daemon.invoke("faulty", "/hang"))
    assert (st, code) == (504, "timeout")
    assert_recovers(daemon)
    # No leftover process: the hanging worker is gone.
    out = subprocess.run(["ps", "-o", "pid=,stat=", "--ppid",
                          str(daemon.proc.pid)], capture_output=True,
                         text=True).stdout
    assert " Z" not in out


def test_out_of_memory_in_a_template_child(daemon):
    # A forked instance is moved into its own memory cgroup leaf (from a
    # thread, before it is given an invocation): its OOM is reported as its
    # own, not the template's, and the template lives on.
    daemon.deploy("faultyt", testfn("faulty"),
                  params={"memory_mb": "32", "template": "true",
                          "max_invocations_per_instance": "1"})
    for _ in range(2):
        r = daemon.invoke("faultyt", "/oom", params={"mb": "256"})
        assert r.status_code == 502, r.text
        if "worker memory cgroups active" in daemon.log():
            assert r.json()["error"]["code"] == "out_of_memory", r.text
    r = daemon.invoke("faultyt", "/oom", params={"mb": "4"})
    assert r.status_code == 200, r.text
    assert_recovers(daemon, "faultyt")


def test_garbage_frame_is_invalid_response(daemon):
    daemon.deploy("faulty", testfn("faulty"))
    st, code, _ = error_of(daemon.invoke("faulty", "/garbage"))
    assert (st, code) == (502, "invalid_response")
    assert_recovers(daemon)


def test_out_of_memory(daemon):
    daemon.deploy("faulty", testfn("faulty"), params={"memory_mb": "32"})
    r = daemon.invoke("faulty", "/oom", params={"mb": "256"})
    assert r.status_code == 502, r.text
    code = r.json()["error"]["code"]
    if "worker memory cgroups active" in daemon.log():
        assert code == "out_of_memory"
        assert "memory_mb=32" in r.json()["error"]["message"]
    else:
        # rlimits only: allocation fails inside the function, which cannot be
        # told apart from any other crash (docs/robustness.md).
        assert code in ("function_crashed", "function_error")
    # Within its limit the same function is fine, and the daemon is intact.
    r = daemon.invoke("faulty", "/oom", params={"mb": "4"})
    assert r.status_code == 200
    assert_recovers(daemon)


def test_init_failure_at_deploy_is_422(daemon):
    # Deploy with an env that makes init fail or hang: both refused with 422.
    for env, why in [({"FAIL_INIT": "1"}, "sofaas_init returned 1"),
                     ({"HANG_INIT": "1"}, "deadline")]:
        cfg = json.dumps({"env": env, "init_timeout_ms": 300})
        r = requests.put(daemon.url("/v1/functions/bad"),
                         data=open(testfn("faulty"), "rb").read(),
                         headers={"X-Sofaas-Config": cfg}, timeout=30)
        assert r.status_code == 422, r.text
        assert why in r.json()["error"]["message"]
    assert daemon.invoke("bad").status_code == 404


def test_init_failure_at_runtime_is_502(daemon):
    daemon.deploy("faulty", testfn("faulty"))
    # A config change records a new version without re-validating it.
    for env in [{"FAIL_INIT": "1"}, {"HANG_INIT": "1"}]:
        r = requests.patch(daemon.url("/v1/functions/faulty"),
                           data=json.dumps({"env": env,
                                            "init_timeout_ms": 300}))
        assert r.status_code == 200
        st, code, _ = error_of(daemon.invoke("faulty"))
        assert (st, code) == (502, "init_failed")
    requests.patch(daemon.url("/v1/functions/faulty"),
                   data=json.dumps({"env": {}}))
    assert_recovers(daemon)


def test_other_functions_unaffected_by_faults(daemon):
    import concurrent.futures
    daemon.deploy("faulty", testfn("faulty"), params={"timeout_ms": "500"})
    daemon.deploy("hello", example("hello"))
    with concurrent.futures.ThreadPoolExecutor(6) as ex:
        bad = [ex.submit(daemon.invoke, "faulty", p)
               for p in ["/abort", "/hang", "/exit", "/stack"]]
        good = [ex.submit(daemon.invoke, "hello") for _ in range(10)]
        assert all(f.result().status_code == 200 for f in good)
        assert all(f.result().status_code in (502, 504) for f in bad)


def test_no_orphans_when_daemon_is_killed(daemon):
    daemon.deploy("hello", example("hello"))
    daemon.invoke("hello")
    pid = daemon.proc.pid
    kids = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)],
                          capture_output=True, text=True).stdout.split()
    assert kids
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait()
    deadline = time.time() + 10
    alive = kids
    while alive and time.time() < deadline:
        alive = [k for k in kids if os.path.exists("/proc/%s" % k) and
                 "Z" not in open("/proc/%s/stat" % k).read().split()[2]]
        time.sleep(0.05)
    assert alive == [], "workers outlived the daemon"
    # A restarted daemon binds the same port at once (no TIME_WAIT wait).
    port = daemon.port
    daemon.logf.close()
    daemon.proc = None
    daemon.start(port=port)
    assert daemon.port == port
    assert daemon.invoke("hello").text == "Hello from sofaas!\n"
