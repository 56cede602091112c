#!/usr/bin/env python3
"""Writes the seed corpora in tests/fuzz/corpus/<target>/.

The seeds are checked in; this script documents how they were made and
regenerates them (it only adds or overwrites its own files, so reproducers
added by hand stay). Run from anywhere: python3 tests/fuzz/make_corpus.py

fuzz_http input: one delivery byte, then what the client sends. The
delivery byte's bits 0-2 pick the chunk size (0: all at once, 1: 1 byte,
2: 2, 3: 3, 4: 7, 5: 16, 6: 64, 7: 1024) and bit 3 defers the answers;
'0' = 0x30 is "all at once, answer immediately", '9' = 0x39 is "1-byte
chunks, deferred answers".
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def http_seeds():
    G = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    s = {
        "get": G,
        "get_http10": b"GET /healthz HTTP/1.0\r\n\r\n",
        "get_http10_keepalive":
            b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" + G,
        "head": b"HEAD /healthz HTTP/1.1\r\n\r\n" + G,
        "pipelined3": G + b"GET /v1/functions HTTP/1.1\r\n\r\n" + G,
        "connection_close_then_more":
            b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n" + G,
        "post_content_length":
            b"POST /fn/echo/a/b?x=1&y HTTP/1.1\r\nContent-Length: 5\r\n"
            b"Content-Type: text/plain\r\n\r\nhello" + G,
        "post_chunked":
            b"POST /fn/echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n" + G,
        "chunked_ext_trailer":
            b"POST /fn/echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3;name=val\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n",
        "chunked_empty":
            b"POST /fn/echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"0\r\n\r\n",
        "deploy_expect_continue":
            b"PUT /v1/functions/hello?timeout_ms=100 HTTP/1.1\r\n"
            b"Expect: 100-continue\r\nContent-Length: 4\r\n"
            b"X-Sofaas-Config: {\"memory_mb\":64}\r\n\r\n\x7fELF",
        "deploy_chunked":
            b"PUT /v1/functions/hello HTTP/1.1\r\nTransfer-Encoding: chunked"
            b"\r\n\r\n4\r\n\x7fELF\r\n3\r\nabc\r\n0\r\n\r\n" + G,
        "deploy_sink_fails":
            b"PUT /v1/functions/hello HTTP/1.1\r\nX-Fuzz-Sink-Fail: 1\r\n"
            b"Content-Length: 4\r\n\r\n\x7fELF" + G,
        "patch_json":
            b"PATCH /v1/functions/hello HTTP/1.1\r\nContent-Length: 18\r\n"
            b"\r\n{\"timeout_ms\":100}",
        "delete_and_list":
            b"DELETE /v1/functions/hello HTTP/1.1\r\n\r\n"
            b"GET /v1/functions/hello HTTP/1.1\r\n\r\n"
            b"GET /v1/functions HTTP/1.1\r\n\r\n",
        "wrong_method": b"POST /healthz HTTP/1.1\r\n\r\n" + G,
        "unknown_route": b"GET /nope HTTP/1.1\r\n\r\n" + G,
        "cl_and_te":
            b"POST /fn/echo HTTP/1.1\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + G,
        "duplicate_cl":
            b"POST /fn/echo HTTP/1.1\r\nContent-Length: 1\r\n"
            b"Content-Length: 2\r\n\r\nab" + G,
        "bad_cl": b"POST /fn/echo HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
        "bad_cl_hex": b"POST /fn/echo HTTP/1.1\r\nContent-Length: 0x10\r\n\r\n",
        "te_gzip":
            b"POST /fn/echo HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nxx",
        "te_chunked_twice":
            b"POST /fn/echo HTTP/1.1\r\nTransfer-Encoding: chunked, chunked"
            b"\r\n\r\n0\r\n\r\n",
        "bare_lf": b"GET /healthz HTTP/1.1\nHost: x\n\n" + G,
        "bare_cr": b"GET /healthz HTTP/1.1\rHost: x\r\n\r\n",
        "ctl_in_header": b"GET /healthz HTTP/1.1\r\nX-A: a\x01b\r\n\r\n",
        "ctl_in_url": b"GET /fn/a\x7fb HTTP/1.1\r\n\r\n",
        "obs_fold": b"GET /healthz HTTP/1.1\r\nX-A: a\r\n  b\r\n\r\n",
        "empty_header_value": b"GET /healthz HTTP/1.1\r\nX-A:\r\nX-B: \r\n\r\n" + G,
        "no_colon": b"GET /healthz HTTP/1.1\r\nX-A\r\n\r\n",
        "absolute_uri": b"GET http://x/healthz HTTP/1.1\r\n\r\n",
        "options_star": b"OPTIONS * HTTP/1.1\r\n\r\n",
        "http2_preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "upgrade": b"GET /fn/a HTTP/1.1\r\nConnection: Upgrade\r\n"
                   b"Upgrade: websocket\r\n\r\n" + G,
        "lowercase_method": b"get /healthz HTTP/1.1\r\n\r\n",
        "unknown_method": b"BREW /fn/pot HTTP/1.1\r\n\r\n",
        "http_09": b"GET /healthz\r\n\r\n",
        "http_11x": b"GET /healthz HTTP/1.12\r\n\r\n",
        "request_id_ok": b"GET /healthz HTTP/1.1\r\nX-Request-Id: abc-1.2:3_4\r\n\r\n",
        "request_id_bad": b"GET /healthz HTTP/1.1\r\nX-Request-Id: a b\"\\\r\n\r\n",
        "request_id_long": b"GET /healthz HTTP/1.1\r\nX-Request-Id: " +
                           b"a" * 129 + b"\r\n\r\n" + G,
        "refused_by_handler":
            b"POST /fn/echo HTTP/1.1\r\nX-Fuzz-Refuse: 1\r\nContent-Length: 3"
            b"\r\n\r\nabc" + G,
        "body_over_limit_cl":
            b"POST /fn/echo HTTP/1.1\r\nContent-Length: 5000\r\n\r\nabc",
        "body_over_limit_chunked":
            b"POST /fn/echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"400\r\n" + b"a" * 1024 + b"\r\n1\r\nb\r\n0\r\n\r\n",
        "body_on_bodyless_route":
            b"GET /healthz HTTP/1.1\r\nContent-Length: 1\r\n\r\nx",
        "percent_path": b"GET /fn/%2e%2e/x HTTP/1.1\r\n\r\n" + G,
        "good_bad_good":
            G + b"GET /healthz HTTP/1.1\r\nContent-Length: 1\r\n"
            b"Content-Length: 1\r\n\r\nx" + G,
        "partial_at_eof": b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
        "partial_body_at_eof":
            b"POST /fn/echo HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc",
        "garbage": bytes(range(256)),
        "many_headers": b"GET /healthz HTTP/1.1\r\n" +
                        b"".join(b"X-H%d: v\r\n" % i for i in range(101)) +
                        b"\r\n",
        "header_block_17k": b"GET /healthz HTTP/1.1\r\nX-Big: " +
                            b"a" * (17 << 10) + b"\r\n\r\n",
        "url_9k": b"GET /fn/a?" + b"q" * (9 << 10) + b" HTTP/1.1\r\n\r\n",
    }
    for name, body in s.items():
        write("http", name, b"0" + body)
    # The same pipelines delivered in small pieces and/or answered later.
    mixed = s["pipelined3"] + s["post_chunked"]
    for sel in b"123456789:;<=>?":
        write("http", "pipelined_sel_%02x" % sel, bytes([sel]) + mixed)
    write("http", "good_bad_good_deferred", b"8" + s["good_bad_good"])
    write("http", "partial_body_deferred_1b", b"9" + s["partial_body_at_eof"])
    write("http", "expect_deferred_3b", b";" + s["deploy_expect_continue"])


def frame_hdr(length, typ, flags=0, ident=0):
    return struct.pack("=IHHQ", length, typ, flags, ident)


def headers(hs):
    out = b""
    for n, v in hs:
        out += struct.pack("=II", len(n), len(v)) + n + b"\0" + v + b"\0"
    return out


def invoke_payload(method, path, query, rid, hs, body, reserved=0):
    h = headers(hs)
    meta = struct.pack("=8I", len(method), len(path), len(query), len(rid),
                       len(hs), len(h), len(body), reserved)
    return (meta + method + b"\0" + path + b"\0" + query + b"\0" + rid +
            b"\0" + h + body)


def response_payload(status, rc, hs, body):
    h = headers(hs)
    meta = struct.pack("=iiIIII", status, rc, len(hs), len(h), len(body), 0)
    return meta + h + body


def load_payload(path, env, memory=128, timeout=3000, flags=0):
    m = struct.pack("=8I", 1, memory, timeout, flags, 64, len(path),
                    len(env), 0)
    return m + path + b"\0" + env


def loaded_payload(status, msg):
    return struct.pack("=iI", status, len(msg)) + msg + b"\0"


def ipc_seeds():
    s = {}
    for t in range(0, 8):
        s["hdr_type%d" % t] = b"\0" + frame_hdr(100, t)
    s["hdr_huge"] = b"\0" + frame_hdr(0xffffffff, 4)
    s["hdr_at_cap"] = b"\0" + frame_hdr(7 << 20, 5)
    s["hdr_short"] = b"\0" + frame_hdr(1, 1)[:10]
    inv = invoke_payload(b"POST", b"/a/b", b"x=1", b"rid-1",
                         [(b"Content-Type", b"text/plain"), (b"X-A", b"")],
                         b"hello")
    s["invoke"] = b"\1" + inv
    s["invoke_empty"] = b"\1" + invoke_payload(b"GET", b"/", b"", b"r", [], b"")
    s["invoke_reserved"] = b"\1" + invoke_payload(b"GET", b"/", b"", b"r", [],
                                                  b"", reserved=7)
    s["invoke_truncated"] = b"\1" + inv[:-3]
    s["invoke_no_nul"] = b"\1" + inv.replace(b"POST\0", b"POSTX")
    s["invoke_bad_hcount"] = b"\1" + inv[:16] + struct.pack("=I", 300) + inv[20:]
    s["invoke_big_len"] = b"\1" + struct.pack("=I", 0xffffffff) + inv[4:]
    resp = response_payload(200, 0, [(b"Content-Type", b"text/plain")], b"hi")
    s["response"] = b"\2" + resp
    s["response_nohdr"] = b"\2" + response_payload(404, 0, [], b"")
    s["response_badlen"] = b"\2" + resp[:16] + struct.pack("=I", 99) + resp[20:]
    s["response_trailing"] = b"\2" + resp + b"x"
    ld = load_payload(b"/state/artifacts/abc.so", b"A=1\0B=two\0")
    s["load"] = b"\3" + ld
    s["load_noenv"] = b"\3" + load_payload(b"/x.so", b"")
    s["load_env_unterminated"] = b"\3" + load_payload(b"/x.so", b"A=1")
    s["load_path_nul"] = b"\3" + load_payload(b"/x\0y.so", b"")
    s["load_empty_path"] = b"\3" + load_payload(b"", b"")
    s["loaded_ok"] = b"\4" + loaded_payload(0, b"")
    s["loaded_err"] = b"\4" + loaded_payload(4, b"sofaas_init returned 3")
    s["loaded_trailing"] = b"\4" + loaded_payload(1, b"x") + b"y"
    s["loaded_badlen"] = b"\4" + struct.pack("=iI", 1, 0xffffffff) + b"\0"
    s["roundtrip"] = (b"\5GET\xff/fn/a\xffq=1\xffrid\xffHost\xffx\xff"
                      b"X-Y\xff\xffbody")
    s["roundtrip_min"] = b"\5\xff\xff\xff\xff"
    for name, body in s.items():
        write("ipc", name, body)


def fnconfig_seeds():
    j = {
        "empty": b"{}",
        "all": b'{"timeout_ms":1500,"memory_mb":256,"init_timeout_ms":5000,'
               b'"network":true,"tmp_mb":16,"env":{"A":"1","B_2":"x=y"},'
               b'"min_warm":1,"max_concurrency":4,"idle_timeout_s":60,'
               b'"max_queue":10,"queue_timeout_ms":100,'
               b'"max_invocations_per_instance":1000,"template":"auto"}',
        "template_bool": b'{"template":false}',
        "template_bad": b'{"template":"on"}',
        "unknown_key": b'{"nope":1}',
        "wrong_type": b'{"timeout_ms":"100"}',
        "fraction": b'{"timeout_ms":1.5}',
        "negative": b'{"memory_mb":-1}',
        "max_u32": b'{"max_invocations_per_instance":4294967294}',
        "over_u32": b'{"max_invocations_per_instance":4294967295}',
        "huge": b'{"timeout_ms":1e300}',
        "neg_huge": b'{"min_warm":-1e300}',
        "env_bad_name": b'{"env":{"1A":"x"}}',
        "env_not_string": b'{"env":{"A":1}}',
        "env_not_object": b'{"env":["A=1"]}',
        "env_nul": b'{"env":{"A":"a\\u0000b"}}',
        "env_big": b'{"env":{"A":"' + b"x" * 4100 + b'"}}',
        "duplicate": b'{"timeout_ms":1,"timeout_ms":2}',
        "not_object": b"[1,2]",
        "nested": b'{"env":{"A":{"B":{}}}}',
        "network_num": b'{"network":1}',
    }
    for name, body in j.items():
        write("fnconfig", "json_" + name, b"0" + body)
    p = {
        "timeout": b"timeout_ms=100",
        "timeout_zero": b"timeout_ms=0",
        "timeout_plus": b"timeout_ms=+1",
        "timeout_big": b"timeout_ms=99999999999999999999999",
        "memory_empty": b"memory_mb=",
        "network_true": b"network=true",
        "network_one": b"network=1",
        "template_auto": b"template=auto",
        "network_auto": b"network=auto",
        "no_value": b"network",
        "env": b"env=A%3D1",
        "unknown": b"x=1",
    }
    for name, body in p.items():
        write("fnconfig", "param_" + name, b"1" + body)


if __name__ == "__main__":
    http_seeds()
    ipc_seeds()
    fnconfig_seeds()
