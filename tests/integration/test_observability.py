"""Observability: access log, function logs (capture, storage, query,
follow), Prometheus metrics, readiness and trace context, against the real
daemon with real compiled functions."""
import concurrent.futures
import json
import os
import re
import socket
import sqlite3
import threading
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import db_write_lock, example, testfn

TRACE_RE = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def logs(daemon, name, **params):
    r = requests.get(daemon.url("/v1/functions/%s/logs" % name),
                     params=params, headers=daemon.headers(), timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["logs"]


def metrics(daemon):
    r = requests.get(daemon.url("/metrics"), timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    fams = {f.name: f for f in text_string_to_metric_families(r.text)}
    return fams, r.text


def sample(fams, family, name, **labels):
    for s in fams[family].samples:
        if s.name == name and all(s.labels.get(k) == v
                                  for k, v in labels.items()):
            return s.value
    return None


def access_lines(daemon):
    return [l for l in daemon.log().splitlines() if 'msg="access"' in l]


def fields(line):
    return dict(re.findall(r'(\w+)=("[^"]*"|\S+)', line))


# ---- function logs -------------------------------------------------------

def test_function_output_is_captured_and_tagged(daemon):
    daemon.deploy("chatty", testfn("chatty"))
    r = daemon.invoke("chatty", "?n=3&nonl=1",
                      headers={"X-Request-Id": "req-one"})
    assert r.status_code == 200
    rid = r.headers["X-Request-Id"]
    assert rid == "req-one"
    inst = int(r.headers["X-Sofaas-Instance"])

    got = logs(daemon, "chatty", request_id=rid)
    msgs = [l["message"] for l in got]
    assert msgs == ["out 0 request req-one", "out 1 request req-one",
                    "out 2 request req-one", "err request req-one",
                    "no newline at the end"]
    for l in got:
        assert l["function"] == "chatty"
        assert l["version"] == 1
        assert l["instance"] == inst
        assert l["request_id"] == "req-one"
        assert l["time"].endswith("Z")

    # init output belongs to the instance, not to a request
    alll = logs(daemon, "chatty")
    init = [l for l in alll if l["message"] == "chatty init"]
    assert len(init) == 1 and init[0]["request_id"] is None
    assert [l["id"] for l in alll] == sorted(l["id"] for l in alll)


def test_each_invocation_gets_its_own_lines(daemon):
    daemon.deploy("chatty", testfn("chatty"))
    ids = []
    for i in range(5):
        r = daemon.invoke("chatty", "?n=2")
        assert r.status_code == 200
        ids.append(r.headers["X-Request-Id"])
    for rid in ids:
        msgs = [l["message"] for l in logs(daemon, "chatty", request_id=rid)]
        assert msgs == ["out 0 request " + rid, "out 1 request " + rid,
                        "err request " + rid]


def test_output_is_bounded_per_invocation(daemon_factory):
    d = daemon_factory(args=["--function-log-max-kib", "1"])
    d.deploy("chatty", testfn("chatty"))
    r = d.invoke("chatty", "?big=5000")
    assert r.status_code == 200
    rid = r.headers["X-Request-Id"]
    got = logs(d, "chatty", request_id=rid)
    # kept: the lines up to 1 KiB (newlines count), the rest is dropped
    total = sum(len(l["message"]) for l in got[:-1]) + len(got[:-1]) - 1
    assert total == 1024
    assert got[-2]["message"] == "x" * len(got[-2]["message"])
    assert got[-1]["message"].startswith("[sofaas: output truncated")
    assert not any("x" * 2000 in l["message"] for l in got)
    # the next invocation has a fresh budget
    r = d.invoke("chatty")
    msgs = [l["message"] for l in
            logs(d, "chatty", request_id=r.headers["X-Request-Id"])]
    assert msgs[-1] == "err request " + r.headers["X-Request-Id"]


def test_output_cannot_forge_daemon_log_lines(daemon):
    daemon.deploy("chatty", testfn("chatty"))
    r = daemon.invoke("chatty", "?forge=1&bad=1")
    rid = r.headers["X-Request-Id"]
    msgs = [l["message"] for l in logs(daemon, "chatty", request_id=rid)]
    assert 'x" level=error msg="forged"' in msgs
    assert "bad \ufffd\ufffd end" in msgs
    text = daemon.log()
    assert 'msg="forged"' not in text
    # the debug line about it keeps the text quoted, one line
    dbg = [l for l in text.splitlines()
           if 'msg="function output"' in l and "forged" in l]
    assert len(dbg) == 1
    assert 'text="x\\" level=error msg=\\"forged\\""' in dbg[0]
    assert ("request_id=" + rid) in dbg[0]


def test_worker_lines_pass_until_user_code_starts(daemon):
    daemon.deploy("chatty", testfn("chatty"))
    rid = daemon.invoke("chatty").headers["X-Request-Id"]
    text = daemon.log()
    # the workers' own lines (before any user code) reach the daemon log
    assert re.search(r'sofaas-worker\[\d+\] level=debug msg="worker started"',
                     text)
    # the boundary line is consumed, never shown or stored
    assert "user code starts here" not in text
    alll = logs(daemon, "chatty")
    assert not any("user code starts" in l["message"] for l in alll)
    # and what user code wrote is only function output
    assert not any("chatty init" in l for l in text.splitlines()
                   if 'msg="function output"' not in l)
    assert [l["message"] for l in alll][0] == "chatty init"
    assert any(l["request_id"] == rid for l in alll)


def test_logs_survive_restart_and_stay_in_sqlite(daemon):
    daemon.deploy("chatty", testfn("chatty"))
    rid = daemon.invoke("chatty").headers["X-Request-Id"]
    daemon.restart()
    msgs = [l["message"] for l in logs(daemon, "chatty", request_id=rid)]
    assert msgs == ["out 0 request " + rid, "err request " + rid]
    db = sqlite3.connect(os.path.join(daemon.state_dir, "sofaas.db"))
    try:
        n = db.execute("SELECT COUNT(*) FROM function_logs WHERE "
                       "request_id = ?", (rid,)).fetchone()[0]
    finally:
        db.close()
    assert n == 2


def test_logs_query_parameters(daemon):
    daemon.deploy("chatty", testfn("chatty"))
    rid = daemon.invoke("chatty", "?n=10").headers["X-Request-Id"]
    got = logs(daemon, "chatty", request_id=rid, limit=3)
    # without a cursor: the newest lines
    assert [l["message"] for l in got] == [
        "out 8 request " + rid, "out 9 request " + rid, "err request " + rid]
    first = logs(daemon, "chatty", request_id=rid, since=0, limit=2)
    assert [l["message"] for l in first] == ["out 0 request " + rid,
                                              "out 1 request " + rid]
    nxt = logs(daemon, "chatty", request_id=rid, after=first[-1]["id"],
               limit=1)
    assert [l["message"] for l in nxt] == ["out 2 request " + rid]
    assert logs(daemon, "chatty", since="2999-01-01T00:00:00Z") == []
    assert logs(daemon, "chatty", since=str(int(time.time()) + 3600)) == []
    assert len(logs(daemon, "chatty", since="2000-01-01T00:00:00.5Z")) == 12

    for bad in ({"limit": "0"}, {"limit": "1001"}, {"limit": "x"},
                {"since": "yesterday"}, {"after": "-1"}, {"follow": "2"}):
        r = requests.get(daemon.url("/v1/functions/chatty/logs"),
                         params=bad, timeout=10)
        assert r.status_code == 400, bad
        assert r.json()["error"]["code"] == "invalid_parameter"
    r = requests.get(daemon.url("/v1/functions/nope/logs"), timeout=10)
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "function_not_found"


def ndjson(resp):
    """One line iterator per streamed response (it buffers read-ahead)."""
    return resp.iter_lines(chunk_size=None)


def read_ndjson(it, n):
    """Reads n NDJSON lines from a stream's line iterator."""
    out = []
    while len(out) < n:
        line = next(it)
        if line:
            out.append(json.loads(line))
    return out


def test_follow_streams_new_lines(daemon):
    daemon.deploy("chatty", testfn("chatty"))
    old = daemon.invoke("chatty").headers["X-Request-Id"]
    with requests.get(daemon.url("/v1/functions/chatty/logs"),
                      params={"follow": "1", "limit": "2"}, stream=True,
                      timeout=10) as r:
        assert r.status_code == 200
        assert r.headers["Transfer-Encoding"] == "chunked"
        assert r.headers["Content-Type"] == "application/x-ndjson"
        it = ndjson(r)
        # history first (the same as without follow) ...
        hist = read_ndjson(it, 2)
        assert [l["message"] for l in hist] == ["out 0 request " + old,
                                                "err request " + old]
        # ... then live lines as they are written
        rid = daemon.invoke("chatty", "?n=2").headers["X-Request-Id"]
        live = read_ndjson(it, 3)
        assert [l["message"] for l in live] == [
            "out 0 request " + rid, "out 1 request " + rid,
            "err request " + rid]
        assert all(l["request_id"] == rid for l in live)
    # the client left: the daemon notices and keeps serving
    deadline = time.time() + 10
    while 'msg="log follower left"' not in daemon.log():
        assert time.time() < deadline, daemon.log()
        time.sleep(0.05)
    assert daemon.invoke("chatty").status_code == 200


def test_follow_filters_by_request_id(daemon):
    daemon.deploy("chatty", testfn("chatty"))
    with requests.get(daemon.url("/v1/functions/chatty/logs"),
                      params={"follow": "1", "request_id": "wanted"},
                      stream=True, timeout=10) as r:
        daemon.invoke("chatty", headers={"X-Request-Id": "other"})
        daemon.invoke("chatty", headers={"X-Request-Id": "wanted"})
        got = read_ndjson(ndjson(r), 2)
        assert [l["message"] for l in got] == ["out 0 request wanted",
                                               "err request wanted"]


def test_follow_ends_cleanly_at_shutdown(daemon):
    daemon.deploy("chatty", testfn("chatty"))
    s = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
    s.sendall(b"GET /v1/functions/chatty/logs?follow=1 HTTP/1.1\r\n"
              b"Host: x\r\n\r\n")
    head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 200")
    assert daemon.stop() == 0
    rest = b""
    while True:
        b = s.recv(4096)
        if not b:
            break
        rest += b
    s.close()
    # the stream was ended properly (last chunk), not cut, and did not hold
    # up the graceful shutdown until its drain timeout
    assert (head + rest).endswith(b"\r\n0\r\n\r\n")
    assert "drain timeout" not in daemon.log()
    assert "level=error" not in daemon.log()


# ---- daemon log format ---------------------------------------------------

LINE_RE = re.compile(r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z '
                     r'(sofaasd|sofaas-worker)\[\d+\] level=(error|warn|info|debug) '
                     r'msg="[^"]*"( \w+=("([^"\\]|\\.)*"|\S+))*$')


def test_log_lines_are_key_value(daemon):
    daemon.deploy("chatty", testfn("chatty"))
    daemon.invoke("chatty", "?forge=1")
    daemon.invoke("nope")
    lines = daemon.log().splitlines()
    assert len(lines) > 10
    for l in lines:
        assert LINE_RE.match(l), l


def test_journal_priorities_and_level_threshold(daemon_factory):
    d = daemon_factory(env={"JOURNAL_STREAM": "8:12345"})
    d.deploy("crash", testfn("crash"))
    d.invoke("crash", "/crash")
    lines = d.log().splitlines()
    prio = {"error": "<3>", "warn": "<4>", "info": "<6>", "debug": "<7>"}
    seen = set()
    for l in lines:
        m = re.match(r"^(<\d>)(sofaasd|sofaas-worker)\[\d+\]: level=(\w+) ", l)
        assert m, l
        assert m.group(1) == prio[m.group(3)], l
        seen.add(m.group(3))
    assert {"info", "warn", "debug"} <= seen  # worker died -> warn

    quiet = daemon_factory(args=["--log-level", "warn"], name="quiet")
    quiet.deploy("hello", example("hello"))
    quiet.invoke("hello")
    assert all("level=info" not in l and "level=debug" not in l
               for l in quiet.log().splitlines())


# ---- access log ----------------------------------------------------------

def test_access_log_line_per_invocation(daemon):
    daemon.deploy("hello", example("hello"))
    daemon.deploy("crash", testfn("crash"))
    r = daemon.invoke("hello", headers={"X-Request-Id": "acc-1"})
    assert r.status_code == 200
    r2 = daemon.invoke("crash", "/crash",
                       headers={"X-Request-Id": "acc-2"})
    assert r2.status_code == 502
    lines = access_lines(daemon)
    assert len(lines) == 2
    f = fields(lines[0])
    assert f["request_id"] == "acc-1" and f["function"] == "hello"
    assert f["version"] == "1" and f["status"] == "200"
    assert f["outcome"] == "ok" and f["cold_start"] == "1"
    assert "level=info" in lines[0]
    dur = float(f["duration_ms"])
    # the meter's billed figure: what the client was told, >= the duration
    assert f["billed_ms"] == r.headers["X-Sofaas-Billed-Ms"]
    assert int(f["billed_ms"]) >= dur
    assert re.fullmatch(r"[0-9a-f]{32}", f["trace_id"])
    f2 = fields(lines[1])
    assert f2["request_id"] == "acc-2" and f2["status"] == "502"
    assert f2["outcome"] == "function_crashed"
    # every daemon line about acc-2's failure carries its request id
    for l in daemon.log().splitlines():
        if "worker died" in l:
            assert "request_id=acc-2" in l


def test_access_log_can_be_switched_off(daemon_factory):
    d = daemon_factory(args=["--access-log", "off"])
    d.deploy("hello", example("hello"))
    assert d.invoke("hello").status_code == 200
    assert access_lines(d) == []


# ---- metrics -------------------------------------------------------------

def test_metrics_parse_and_count(daemon):
    daemon.deploy("hello", example("hello"))
    daemon.deploy("crash", testfn("crash"))
    for _ in range(3):
        assert daemon.invoke("hello").status_code == 200
    assert daemon.invoke("crash", "/crash").status_code == 502
    assert daemon.invoke("nope").status_code == 404
    fams, text = metrics(daemon)

    assert sample(fams, "sofaas_invocations", "sofaas_invocations_total",
                  function="hello", status="ok") == 3
    assert sample(fams, "sofaas_invocations", "sofaas_invocations_total",
                  function="crash", status="function_crashed") == 1
    assert fams["sofaas_invocation_duration_seconds"].type == "histogram"
    assert sample(fams, "sofaas_invocation_duration_seconds",
                  "sofaas_invocation_duration_seconds_count",
                  function="hello") == 3
    assert sample(fams, "sofaas_invocation_duration_seconds",
                  "sofaas_invocation_duration_seconds_bucket",
                  function="hello", le="+Inf") == 3
    assert sample(fams, "sofaas_cold_starts", "sofaas_cold_starts_total",
                  function="hello") == 1
    assert sample(fams, "sofaas_queue_depth", "sofaas_queue_depth",
                  function="hello") == 0
    assert sample(fams, "sofaas_workers", "sofaas_workers",
                  state="idle") >= 1
    assert sample(fams, "sofaas_workers", "sofaas_workers",
                  state="generic") >= 0
    assert sample(fams, "sofaas_http_requests", "sofaas_http_requests_total",
                  code="200") >= 3
    assert sample(fams, "sofaas_http_requests", "sofaas_http_requests_total",
                  code="404") == 1
    assert sample(fams, "sofaas_http_requests", "sofaas_http_requests_total",
                  code="502") == 1
    assert sample(fams, "sofaas_build_info", "sofaas_build_info",
                  version="0.1.0") == 1
    assert sample(fams, "process_resident_memory_bytes",
                  "process_resident_memory_bytes") > 1 << 20
    assert sample(fams, "process_open_fds", "process_open_fds") > 3
    assert sample(fams, "process_cpu_seconds", "process_cpu_seconds_total") > 0
    start = sample(fams, "process_start_time_seconds",
                   "process_start_time_seconds")
    assert abs(start - time.time()) < 3600
    # the meter's figure: billed cost recorded since start, in currency
    # units (a float for exposition only; the rows hold integer picos)
    db = sqlite3.connect(os.path.join(daemon.state_dir, "sofaas.db"))
    picos = db.execute("SELECT SUM(cost_pico) FROM invocations").fetchone()[0]
    db.close()
    cost = sample(fams, "sofaas_billed_cost", "sofaas_billed_cost_total")
    assert picos > 0 and abs(cost - picos / 1e12) <= 1e-8 * (picos / 1e12)


def test_metrics_count_cold_starts_per_instance(daemon):
    daemon.deploy("hello", example("hello"))
    daemon.invoke("hello")
    # a redeploy retires the instance: the next call is cold again
    daemon.deploy("hello", example("hello"))
    daemon.invoke("hello")
    daemon.invoke("hello")
    fams, _ = metrics(daemon)
    assert sample(fams, "sofaas_cold_starts", "sofaas_cold_starts_total",
                  function="hello") == 2


# ---- health --------------------------------------------------------------

def test_readyz_after_ready_line(daemon):
    # /healthz (what the fixture waits for) answers before the generic
    # workers are up; /readyz only after, with 503 not_ready until then
    deadline = time.time() + 60
    while True:
        r = requests.get(daemon.url("/readyz"), timeout=10)
        if r.status_code == 200:
            break
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "not_ready"
        assert time.time() < deadline, daemon.log()
        time.sleep(0.02)
    assert r.json() == {"status": "ready"}
    text = daemon.log()
    assert text.index('msg="listening"') < text.index('msg="ready"')
    assert requests.get(daemon.url("/healthz"), timeout=10).status_code == 200


def test_readyz_503_until_workers_are_up(daemon_factory, tmp_path):
    # a "worker" that never says HELLO: alive, listening, never ready
    fake = tmp_path / "silent-worker"
    fake.write_text("#!/bin/sh\nexec sleep 60\n")
    fake.chmod(0o755)
    d = daemon_factory(args=["--worker", str(fake), "--workers", "1"])
    assert requests.get(d.url("/healthz"), timeout=10).status_code == 200
    r = requests.get(d.url("/readyz"), timeout=10)
    assert r.status_code == 503
    assert r.json()["error"]["code"] == "not_ready"
    assert 'msg="ready"' not in d.log()


# ---- trace context -------------------------------------------------------

def test_traceparent_is_continued(daemon):
    daemon.deploy("chatty", testfn("chatty"))
    tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    r = daemon.invoke("chatty", headers={"traceparent": tp,
                                         "tracestate": "k=v"})
    m = TRACE_RE.match(r.text)
    assert m, r.text
    assert m.group(1) == "0af7651916cd43dd8448eb211c80319c"
    assert m.group(2) != "b7ad6b7169203331"  # our own span
    assert m.group(3) == "01"
    line = [l for l in access_lines(daemon)
            if r.headers["X-Request-Id"] in l][0]
    assert fields(line)["trace_id"] == m.group(1)


@pytest.mark.parametrize("bad", [
    None,
    "",
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",   # short
    "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # zero trace
    "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # zero span
    "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # version ff
    "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",  # upper case
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
])
def test_traceparent_started_when_absent_or_invalid(daemon, bad):
    daemon.deploy("chatty", testfn("chatty"))
    h = {} if bad is None else {"traceparent": bad}
    r = daemon.invoke("chatty", headers=h)
    m = TRACE_RE.match(r.text)
    assert m, r.text
    assert m.group(1) != "0af7651916cd43dd8448eb211c80319c"
    assert m.group(3) == "00"


def test_future_traceparent_version_is_accepted(daemon):
    daemon.deploy("chatty", testfn("chatty"))
    tp = "cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what"
    m = TRACE_RE.match(daemon.invoke("chatty", headers={"traceparent": tp}).text)
    assert m.group(1) == "0af7651916cd43dd8448eb211c80319c"


def test_request_id_is_validated(daemon):
    daemon.deploy("hello", example("hello"))
    r = daemon.invoke("hello", headers={"X-Request-Id": "bad id with spaces"})
    rid = r.headers["X-Request-Id"]
    assert rid != "bad id with spaces"
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}"
                        r"-[0-9a-f]{12}", rid)
    assert any(("request_id=" + rid) in l for l in access_lines(daemon))


