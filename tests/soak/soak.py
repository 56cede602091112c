#!/usr/bin/env python3
"""Soak test: a bounded mixed load against a real sofaasd while faults are
injected, then checks that the daemon answered correctly and stayed flat.

Load (all on loopback, every loop bounded by the deadline, every request
with a client timeout):
  * keep-alive clients (requests.Session) invoking good, slow, crashing and
    failing functions, echoing random bodies (checked byte for byte),
    listing functions and sending bad admin bodies;
  * one-shot clients on raw sockets (Connection: close, HTTP/1.0);
  * hostile clients on raw sockets: malformed and oversized requests, and
    a pipeline whose middle request is malformed;
  * a chaos thread that SIGKILLs random workers (children of the daemon),
    redeploys functions (alternating artifacts under one name) and sends
    SIGHUP to the daemon (a config reload; --no-sighup or SOAK_SIGHUP=0
    leaves it out).

Checks:
  * every response is a documented one: success statuses per request kind,
    and every error is JSON {"error":{"code","message"}} whose (status,
    code) pair appears in docs/*.md (parsed, so the docs are the
    contract), and is one the request kind may get;
  * no request hangs (each has a client timeout; a timeout is a failure);
  * the daemon is alive at the end, and its fd count and RSS after the run
    are within a small margin of the values after a warm-up (measured at
    the same quiet point: load stopped, client connections closed).

Run it with `make soak` (SOAK_SECONDS=600 make soak for longer) or
directly: tests/soak/soak.py --build-dir build --duration 60. A short run
is part of the test suite (tests/integration/test_soak_short.py).
"""
import argparse
import base64
import collections
import json
import os
import random
import re
import signal
import socket
import sys
import threading
import time

import requests

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.abspath(os.path.join(HERE, "..", ".."))

CLIENT_TIMEOUT = 30  # seconds; any request slower than this is a hang
FD_MARGIN = 8        # fds the end may exceed the warm-up by
FDS_PER_WORKER = 3   # IPC socket, pidfd, output pipe: allowed per extra worker
RSS_MARGIN_KB = 8192 # plus 10 %: allocator slack, SQLite page cache


def documented_errors(docs=os.path.join(SOURCE, "docs")):
    """(status, code) pairs the docs document (docs/api.md is the
    reference; docs/robustness.md and others add the fault cases).

    Table rows "| 404 | `a` / 405 `b` | ..." give (404, a) and (405, b);
    prose like "`401 unauthorized`" gives (401, unauthorized).
    """
    pairs = set()
    text = ""
    for name in sorted(os.listdir(docs)):
        if name.endswith(".md"):
            with open(os.path.join(docs, name), encoding="utf-8") as f:
                text += f.read() + "\n"
    for line in text.splitlines():
        m = re.match(r"\|\s*(\d{3})\s*\|([^|]*)\|", line)
        if m:
            status = int(m.group(1))
            for st, code in re.findall(r"(?:(\d{3})\s*)?`([a-z_]+)`",
                                       m.group(2)):
                pairs.add((int(st) if st else status, code))
    for st, code in re.findall(r"`(\d{3}) ([a-z_]+)`", text):
        pairs.add((int(st), code))
    return pairs


# ---- what each kind of request may get back ------------------------------

# Errors any invocation may meet while its instance is being killed or
# replaced by the chaos thread.
CHAOS_INVOKE = {(502, "function_crashed"), (502, "init_failed"),
                (503, "function_unavailable")}

# Documented errors that the request kind should not get, seen because of
# a daemon bug that has not been fixed yet: counted and printed, not failed.
# Remove an entry once its bug is fixed, so the soak guards the fix.
KNOWN_BUGS = {}

EXPECT = {
    # kind: (success statuses, allowed (status, code) errors)
    "hello": ({200}, CHAOS_INVOKE),
    "echo": ({200}, CHAOS_INVOKE),
    "flip": ({200}, CHAOS_INVOKE),
    "sleepy": ({200}, CHAOS_INVOKE),
    "crash": (set(), {(502, "function_crashed"), (502, "init_failed"),
                      (503, "function_unavailable")}),
    "fn_error": (set(), {(500, "function_error")} | CHAOS_INVOKE),
    "missing": (set(), {(404, "function_not_found")}),
    "healthz": ({200}, set()),
    "list": ({200}, set()),
    "bad_patch": (set(), {(400, "invalid_json")}),
    "deploy": ({201}, {(422, "invalid_artifact")}),
}

