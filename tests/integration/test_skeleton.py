"""Walking skeleton: deploy over REST, invoke over HTTP through pre-forked
workers, against the real daemon with real compiled functions."""
import base64
import hashlib
import json
import os
import sqlite3
import subprocess

import requests

from conftest import SOURCE, example, raw_request, testfn


def test_deploy_and_invoke_hello(daemon):
    r = daemon.deploy("hello", example("hello"))
    body = r.json()
    with open(example("hello"), "rb") as f:
        data = f.read()
    assert body["name"] == "hello"
    assert body["version"] == 1
    assert body["size"] == len(data)
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["config"]["timeout_ms"] == 3000
    assert body["config"]["memory_mb"] == 128
    assert body["created_at"].endswith("Z")

    r = daemon.invoke("hello")
    assert r.status_code == 200
    assert r.text == "Hello from sofaas!\n"
    assert r.headers["Content-Type"].startswith("text/plain")
    assert r.headers["X-Request-Id"]

    # The same through curl, as the README shows it.
    out = subprocess.run(["curl", "-s", "-i", daemon.url("/fn/hello")],
                         capture_output=True, check=True, timeout=30)
    assert out.stdout.startswith(b"HTTP/1.1 200")
    assert out.stdout.endswith(b"Hello from sofaas!\n")


def test_deploy_with_curl(daemon):
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PUT",
         "--data-binary", "@" + example("hello"),
         daemon.url("/v1/functions/hello")],
        capture_output=True, check=True, timeout=30)
    assert out.stdout == b"201"
    assert daemon.invoke("hello").text == "Hello from sofaas!\n"


def test_artifact_is_content_addressed_and_recorded(daemon):
    sha = daemon.deploy("hello", example("hello")).json()["sha256"]
    path = os.path.join(daemon.state_dir, "artifacts", sha + ".so")
    with open(path, "rb") as f, open(example("hello"), "rb") as g:
        assert f.read() == g.read()
    db = sqlite3.connect(os.path.join(daemon.state_dir, "sofaas.db"))
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = db.execute(
            "SELECT function, version, sha256 FROM versions").fetchall()
        assert rows == [("hello", 1, sha)]
    finally:
        db.close()


def test_echo_roundtrip(daemon):
    daemon.deploy("echo", example("echo"))
    body = bytes(range(256)) * 4 + b"\r\n\x00end"
    r = daemon.invoke("echo", "/some/sub/path", method="POST",
                      params={"a": "1", "b": "two words"},
                      headers={"X-Custom": "value 1", "X-Request-Id": "my-id-1"},
                      data=body)
    assert r.status_code == 200
    j = r.json()
    assert j["method"] == "POST"
    assert j["path"] == "/some/sub/path"
    assert j["query"] == "a=1&b=two+words"
    assert j["request_id"] == "my-id-1"
    assert r.headers["X-Request-Id"] == "my-id-1"
    hdrs = {k.lower(): v for k, v in j["headers"]}
    assert hdrs["x-custom"] == "value 1"
    assert j["body_len"] == len(body)
    assert base64.b64decode(j["body_base64"]) == body

    # Root path and other methods.
    j = daemon.invoke("echo", method="DELETE").json()
    assert j["method"] == "DELETE" and j["path"] == "/" and j["query"] == ""
    j = daemon.invoke("echo", "/", method="PUT", data=b"").json()
    assert j["method"] == "PUT" and j["body_len"] == 0


def test_chunked_request_body(daemon):
    daemon.deploy("echo", example("echo"))

    def gen():
        yield b"hello "
        yield b"chunked "
        yield b"world"
    r = daemon.invoke("echo", method="POST", data=gen())
    j = r.json()
    assert base64.b64decode(j["body_base64"]) == b"hello chunked world"
    hdrs = {k.lower(): v for k, v in j["headers"]}
    assert hdrs.get("transfer-encoding") == "chunked"


def test_generated_request_ids_are_unique(daemon):
    daemon.deploy("hello", example("hello"))
    ids = {daemon.invoke("hello").headers["X-Request-Id"] for _ in range(5)}
    assert len(ids) == 5
    # An unusable id from the client is replaced, not echoed.
    r = daemon.invoke("hello", headers={"X-Request-Id": "bad id\twith space"})
    assert r.headers["X-Request-Id"] != "bad id\twith space"