# ---- output of invocations that end badly, and live output --------------

def test_output_before_a_crash_is_kept(daemon):
    daemon.deploy("chatty", testfn("chatty"))
    r = daemon.invoke("chatty", "?crash=1", headers={"X-Request-Id": "dies"})
    assert r.status_code == 502
    msgs = [l["message"] for l in logs(daemon, "chatty", request_id="dies")]
    assert msgs[:3] == ["out 0 request dies", "err request dies", "dying"]


def test_output_before_a_timeout_is_kept(daemon):
    daemon.deploy("chatty", testfn("chatty"), params={"timeout_ms": "300"})
    r = daemon.invoke("chatty", "?sleep=5000",
                      headers={"X-Request-Id": "slow"})
    assert r.status_code == 504
    msgs = [l["message"] for l in logs(daemon, "chatty", request_id="slow")]
    assert msgs == ["out 0 request slow", "err request slow", "sleeping"]
    line = [l for l in daemon.log().splitlines() if "deadline passed" in l]
    assert line and "request_id=slow" in line[0]


def test_follow_sees_output_while_the_invocation_runs(daemon):
    import threading
    daemon.deploy("chatty", testfn("chatty"), params={"timeout_ms": "20000"})
    done = threading.Event()

    def call():
        daemon.invoke("chatty", "?sleep=4000",
                      headers={"X-Request-Id": "live"})
        done.set()

    with requests.get(daemon.url("/v1/functions/chatty/logs"),
                      params={"follow": "1", "request_id": "live"},
                      stream=True, timeout=30) as r:
        t = threading.Thread(target=call)
        t.start()
        got = read_ndjson(ndjson(r), 3)
        # the line arrived while the function was still sleeping
        assert not done.is_set()
        assert [l["message"] for l in got] == [
            "out 0 request live", "err request live", "sleeping"]
        t.join()