INVOKE_KINDS = {"hello", "echo", "flip", "sleepy", "crash", "fn_error"}


class Stats:
    """Thread-safe tallies and failures."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = collections.Counter()
        self.failures = []
        self.requests = 0
        self.known_bugs = collections.Counter()

    def ok(self, kind, status, code=None):
        with self.lock:
            self.requests += 1
            self.counts[(kind, status, code)] += 1

    def known(self, kind, status, code):
        with self.lock:
            self.requests += 1
            self.counts[(kind, status, code)] += 1
            self.known_bugs[(status, code)] += 1

    def fail(self, msg):
        with self.lock:
            self.requests += 1
            if len(self.failures) < 50:
                self.failures.append(msg)


def check_error_body(kind, status, body, documented):
    """Returns the error code, or raises AssertionError."""
    try:
        doc = json.loads(body)
        code = doc["error"]["code"]
        assert isinstance(doc["error"]["message"], str)
    except (ValueError, KeyError, TypeError) as e:
        raise AssertionError("%s: %d with a non-JSON error body %r (%s)" %
                             (kind, status, body[:200], e))
    assert (status, code) in documented, \
        "%s: undocumented error %d %s: %r" % (kind, status, code, body[:200])
    return code


def judge(stats, kind, status, body, documented, headers=None):
    """Records one response to a request of this kind."""
    ok_statuses, errors = EXPECT[kind]
    try:
        if headers is not None:
            assert "X-Request-Id" in headers, "%s: no X-Request-Id" % kind
        if status in ok_statuses:
            stats.ok(kind, status)
            return True
        code = check_error_body(kind, status, body, documented)
        if kind in INVOKE_KINDS and (status, code) in KNOWN_BUGS:
            stats.known(kind, status, code)
            return False
        assert (status, code) in errors, \
            "%s: unexpected %d %s: %r" % (kind, status, code, body[:200])
        stats.ok(kind, status, code)
    except AssertionError as e:
        stats.fail(str(e))
    return False


# ---- raw HTTP ------------------------------------------------------------

def read_all(sock):
    """Reads until the server closes; raises socket.timeout on a hang."""
    chunks = []
    while True:
        b = sock.recv(65536)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


def parse_responses(data):
    """Splits Content-Length-framed responses: [(status, headers, body)]."""
    out = []
    while data:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            raise AssertionError("truncated response head: %r" % data[:200])
        lines = data[:end].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or parts[0] != "HTTP/1.1":
            raise AssertionError("bad status line: %r" % lines[0])
        hdrs = {}
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            hdrs[k.strip().lower()] = v.strip()
        clen = int(hdrs.get("content-length", "0"))
        body = data[end + 4:end + 4 + clen]
        if len(body) != clen:
            raise AssertionError("truncated body")
        out.append((int(parts[1]), hdrs, body))
        data = data[end + 4 + clen:]
    return out


def raw_exchange(port, payload):
    s = socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT)
    try:
        s.settimeout(CLIENT_TIMEOUT)
        s.sendall(payload)
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        return read_all(s)
    finally:
        s.close()


GOOD = b"GET /fn/hello HTTP/1.1\r\nHost: x\r\n\r\n"

# (name, bytes, allowed (status, code) of the one response, then close)
MALFORMED = [
    ("garbage", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" * 3,
     {(400, "bad_request")}),
    ("cl_and_te", b"POST /fn/echo HTTP/1.1\r\nContent-Length: 3\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", {(400, "bad_request")}),
    ("dup_cl", b"POST /fn/echo HTTP/1.1\r\nContent-Length: 1\r\n"
     b"Content-Length: 2\r\n\r\nab", {(400, "bad_request")}),
    ("bad_cl", b"POST /fn/echo HTTP/1.1\r\nContent-Length: x1\r\n\r\n",
     {(400, "bad_request")}),
    ("te_gzip", b"POST /fn/echo HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
     {(400, "bad_request"), (501, "not_implemented")}),
    ("ctl_header", b"GET /fn/hello HTTP/1.1\r\nX-A: a\x01b\r\n\r\n",
     {(400, "bad_request")}),
    ("bare_lf", b"GET /fn/hello HTTP/1.1\nHost: x\n\n",
     {(400, "bad_request")}),
    ("relative", b"GET fn/hello HTTP/1.1\r\n\r\n", {(400, "bad_request")}),
    ("long_url", b"GET /fn/hello?" + b"a" * (9 << 10) + b" HTTP/1.1\r\n\r\n",
     {(414, "uri_too_long")}),
    ("big_headers", b"GET /fn/hello HTTP/1.1\r\nX-Big: " + b"b" * (17 << 10)
     + b"\r\n\r\n", {(431, "headers_too_large")}),
    ("many_headers", b"GET /fn/hello HTTP/1.1\r\n" +
     b"".join(b"X-%d: v\r\n" % i for i in range(120)) + b"\r\n",
     {(431, "headers_too_large")}),
    ("body_too_big", b"POST /fn/echo HTTP/1.1\r\nContent-Length: 7340032"
     b"\r\n\r\nabc", {(413, "payload_too_large")}),
    ("chunked_too_big", b"PATCH /v1/functions/echo HTTP/1.1\r\n"
     b"Transfer-Encoding: chunked\r\n\r\n" + b"10001\r\n" +
     b"c" * 0x10001 + b"\r\n0\r\n\r\n", {(413, "payload_too_large")}),
    ("http2", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", {(400, "bad_request")}),
]


def malformed_once(port, rng, stats, documented):
    name, payload, allowed = rng.choice(MALFORMED)
    kind = "malformed:" + name
    try:
        resps = parse_responses(raw_exchange(port, payload))
        assert len(resps) == 1, "%s: %d responses" % (kind, len(resps))
        status, hdrs, body = resps[0]
        code = check_error_body(kind, status, body, documented)
        assert (status, code) in allowed, \
            "%s: got %d %s" % (kind, status, code)
        assert hdrs.get("connection") == "close", "%s: not closed" % kind
        stats.ok(kind, status, code)
    except socket.timeout:
        stats.fail("%s: hang (no answer or no close in %ds)" %
                   (kind, CLIENT_TIMEOUT))
    except (AssertionError, OSError, ValueError) as e:
        stats.fail("%s: %s" % (kind, e))


def pipeline_once(port, stats, documented):
    """good, malformed, good: 200, then 400 and close; the third never runs.
    """
    bad = b"GET /fn/hello HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2" \
          b"\r\n\r\nab"
    kind = "pipeline"
    try:
        resps = parse_responses(raw_exchange(port, GOOD + bad + GOOD))
        statuses = [r[0] for r in resps]
        assert len(resps) == 2, "%s: statuses %s" % (kind, statuses)
        judge(stats, "hello", resps[0][0], resps[0][2], documented)
        assert resps[1][0] == 400, "%s: second got %d" % (kind, resps[1][0])
        check_error_body(kind, 400, resps[1][2], documented)
        stats.ok(kind, 400, "bad_request")
    except socket.timeout:
        stats.fail("%s: hang" % kind)
    except (AssertionError, OSError, ValueError) as e:
        stats.fail("%s: %s" % (kind, e))


def oneshot_once(port, rng, stats, documented):
    """A non-keep-alive request: answered once, then the server closes."""
    req = rng.choice([
        b"GET /fn/hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /fn/hello HTTP/1.0\r\n\r\n",
        b"GET /healthz HTTP/1.0\r\n\r\n"])
    kind = "healthz" if b"healthz" in req else "hello"
    try:
        resps = parse_responses(raw_exchange(port, req))
        assert len(resps) == 1, "oneshot: %d responses" % len(resps)
        judge(stats, kind, resps[0][0], resps[0][2], documented)
    except socket.timeout:
        stats.fail("oneshot: hang")
    except (AssertionError, OSError, ValueError) as e:
        stats.fail("oneshot: %s" % e)


# ---- keep-alive clients --------------------------------------------------

def session_once(sess, base, rng, stats, documented, admin_headers):
    op = rng.choice(["hello", "hello", "echo", "echo", "flip", "sleepy",
                     "crash", "fn_error", "missing", "healthz", "list",
                     "bad_patch"])
    try:
        if op == "echo":
            body = os.urandom(rng.choice([0, 1, 100, 4096, 65536]))
            r = sess.post(base + "/fn/echo/x?q=1", data=body,
                          timeout=CLIENT_TIMEOUT)
            if judge(stats, op, r.status_code, r.content, documented,
                     r.headers):
                got = base64.b64decode(r.json()["body_base64"])
                if got != body:
                    stats.fail("echo: body of %d bytes came back as %d "
                               "different bytes" % (len(body), len(got)))
            return
        if op == "bad_patch":
            r = sess.patch(base + "/v1/functions/echo", data=b"{nope",
                           headers=admin_headers, timeout=CLIENT_TIMEOUT)
        elif op == "list":
            r = sess.get(base + "/v1/functions", headers=admin_headers,
                         timeout=CLIENT_TIMEOUT)
        elif op == "healthz":
            r = sess.get(base + "/healthz", timeout=CLIENT_TIMEOUT)
        else:
            path = {"hello": "/fn/hello", "flip": "/fn/flip",
                    "sleepy": "/fn/sleepy?ms=%d" % rng.randint(0, 30),
                    "crash": "/fn/crash/crash", "fn_error": "/fn/fn-error",
                    "missing": "/fn/no-such-fn"}[op]
            r = sess.get(base + path, timeout=CLIENT_TIMEOUT)
        judge(stats, op, r.status_code, r.content, documented, r.headers)
    except requests.Timeout:
        stats.fail("%s: hang (no answer in %ds)" % (op, CLIENT_TIMEOUT))
    except requests.RequestException as e:
        stats.fail("%s: %s" % (op, e))


# ---- the daemon from outside ---------------------------------------------

def worker_pids(pid):
    """The daemon's child processes (its workers)."""
    kids = set()
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                kids.update(int(x) for x in f.read().split())
    except OSError:
        pass
    return sorted(kids)


