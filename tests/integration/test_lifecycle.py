"""Process lifecycle: graceful SIGTERM drain, drain timeout, exit codes."""
import concurrent.futures
import socket
import time

import pytest
import requests

from conftest import example, testfn


def test_sigterm_finishes_in_flight_then_exits_0(daemon):
    daemon.deploy("sleepy", testfn("sleepy"))
    daemon.deploy("hello", example("hello"))
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        slow = [ex.submit(daemon.invoke, "sleepy", params={"ms": "800"})
                for _ in range(2)]
        time.sleep(0.3)  # both are running in workers now
        daemon.proc.send_signal(15)
        time.sleep(0.2)
        # No new connections are accepted while draining.
        with pytest.raises(requests.ConnectionError):
            requests.get(daemon.url("/fn/hello"), timeout=5)
        for f in slow:
            r = f.result(timeout=30)
            assert r.status_code == 200 and r.text == "slept 800\n"
            assert r.headers.get("Connection") == "close"
    assert daemon.proc.wait(timeout=30) == 0
    assert "drained, stopping workers" in daemon.log()


def test_idle_keepalive_connections_are_closed_on_sigterm(daemon):
    daemon.deploy("hello", example("hello"))
    s = socket.create_connection(("127.0.0.1", daemon.port), timeout=5)
    s.sendall(b"GET /fn/hello HTTP/1.1\r\nHost: x\r\n\r\n")
    assert s.recv(65536).startswith(b"HTTP/1.1 200")
    daemon.proc.send_signal(15)
    s.settimeout(10)
    assert s.recv(65536) == b""  # closed by the server, nothing more
    assert daemon.proc.wait(timeout=30) == 0


def test_drain_timeout_bounds_shutdown(daemon_factory):
    d = daemon_factory(args=["--shutdown-drain-timeout-ms", "300"])
    d.deploy("sleepy", testfn("sleepy"), params={"timeout_ms": "300000"})
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        # The call sleeps far longer than the wait below allows, so the
        # daemon exiting within it means it did not wait for the call.
        f = ex.submit(d.invoke, "sleepy", params={"ms": "120000"},
                      timeout=150)
        time.sleep(0.3)
        d.proc.send_signal(15)
        assert d.proc.wait(timeout=60) == 0
        with pytest.raises(requests.ConnectionError):
            f.result(timeout=30)
    assert "drain timeout" in d.log()
