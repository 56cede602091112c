"""Hostile HTTP: malformed framing, limits, slow clients and connection
floods, through raw sockets against the real daemon. No malformed request
may ever reach a worker (checked with the echo function's own view)."""
import socket
import time

import requests

from conftest import example, raw_request

LIMIT_ARGS = ["--http-header-timeout-ms", "300",
              "--http-body-timeout-ms", "300",
              "--http-keepalive-timeout-ms", "300"]


def status_of(resp):
    assert resp.startswith(b"HTTP/1.1 "), resp[:80]
    return int(resp[9:12])


def closed_after(sock, timeout=5):
    """True if the server closes the connection (reads EOF)."""
    sock.settimeout(timeout)
    try:
        while True:
            b = sock.recv(65536)
            if not b:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def invocations_seen(d):
    """How many requests the daemon dispatched to functions (from its log)."""
    return d.log().count('msg="access"')


def test_framing_attacks_get_400_and_close(daemon):
    daemon.deploy("echo", example("echo"))
    base = invocations_seen(daemon)
    cases = [
        # Content-Length together with Transfer-Encoding
        b"POST /fn/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        # duplicate and malformed Content-Length
        b"POST /fn/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
        b"Content-Length: 2\r\n\r\nab",
        b"POST /fn/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\na",
        b"POST /fn/echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
        # unknown transfer-coding
        b"POST /fn/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        # control characters and bare CR / LF
        b"GET /fn/echo\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /fn/echo HTTP/1.1\r\nHost: x\rX-A: b\r\n\r\n",
        b"GET /fn/echo HTTP/1.1\r\nX-A: a\x00b\r\n\r\n",
        b"GET /fn/echo HTTP/1.1\r\nX A: b\r\n\r\n",
        b"GET /fn/echo HTTP/9.9\r\n\r\n",
        b"NOTAMETHOD /fn/echo HTTP/1.1\r\n\r\n",
    ]
    for raw in cases:
        s = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
        s.sendall(raw)
        data = b""
        s.settimeout(5)
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                data += b
        except socket.timeout:
            raise AssertionError("connection not closed for %r" % raw)
        s.close()
        st = status_of(data)
        assert st in (400, 501), (raw, data[:200])
        assert b'"error"' in data
    assert invocations_seen(daemon) == base
    assert daemon.invoke("echo").status_code == 200


def test_size_limits(daemon):
    daemon.deploy("echo", example("echo"))
    base = invocations_seen(daemon)
    # request line over 8 KiB -> 414
    out = raw_request(daemon.port, b"GET /fn/echo/" + b"a" * 9000 +
                      b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status_of(out) == 414
    # header block over 16 KiB, and too many headers -> 431
    out = raw_request(daemon.port, b"GET /fn/echo HTTP/1.1\r\n" +
                      b"X-A: " + b"b" * 17000 + b"\r\n\r\n")
    assert status_of(out) == 431
    out = raw_request(daemon.port, b"GET /fn/echo HTTP/1.1\r\n" +
                      b"".join(b"X-%d: v\r\n" % i for i in range(150)) +
                      b"\r\n")
    assert status_of(out) == 431
    # chunked body past the limit -> 413 and close
    s = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
    s.sendall(b"POST /fn/echo HTTP/1.1\r\nHost: x\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"100000\r\n" + b"z" * 0x100000 + b"\r\n"
    got = b""
    try:
        for _ in range(8):
            s.sendall(chunk)
    except (BrokenPipeError, ConnectionResetError):
        pass
    s.settimeout(10)
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            got += b
    except (socket.timeout, ConnectionResetError):
        pass
    s.close()
    assert status_of(got) == 413
    assert invocations_seen(daemon) == base


def test_declared_oversize_body_is_refused_without_reading_it(daemon):
    daemon.deploy("echo", example("echo"))
    s = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
    s.sendall(b"POST /fn/echo HTTP/1.1\r\nHost: x\r\n"
              b"Content-Length: 100000000\r\n\r\n")
    s.settimeout(5)
    data = s.recv(65536)  # answered at once, before we send any body
    assert status_of(data) == 413
    assert closed_after(s)
    s.close()


def test_pipelined_with_malformed_second(daemon):
    daemon.deploy("echo", example("echo"))
    base = invocations_seen(daemon)
    data = (b"GET /fn/echo/one HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /fn/echo/two HTTP/1.1\r\nHost: x\r\nContent-Length: zz\r\n\r\n"
            b"GET /fn/echo/three HTTP/1.1\r\nHost: x\r\n\r\n")
    out = raw_request(daemon.port, data, timeout=10)
    parts = out.split(b"HTTP/1.1 ")[1:]
    assert len(parts) == 2, out
    assert parts[0].startswith(b"200") and b'"/one"' in parts[0]
    assert parts[1].startswith(b"400")
    assert b"/three" not in out
    assert invocations_seen(daemon) == base + 1


def test_slowloris_headers_get_408(daemon_factory):
    d = daemon_factory(args=LIMIT_ARGS)
    d.deploy("echo", example("echo"))
    s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    s.sendall(b"GET /fn/echo HTTP/1.1\r\n")
    deadline = time.time() + 5
    data = b""
    s.settimeout(0.05)
    # Trickle a header byte now and then; the deadline does not move.
    while time.time() < deadline:
        try:
            b = s.recv(65536)
            if not b:
                break
            data += b
        except socket.timeout:
            try:
                s.sendall(b"X")
            except OSError:
                break
    s.close()
    assert status_of(data) == 408, data
    assert b'"request_timeout"' in data


def test_silent_connection_gets_408(daemon_factory):
    d = daemon_factory(args=LIMIT_ARGS)
    s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    s.settimeout(5)
    data = s.recv(65536)
    assert status_of(data) == 408
    assert closed_after(s)


def test_slow_body_gets_408(daemon_factory):
    d = daemon_factory(args=LIMIT_ARGS)
    d.deploy("echo", example("echo"))
    base = invocations_seen(d)
    s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    s.sendall(b"POST /fn/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n"
              b"\r\nabc")
    s.settimeout(5)
    data = s.recv(65536)
    assert status_of(data) == 408
    assert closed_after(s)
    assert invocations_seen(d) == base


def test_idle_keepalive_is_closed(daemon_factory):
    d = daemon_factory(args=LIMIT_ARGS)
    d.deploy("echo", example("echo"))
    s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    s.sendall(b"GET /fn/echo HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(5)
    first = s.recv(65536)
    assert status_of(first) == 200
    # No further request: the server closes without sending anything.
    s.settimeout(5)
    rest = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        rest += b
    assert rest == b""


def test_connection_limit(daemon_factory):
    d = daemon_factory(args=["--http-max-connections", "3"])
    held = [socket.create_connection(("127.0.0.1", d.port), timeout=5)
            for _ in range(3)]
    time.sleep(0.2)
    s = socket.create_connection(("127.0.0.1", d.port), timeout=5)
    s.settimeout(5)
    data = s.recv(65536)
    assert status_of(data) == 503
    assert b'"overloaded"' in data
    assert closed_after(s)
    for h in held:
        h.close()
    time.sleep(0.2)
    assert requests.get(d.url("/healthz"), timeout=5).status_code == 200