def test_metrics_gauges_show_queue_and_busy_workers(daemon_factory):
    import threading
    d = daemon_factory(args=["--workers", "0", "--max-workers", "1"])
    d.deploy("sleepy", testfn("sleepy"), params={"timeout_ms": "20000"})
    threads = [threading.Thread(target=d.invoke, args=("sleepy", "?ms=3000"))
               for _ in range(3)]
    for t in threads:
        t.start()
    # poll until all three arrived and the instance is up: one runs, two
    # wait (two requests queued behind a still-loading instance also read
    # as depth 2, so wait for the busy worker too)
    deadline = time.time() + 30
    while True:
        fams, _ = metrics(d)
        q = sample(fams, "sofaas_queue_depth", "sofaas_queue_depth",
                   function="sleepy")
        busy = sample(fams, "sofaas_workers", "sofaas_workers", state="busy")
        if q == 2 and busy == 1:
            break
        assert time.time() < deadline, (q, busy)
        time.sleep(0.02)
    for t in threads:
        t.join()
    fams, _ = metrics(d)
    assert sample(fams, "sofaas_queue_depth", "sofaas_queue_depth",
                  function="sleepy") == 0
    assert sample(fams, "sofaas_invocations", "sofaas_invocations_total",
                  function="sleepy", status="ok") == 3
    assert sample(fams, "sofaas_workers", "sofaas_workers",
                  state="busy") == 0