def instance_pids(pid):
    """Every process under the daemon: workers and the instances its
    templates forked (grandchildren), each holding a socket, a pipe and a
    pidfd in the daemon."""
    out, todo = [], worker_pids(pid)
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(worker_pids(p))
    return sorted(out)


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def fd_kinds(pid):
    """How many fds of each kind (socket, pipe, anon_inode:[pidfd], or the
    file's path): when the count grows, the report says what grew."""
    kinds = {}
    d = "/proc/%d/fd" % pid
    for fd in os.listdir(d):
        try:
            t = os.readlink(os.path.join(d, fd))
        except OSError:
            continue
        k = t.split(":[")[0] if ":[" in t else t
        kinds[k] = kinds.get(k, 0) + 1
    return kinds


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def sanitized(pid):
    """True if the daemon runs under ASan (its RSS grows by design)."""
    try:
        with open("/proc/%d/maps" % pid) as f:
            return "libasan" in f.read()
    except OSError:
        return False


class Soak:
    """One soak run against a started daemon.

    daemon: an object with .port, .proc (a Popen), .headers() and
    .deploy(name, path, params=None, expect=None) — the Daemon of
    tests/integration/conftest.py. artifacts maps the names hello, echo,
    sleepy, crash, fn_error to built .so paths.
    """

    def __init__(self, daemon, artifacts, duration=60.0, warmup=None,
                 clients=6, seed=None, sighup=True, log=print):
        self.d = daemon
        self.art = artifacts
        self.duration = duration
        self.warmup = warmup if warmup is not None else min(10.0,
                                                            duration / 3)
        self.clients = clients
        self.seed = seed if seed is not None else random.randrange(1 << 30)
        self.sighup = sighup
        self.log = log
        self.stats = Stats()
        self.documented = documented_errors()
        self.chaos = collections.Counter()

    # -- setup and chaos --
    def deploy(self, name, artifact):
        r = self.d.deploy(name, self.art[artifact], expect=None)
        judge(self.stats, "deploy", r.status_code, r.content,
              self.documented, r.headers)
        return r.status_code

    def setup(self):
        for name, art in [("hello", "hello"), ("echo", "echo"),
                          ("flip", "hello"), ("sleepy", "sleepy"),
                          ("crash", "crash"), ("fn-error", "fn_error")]:
            if self.deploy(name, art) != 201:
                raise AssertionError("setup: deploying %s failed: %s" %
                                     (name, self.stats.failures))

    def chaos_loop(self, deadline, rng):
        pid = self.d.proc.pid
        flip = 0
        while time.time() < deadline:
            time.sleep(rng.uniform(0.1, 0.6))
            action = rng.choice(["kill", "kill", "redeploy", "redeploy"] +
                                (["sighup"] if self.sighup else []))
            if action == "kill":
                kids = worker_pids(pid)
                if kids:
                    try:
                        os.kill(rng.choice(kids), signal.SIGKILL)
                        self.chaos["worker_killed"] += 1
                    except ProcessLookupError:
                        pass
            elif action == "redeploy":
                flip ^= 1
                name, art = rng.choice([("flip", ("hello", "echo")[flip]),
                                        ("hello", "hello")])
                try:
                    self.deploy(name, art)
                    self.chaos["redeployed"] += 1
                except requests.RequestException as e:
                    self.stats.fail("deploy %s: %s" % (name, e))
            else:
                os.kill(pid, signal.SIGHUP)
                self.chaos["sighup"] += 1

    # -- one phase of load --
    def phase(self, seconds, rng):
        deadline = time.time() + seconds
        base = "http://127.0.0.1:%d" % self.d.port
        port = self.d.port
        threads = []

        def keepalive(seed):
            r = random.Random(seed)
            with requests.Session() as s:
                while time.time() < deadline:
                    session_once(s, base, r, self.stats, self.documented,
                                 self.d.headers())

        def raw(seed):
            r = random.Random(seed)
            while time.time() < deadline:
                x = r.random()
                if x < 0.45:
                    oneshot_once(port, r, self.stats, self.documented)
                elif x < 0.9:
                    malformed_once(port, r, self.stats, self.documented)
                else:
                    pipeline_once(port, self.stats, self.documented)

        for i in range(self.clients):
            fn = keepalive if i % 3 != 2 else raw
            threads.append(threading.Thread(target=fn,
                                            args=(rng.randrange(1 << 30),)))
        threads.append(threading.Thread(
            target=self.chaos_loop,
            args=(deadline, random.Random(rng.randrange(1 << 30)))))
        for t in threads:
            t.start()
        for t in threads:
            # Each request has a client timeout, so this bound is generous.
            t.join(seconds + 4 * CLIENT_TIMEOUT)
            if t.is_alive():
                self.stats.fail("a client thread did not finish: hang")

    def quiet_sample(self):
        """fds, RSS and worker count once the load has stopped and the
        client connections are closed (the fd count settles)."""
        pid = self.d.proc.pid
        last, stable_since = None, time.time()
        end = time.time() + 10
        while time.time() < end:
            n = fd_count(pid)
            if n != last:
                last, stable_since = n, time.time()
            elif time.time() - stable_since >= 1.0:
                break
            time.sleep(0.1)
        return {"fds": fd_count(pid), "rss_kb": rss_kb(pid),
                "workers": len(instance_pids(pid)),
                "fd_kinds": fd_kinds(pid)}

    def run(self):
        rng = random.Random(self.seed)
        self.log("soak: seed=%d duration=%.0fs warmup=%.0fs clients=%d "
                 "sighup=%s" % (self.seed, self.duration, self.warmup,
                                self.clients, self.sighup))
        self.setup()
        self.phase(self.warmup, rng)
        start = self.quiet_sample()
        self.log("soak: after warm-up: %s" % start)
        self.phase(self.duration, rng)
        alive = self.d.proc.poll() is None
        end = self.quiet_sample() if alive else None
        self.log("soak: at the end: %s" % end)
        report = {"seed": self.seed, "requests": self.stats.requests,
                  "failures": list(self.stats.failures),
                  "chaos": dict(self.chaos), "start": start, "end": end,
                  "counts": self.stats.counts,
                  "known_bugs": dict(self.stats.known_bugs)}
        if not alive:
            report["failures"].append("the daemon died (exit status %s)" %
                                      self.d.proc.returncode)
            return report
        fd_limit = start["fds"] + FD_MARGIN + \
            FDS_PER_WORKER * max(0, end["workers"] - start["workers"])
        if end["fds"] > fd_limit:
            grew = {k: v - start["fd_kinds"].get(k, 0)
                    for k, v in end["fd_kinds"].items()
                    if v != start["fd_kinds"].get(k, 0)}
            report["failures"].append(
                "fd count grew: %d after warm-up, %d at the end (limit %d; "
                "workers %d -> %d; by kind: %s)"
                % (start["fds"], end["fds"], fd_limit, start["workers"],
                   end["workers"], grew))
        if sanitized(self.d.proc.pid):
            report["rss_checked"] = False  # ASan's quarantine grows RSS
        else:
            report["rss_checked"] = True
            rss_limit = start["rss_kb"] * 1.10 + RSS_MARGIN_KB
            if end["rss_kb"] > rss_limit:
                report["failures"].append(
                    "RSS grew: %d KiB after warm-up, %d KiB at the end "
                    "(limit %d)" % (start["rss_kb"], end["rss_kb"],
                                    rss_limit))
        return report


