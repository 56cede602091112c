"""Bugs the fuzzers (tests/fuzz) and the soak test (tests/soak) found,
replayed through the real daemon.

Each fuzzer finding names the corpus file that reproduces it under libFuzzer.
"""
import json
import socket

from conftest import example, raw_request


def read_responses(sock, n, timeout=10):
    """Reads n Content-Length-framed responses (or until the peer closes)."""
    sock.settimeout(timeout)
    buf = b""
    out = []
    while len(out) < n:
        head_end = buf.find(b"\r\n\r\n")
        if head_end >= 0:
            head = buf[:head_end].decode("latin-1")
            clen = 0
            for line in head.split("\r\n")[1:]:
                k, _, v = line.partition(":")
                if k.strip().lower() == "content-length":
                    clen = int(v)
            total = head_end + 4 + clen
            if len(buf) >= total:
                out.append((int(head.split()[1]), head,
                            buf[head_end + 4:total]))
                buf = buf[total:]
                continue
        b = sock.recv(65536)
        if not b:
            break
        buf += b
    return out, buf


def test_chunked_trailers_are_dropped(daemon):
    """corpus/http/chunked_ext_trailer: trailer fields used to be appended
    to a request whose header array was already built, so the API layer
    read past it (heap overflow) and through pointers into a moved buffer.
    """
    daemon.deploy("echo", example("echo"))
    body = (b"5;ext=1\r\nhello\r\n0\r\nX-Trailer-One: 1\r\n"
            b"X-Trailer-Two: " + b"t" * 3000 + b"\r\n\r\n")
    req = (b"POST /fn/echo HTTP/1.1\r\nHost: x\r\nX-Real: yes\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n" + body)
    s = socket.create_connection(("127.0.0.1", daemon.port))
    try:
        # Twice on one connection: the second must be unaffected too.
        s.sendall(req + req)
        resps, _ = read_responses(s, 2)
    finally:
        s.close()
    assert [r[0] for r in resps] == [200, 200], resps
    for _, _, payload in resps:
        doc = json.loads(payload)
        names = [h[0].lower() for h in doc["headers"]]
        assert "x-real" in names
        assert not any(n.startswith("x-trailer") for n in names), names
        assert doc["body_len"] == 5


def test_nothing_is_parsed_after_connection_close(daemon):
    """corpus/http/connection_close_then_more: after answering a request
    that said Connection: close, the bytes after it used to be parsed and
    answered with a 400 appended to the closing response."""
    out = raw_request(daemon.port,
                      b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n"
                      b"GET /healthz HTTP/1.1\r\n\r\n"
                      b"GET /nope HTTP/1.1\r\n\r\n")
    assert out.count(b"HTTP/1.1 ") == 1, out
    assert out.startswith(b"HTTP/1.1 200 "), out
    assert b"Connection: close" in out


def test_config_numbers_far_out_of_range(daemon):
    """corpus/fnconfig/json_huge: a number like 1e300 was converted to an
    integer before its range was checked (undefined behaviour, which the
    sanitizer build reports)."""
    import requests
    daemon.deploy("echo", example("echo"))
    for bad in ("1e300", "-1e300", "1e19", "4294967296"):
        r = requests.patch(daemon.url("/v1/functions/echo"),
                           data='{"timeout_ms":%s}' % bad, timeout=10)
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["error"]["code"] == "invalid_config"
    r = daemon.invoke("echo")
    assert r.status_code == 200


def test_half_closed_pipeline_gets_every_answer(daemon):
    """Found by the soak: a client that pipelines and then shuts down its
    sending side (EOF) got "Connection: close" on the first answer, and the
    requests behind it were dropped. Each complete request is answered;
    here the second is malformed, so the third never runs. The requests
    go to a function so that EOF arrives while the first is in flight."""
    daemon.deploy("hello", example("hello"))
    good = b"GET /fn/hello HTTP/1.1\r\nHost: x\r\n\r\n"
    bad = b"GET /healthz HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"
    s = socket.create_connection(("127.0.0.1", daemon.port), timeout=10)
    try:
        s.sendall(good + good + bad + good)
        s.shutdown(socket.SHUT_WR)
        resps, rest = read_responses(s, 4)
    finally:
        s.close()
    assert [r[0] for r in resps] == [200, 200, 400], resps
    assert "Connection: close" not in resps[0][1]
    assert "Connection: close" in resps[2][1]
    assert json.loads(resps[2][2])["error"]["code"] == "bad_request"
    assert rest == b""


def test_config_file_number_far_out_of_range(tmp_path):
    """corpus/config/huge-number.json: the config file parser converted a
    number like 1e300 to an integer before checking its range (undefined
    behaviour, which the sanitizer build reports)."""
    import subprocess
    from conftest import SOFAASD
    path = tmp_path / "sofaasd.json"
    for bad in ("1e300", "-1e300", "1e19"):
        path.write_text('{"http":{"header_timeout_ms":%s}}' % bad)
        r = subprocess.run([SOFAASD, "--check-config", str(path)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1, (bad, r.stdout, r.stderr)
        assert "http.header_timeout_ms: expected integer" in r.stderr, \
            r.stderr