def test_a_held_database_lock_keeps_function_logs(daemon):
    """Another connection holds SQLite's write lock for longer than the
    registry connection's 5 s busy timeout. A flush that waited on the
    lock would stall the loop and then drop the lines; they must instead
    stay pending, the gateway keep answering, and every line be stored
    once the lock is released."""
    daemon.deploy("chatty", testfn("chatty"))
    assert daemon.invoke("chatty").status_code == 200
    with db_write_lock(daemon):
        # answered at once: its billing row goes to the meter's spill
        # journal (docs/metering.md); its log lines wait
        r = daemon.invoke("chatty", params={"n": "3"}, timeout=60)
        assert r.status_code == 200
        rid = r.headers["X-Request-Id"]
        time.sleep(6)  # past the 5 s busy timeout, with flushes retrying
        health = requests.get(daemon.url("/healthz"), timeout=60)
        assert health.status_code == 200
        stored_while_locked = logs(daemon, "chatty", request_id=rid)
    assert stored_while_locked == []
    for _ in range(100):  # flushed at the next retry
        if len(logs(daemon, "chatty", request_id=rid)) == 4:
            break
        time.sleep(0.1)
    lines = [x["message"] for x in logs(daemon, "chatty", request_id=rid)]
    assert sorted(lines) == sorted(
        ["out %d request %s" % (i, rid) for i in range(3)] +
        ["err request %s" % rid]), lines


def test_log_lines_stay_whole_under_load(daemon):
    # The loop thread writes its info and debug lines once per loop
    # iteration, many per write (at most PIPE_BUF bytes, whole lines), while
    # workers write theirs to the same stderr. Every line must still be one
    # whole record, and every invocation must have its access line.
    daemon.deploy("chatty", testfn("chatty"))

    def client(_):
        s = requests.Session()
        for _ in range(50):
            assert s.get(daemon.url("/fn/chatty"), timeout=30).status_code \
                == 200

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        list(ex.map(client, range(8)))
    text = daemon.log()
    record = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z "
                        r"sofaas(d|-worker)\[\d+\] level=(error|warn|info|"
                        r"debug) \S")
    bad = [l for l in text.splitlines() if not record.match(l)]
    assert bad == [], bad[:3]
    assert len(access_lines(daemon)) == 400