def summarize(report, log=print):
    by_kind = collections.Counter()
    for (kind, status, code), n in sorted(report["counts"].items(),
                                          key=lambda kv: str(kv[0])):
        by_kind["%s %d%s" % (kind, status, " " + code if code else "")] += n
    for k, n in sorted(by_kind.items()):
        log("  %-50s %d" % (k, n))
    end = report["end"] or {}
    log("soak: %d requests, chaos %s, workers %s -> %s, fds %s -> %s, "
        "RSS %s -> %s KiB%s" % (
        report["requests"], report["chaos"],
        report["start"]["workers"], end.get("workers"),
        report["start"]["fds"], report["end"] and report["end"]["fds"],
        report["start"]["rss_kb"], report["end"] and report["end"]["rss_kb"],
        "" if report.get("rss_checked", True) else " (not checked: ASan)"))
    for (status, code), n in report.get("known_bugs", {}).items():
        log("KNOWN BUG (%d times): %d %s: %s" % (n, status, code,
                                                KNOWN_BUGS[(status, code)]))
    for f in report["failures"]:
        log("FAIL: " + f)


def artifacts(build):
    fn = os.path.join(build, "tests", "functions")
    ex = os.path.join(build, "examples")
    return {"hello": os.path.join(ex, "hello.so"),
            "echo": os.path.join(ex, "echo.so"),
            "sleepy": os.path.join(fn, "sleepy.so"),
            "crash": os.path.join(fn, "crash.so"),
            "fn_error": os.path.join(fn, "fn_error.so")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(SOURCE, "build"))
    ap.add_argument("--duration", type=float,
                    default=float(os.environ.get("SOAK_SECONDS", 60)))
    ap.add_argument("--warmup", type=float, default=None)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--no-sighup", dest="sighup", action="store_false",
                    default=os.environ.get("SOAK_SIGHUP", "1") != "0",
                    help="do not send SIGHUP (config reloads)")
    ap.add_argument("--keep-state", action="store_true")
    args = ap.parse_args()

    os.environ["SOFAAS_BUILD_DIR"] = os.path.abspath(args.build_dir)
    sys.path.insert(0, os.path.join(SOURCE, "tests", "integration"))
    import tempfile
    from conftest import Daemon  # noqa: E402 (needs SOFAAS_BUILD_DIR)

    tmp = tempfile.mkdtemp(prefix="sofaas-soak-")
    d = Daemon(os.path.join(tmp, "state"),
               args=["--workers", "2", "--max-workers", "12",
                     "--log-level", "info"])
    d.start()
    try:
        report = Soak(d, artifacts(args.build_dir), duration=args.duration,
                      warmup=args.warmup, clients=args.clients,
                      seed=args.seed, sighup=args.sighup).run()
    finally:
        rc = d.stop()
    summarize(report)
    if rc not in (0, None):
        report["failures"].append("sofaasd exited with %s on SIGTERM" % rc)
        print("FAIL: sofaasd exited with %s on SIGTERM" % rc)
    print("soak: daemon log: %s" % d.log_path)
    if report["failures"]:
        print("soak: FAILED (seed %d)" % report["seed"])
        return 1
    if not args.keep_state:
        import shutil
        shutil.rmtree(os.path.join(tmp, "state"), ignore_errors=True)
    print("soak: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