def test_keepalive_and_pipelining(daemon):
    daemon.deploy("echo", example("echo"))
    req = ("GET /fn/echo/%d HTTP/1.1\r\nHost: x\r\n\r\n")
    # Three pipelined requests in one write; the last asks to close.
    data = (req % 1 + req % 2 +
            "GET /fn/echo/3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    out = raw_request(daemon.port, data.encode(), timeout=10)
    parts = out.split(b"HTTP/1.1 ")[1:]
    assert len(parts) == 3, out
    paths = []
    for p in parts:
        assert p.startswith(b"200 ")
        body = p.split(b"\r\n\r\n", 1)[1]
        paths.append(json.loads(body)["path"])
    assert paths == ["/1", "/2", "/3"]

    # Keep-alive across separate round trips on one connection.
    s = requests.Session()
    for i in range(3):
        r = s.get(daemon.url("/fn/echo/k%d" % i), timeout=10)
        assert r.json()["path"] == "/k%d" % i
        assert r.headers.get("Connection") != "close"


def test_counter_keeps_state_when_warm(daemon):
    daemon.deploy("counter", example("counter"))
    seen = []
    for _ in range(4):
        r = daemon.invoke("counter")
        assert r.status_code == 200
        seen.append((r.json()["count"], r.json()["instance_pid"],
                     r.headers["X-Sofaas-Instance"]))
    assert [c for c, _, _ in seen] == [1, 2, 3, 4]
    assert len({p for _, p, _ in seen}) == 1
    assert len({i for _, _, i in seen}) == 1


def test_restart_persistence(daemon):
    daemon.deploy("hello", example("hello"))
    daemon.deploy("echo", example("echo"))
    daemon.deploy("hello", example("hello"))  # version 2
    daemon.restart()
    names = [f["name"] for f in
             requests.get(daemon.url("/v1/functions")).json()["functions"]]
    assert names == ["echo", "hello"]
    assert daemon.invoke("hello").text == "Hello from sofaas!\n"
    assert daemon.invoke("echo", "/x").json()["path"] == "/x"
    j = requests.get(daemon.url("/v1/functions/hello")).json()
    assert j["version"] == 2
    assert [v["version"] for v in j["versions"]] == [2, 1]


def test_redeploy_delete_and_versions(daemon):
    assert daemon.deploy("fn", example("hello")).json()["version"] == 1
    assert daemon.invoke("fn").text.startswith("Hello")
    assert daemon.deploy("fn", example("echo")).json()["version"] == 2
    assert daemon.invoke("fn", "/v2").json()["path"] == "/v2"
    r = requests.delete(daemon.url("/v1/functions/fn"))
    assert r.status_code == 204
    r = daemon.invoke("fn")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "function_not_found"
    assert requests.get(daemon.url("/v1/functions/fn")).status_code == 404
    assert requests.delete(daemon.url("/v1/functions/fn")).status_code == 404
    # Version numbers never repeat, even after a delete.
    assert daemon.deploy("fn", example("hello")).json()["version"] == 3


def test_deploy_config_parameters(daemon):
    r = daemon.deploy("hello", example("hello"),
                      params={"timeout_ms": "1500", "memory_mb": "256"})
    assert r.json()["config"]["timeout_ms"] == 1500
    assert r.json()["config"]["memory_mb"] == 256
    for params, key in [({"timeout_ms": "0"}, "timeout_ms"),
                        ({"memory_mb": "abc"}, "memory_mb"),
                        ({"memory_mb": "999999"}, "memory_mb"),
                        ({"nope": "1"}, "nope")]:
        r = daemon.deploy("hello", example("hello"), params=params,
                          expect=400)
        err = r.json()["error"]
        assert err["code"] == "invalid_parameter"
        assert key in err["message"]
    # PATCH changes the config and records a new version.
    r = requests.patch(daemon.url("/v1/functions/hello"),
                       data=json.dumps({"timeout_ms": 2000}))
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2
    assert r.json()["config"]["timeout_ms"] == 2000
    assert r.json()["config"]["memory_mb"] == 256
    r = requests.patch(daemon.url("/v1/functions/hello"), data="{bad json")
    assert r.status_code == 400


def test_bad_names_give_400(daemon):
    for name in ["Hello", "-x", "a_b", "a" * 64]:
        r = daemon.deploy(name, example("hello"), expect=400)
        assert r.json()["error"]["code"] == "invalid_name"
    # Percent-encoding is not decoded into a name (raw bytes on the wire).
    out = raw_request(daemon.port, b"PUT /v1/functions/%61bc HTTP/1.1\r\n"
                      b"Host: x\r\nContent-Length: 0\r\n"
                      b"Connection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 400"), out[:100]
    assert b'"invalid_name"' in out


def test_unknown_function_and_route_give_404(daemon):
    r = daemon.invoke("nope")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "function_not_found"
    r = requests.get(daemon.url("/nowhere"))
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    r = requests.post(daemon.url("/v1/functions"))
    assert r.status_code == 405


def test_invalid_artifacts_give_422_and_store_nothing(daemon):
    cases = [
        (b"not an elf at all", "ELF"),
        (open("/bin/true", "rb").read(), "executable"),
        (open(testfn("no_handle"), "rb").read(), "sofaas_handle"),
        (open(testfn("wrong_abi"), "rb").read(), "ABI version 99"),
        (open(testfn("fail_init"), "rb").read(), "sofaas_init returned 7"),
    ]
    for data, why in cases:
        r = requests.put(daemon.url("/v1/functions/bad"), data=data,
                         timeout=30)
        assert r.status_code == 422, (why, r.text)
        err = r.json()["error"]
        assert err["code"] == "invalid_artifact"
        assert why in err["message"], err
    assert os.listdir(os.path.join(daemon.state_dir, "artifacts")) == []
    assert requests.get(daemon.url("/v1/functions")).json() == \
        {"functions": []}
    assert daemon.invoke("bad").status_code == 404
    # The daemon keeps serving good deploys afterwards.
    daemon.deploy("hello", example("hello"))
    assert daemon.invoke("hello").status_code == 200


def test_body_limits_give_413(daemon):
    daemon.deploy("echo", example("echo"))
    # Declared over the 6 MiB invoke limit: refused before any body byte.
    head = ("POST /fn/echo HTTP/1.1\r\nHost: x\r\n"
            "Content-Length: %d\r\n\r\n" % (6 * 1024 * 1024 + 1))
    out = raw_request(daemon.port, head.encode(), timeout=10)
    assert out.startswith(b"HTTP/1.1 413"), out[:200]
    assert b'"payload_too_large"' in out
    # Exactly at the limit is fine (hello ignores its body).
    daemon.deploy("hello", example("hello"))
    r = daemon.invoke("hello", method="POST", data=b"x" * (6 * 1024 * 1024))
    assert r.status_code == 200
    # A response over the 6 MiB cap (base64 of 6 MiB) is refused whole.
    r = daemon.invoke("echo", method="POST", data=b"x" * (6 * 1024 * 1024))
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "invalid_response"
    # A large body arrives intact.
    body = os.urandom(1024 * 1024)
    r = daemon.invoke("echo", method="POST", data=body)
    assert r.status_code == 200
    assert base64.b64decode(r.json()["body_base64"]) == body
    # Deploy limit is 50 MiB.
    head = ("PUT /v1/functions/big HTTP/1.1\r\nHost: x\r\n"
            "Content-Length: %d\r\n\r\n" % (50 * 1024 * 1024 + 1))
    out = raw_request(daemon.port, head.encode(), timeout=10)
    assert out.startswith(b"HTTP/1.1 413"), out[:200]


def test_oversized_headers_give_431(daemon):
    daemon.deploy("hello", example("hello"))
    r = daemon.invoke("hello", headers={"X-Big": "a" * (17 * 1024)})
    assert r.status_code == 431
    assert r.json()["error"]["code"] == "headers_too_large"
    # The daemon is fine afterwards.
    assert daemon.invoke("hello").status_code == 200


def test_crash_gives_502_and_next_invocation_succeeds(daemon):
    daemon.deploy("crash", testfn("crash"))
    assert daemon.invoke("crash").text == "alive\n"
    r = daemon.invoke("crash", "/crash")
    assert r.status_code == 502
    err = r.json()["error"]
    assert err["code"] == "function_crashed"
    assert "SIGSEGV" in err["message"]
    r = daemon.invoke("crash")
    assert r.status_code == 200 and r.text == "alive\n"
    assert r.headers.get("X-Sofaas-Cold-Start") == "1"


def test_function_error_gives_500(daemon):
    daemon.deploy("fnerr", testfn("fn_error"))
    r = daemon.invoke("fnerr")
    assert r.status_code == 500
    assert r.json()["error"]["code"] == "function_error"
    assert "returned 3" in r.json()["error"]["message"]


def test_queueing_when_all_workers_busy(daemon):
    """More concurrent calls than workers: all are served, none fail."""
    import concurrent.futures
    daemon.deploy("sleepy", testfn("sleepy"))
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        futs = [ex.submit(daemon.invoke, "sleepy", "", params={"ms": "50"})
                for _ in range(16)]
        results = [f.result() for f in futs]
    assert all(r.status_code == 200 for r in results)
    assert all(r.text == "slept 50\n" for r in results)


def test_documented_build_command_works(daemon, tmp_path):
    """The exact command from docs/function-abi.md builds a deployable .so."""
    so = str(tmp_path / "hello.so")
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-I",
                    os.path.join(SOURCE, "include"),
                    os.path.join(SOURCE, "examples", "hello", "hello.c"),
                    "-o", so], check=True, timeout=60)
    daemon.deploy("built", so)
    assert daemon.invoke("built").text == "Hello from sofaas!\n"
