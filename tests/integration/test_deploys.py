"""Deploy robustness: streaming uploads, full disk, kill -9 mid-deploy,
concurrent deploys, redeploy under load."""
import concurrent.futures
import os
import signal
import socket
import subprocess
import time

import pytest
import requests

from conftest import Daemon, db_write_lock, example, testfn


def padded(src, dst, extra):
    """A valid function .so with extra bytes appended (still loads)."""
    with open(src, "rb") as f:
        data = f.read()
    with open(dst, "wb") as f:
        f.write(data)
        f.write(b"\0" * extra)
    return dst


def vm_hwm_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise AssertionError("no VmHWM")


def leftovers(d):
    return [n for n in os.listdir(os.path.join(d.state_dir, "artifacts"))
            if n.startswith(".")]


def test_upload_is_streamed_not_buffered(daemon, tmp_path):
    big = padded(example("hello"), str(tmp_path / "big.so"), 40 << 20)
    before = vm_hwm_kib(daemon.proc.pid)
    r = daemon.deploy("big", big)
    assert r.json()["size"] == os.path.getsize(big)
    after = vm_hwm_kib(daemon.proc.pid)
    # A buffered 40 MiB body would raise the peak RSS by >= 40 MiB.
    assert after - before < 16 * 1024, (before, after)
    assert daemon.invoke("big").text == "Hello from sofaas!\n"
    assert leftovers(daemon) == []


def test_full_disk_gives_507_and_keeps_previous_version(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs",
                        str(mnt)], check=True, capture_output=True)
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        pytest.skip("cannot mount a tmpfs here: %s" % e)
    d = Daemon(mnt / "state")
    try:
        d.start()
        d.deploy("fn", example("hello"))
        big = padded(example("echo"), str(tmp_path / "big.so"), 8 << 20)
        r = d.deploy("fn", big, expect=507)
        assert r.json()["error"]["code"] == "insufficient_storage"
        assert d.invoke("fn").text == "Hello from sofaas!\n"
        j = requests.get(d.url("/v1/functions/fn")).json()
        assert j["version"] == 1 and len(j["versions"]) == 1
        assert leftovers(d) == []
        # Still works once there is room again.
        d.deploy("fn2", example("echo"))
    finally:
        d.stop()
        subprocess.run(["umount", str(mnt)], check=False)


def test_kill_9_mid_deploy_leaves_old_version_and_no_temp_files(daemon,
                                                                tmp_path):
    daemon.deploy("fn", example("hello"))
    big = padded(example("echo"), str(tmp_path / "big.so"), 20 << 20)
    s = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
    s.sendall(b"PUT /v1/functions/fn HTTP/1.1\r\nHost: x\r\n"
              b"Content-Length: %d\r\n\r\n" % os.path.getsize(big))
    with open(big, "rb") as f:
        s.sendall(f.read(8 << 20))  # part of the body only
    deadline = time.time() + 10
    while not leftovers(daemon) and time.time() < deadline:
        time.sleep(0.02)
    assert leftovers(daemon), "upload temp file never appeared"
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait()
    s.close()
    daemon.proc = None
    daemon.logf.close()
    daemon.start()
    assert leftovers(daemon) == []
    assert daemon.invoke("fn").text == "Hello from sofaas!\n"
    assert requests.get(daemon.url("/v1/functions/fn")).json()["version"] == 1


def test_concurrent_deploys_of_one_name_get_distinct_versions(daemon):
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        futs = [ex.submit(daemon.deploy, "fn",
                          example("hello" if i % 2 else "echo"))
                for i in range(4)]
        versions = sorted(f.result().json()["version"] for f in futs)
    assert versions == [1, 2, 3, 4]
    j = requests.get(daemon.url("/v1/functions/fn")).json()
    assert [v["version"] for v in j["versions"]] == [4, 3, 2, 1]


def test_redeploy_during_invocations(daemon):
    daemon.deploy("fn", testfn("sleepy"))
    with concurrent.futures.ThreadPoolExecutor(6) as ex:
        inflight = [ex.submit(daemon.invoke, "fn", params={"ms": "400"})
                    for _ in range(4)]
        time.sleep(0.15)
        daemon.deploy("fn", example("hello"))
        for f in inflight:
            r = f.result()
            assert r.status_code == 200 and r.text == "slept 400\n"
    # New calls use the new version.
    assert daemon.invoke("fn").text == "Hello from sofaas!\n"
    assert "SIGBUS" not in daemon.log()


def test_registry_writes_never_wait_on_a_held_database_lock(daemon):
    """A deploy, PATCH or DELETE runs on the loop thread: while another
    connection holds SQLite's write lock (an operator's sqlite3 shell in a
    transaction) it must answer 503 database_busy with Retry-After at once,
    change nothing, and leave the gateway serving; once the lock is gone
    the same requests work, with no version number skipped."""
    daemon.deploy("hello", example("hello"))
    with db_write_lock(daemon):
        with open(example("hello"), "rb") as f:
            r = requests.put(daemon.url("/v1/functions/hello"), data=f,
                             timeout=30)
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] == "1"
        assert r.json()["error"]["code"] == "database_busy"
        r = requests.patch(daemon.url("/v1/functions/hello"),
                           json={"min_warm": 1}, timeout=30)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "database_busy"
        r = requests.delete(daemon.url("/v1/functions/hello"), timeout=30)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "database_busy"
        # the gateway kept serving, and nothing changed
        assert requests.get(daemon.url("/healthz"), timeout=30).ok
        fn = requests.get(daemon.url("/v1/functions/hello"), timeout=30)
        assert fn.status_code == 200 and fn.json()["version"] == 1
    assert "database busy: another connection holds the write lock" in \
        daemon.log()
    r = requests.patch(daemon.url("/v1/functions/hello"),
                       json={"min_warm": 1}, timeout=30)
    assert r.status_code == 200 and r.json()["version"] == 2
    assert daemon.invoke("hello").status_code == 200
    assert requests.delete(daemon.url("/v1/functions/hello"),
                           timeout=30).status_code == 204
