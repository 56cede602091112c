"""Fixtures for sofaas integration tests.

Every test gets a real sofaasd started on an ephemeral port with a fresh
state directory (tmp_path). Functions are the real .so files CMake built
into build/examples and build/tests/functions.
"""
import contextlib
import os
import socket
import sqlite3
import subprocess
import threading
import time

import pytest
import requests

BUILD = os.environ.get("SOFAAS_BUILD_DIR",
                       os.path.join(os.path.dirname(__file__), "..", "..", "build"))
SOURCE = os.environ.get("SOFAAS_SOURCE_DIR",
                        os.path.join(os.path.dirname(__file__), "..", ".."))
SOFAASD = os.path.join(BUILD, "bin", "sofaasd")


def example(name):
    """Path of a built example function (build/examples/NAME.so)."""
    return os.path.join(BUILD, "examples", name + ".so")


def testfn(name):
    """Path of a built test function (build/tests/functions/NAME.so)."""
    return os.path.join(BUILD, "tests", "functions", name + ".so")


testfn.__test__ = False  # a helper, not a test, for pytest's collector


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    """A running sofaasd. Use .url(path), .deploy(), .invoke()."""

    def __init__(self, state_dir, args=(), env=None, token=None, wrap=()):
        self.state_dir = str(state_dir)
        self.args = list(args)
        self.wrap = list(wrap)  # a command prefix, e.g. setpriv ...
        self.env = env
        self.token = token
        self.port = None
        self.proc = None
        self.log_path = os.path.join(os.path.dirname(self.state_dir),
                                     os.path.basename(self.state_dir) + ".log")

    def start(self, wait=True, port=None):
        self.port = port if port is not None else free_port()
        env = dict(os.environ)
        if self.env:
            env.update(self.env)
        cmd = self.wrap + [SOFAASD, "--listen", "127.0.0.1:%d" % self.port,
               "--state-dir", self.state_dir, "--workers", "2",
               "--log-level", "debug"] + self.args
        os.makedirs(self.state_dir, exist_ok=True)
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.logf,
                                     stderr=subprocess.STDOUT, env=env)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=15):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("sofaasd exited with %s:\n%s" %
                                   (self.proc.returncode, self.log()))
            try:
                r = requests.get(self.url("/healthz"), timeout=1)
                if r.status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.02)
        raise RuntimeError("sofaasd not ready:\n" + self.log())

    def stop(self, sig=15, timeout=15):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()
        rc = self.proc.returncode
        self.proc = None
        return rc

    def restart(self):
        self.stop()
        return self.start()

    def log(self):
        # The loop thread writes its info and debug lines once per loop
        # iteration (sf_log_batch); a request answered after a line was
        # logged is handled in a later iteration, when the line is out.
        if self.proc is not None and self.proc.poll() is None:
            try:
                requests.get(self.url("/healthz"), timeout=5)
            except requests.RequestException:
                pass
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def headers(self, extra=None):
        h = {}
        if self.token:
            h["Authorization"] = "Bearer " + self.token
        if extra:
            h.update(extra)
        return h

    def deploy(self, name, so_path, params=None, expect=201):
        with open(so_path, "rb") as f:
            body = f.read()
        r = requests.put(self.url("/v1/functions/" + name), data=body,
                         params=params, headers=self.headers(), timeout=30)
        if expect is not None:
            assert r.status_code == expect, (r.status_code, r.text)
        return r

    def invoke(self, name, path="", method="GET", **kw):
        kw.setdefault("timeout", 30)
        return requests.request(method, self.url("/fn/" + name + path), **kw)


@pytest.fixture
def daemon_factory(tmp_path):
    started = []

    def make(args=(), env=None, token=None, start=True, name="state"):
        d = Daemon(tmp_path / name, args=args, env=env, token=token)
        started.append(d)
        if start:
            d.start()
        return d

    yield make
    for d in started:
        d.stop()


@pytest.fixture
def daemon(daemon_factory):
    return daemon_factory()


def raw_request(port, data, timeout=5, read_until_close=True):
    """Sends raw bytes on a fresh socket; returns everything read back."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        chunks = []
        while True:
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            if not b:
                break
            chunks.append(b)
            if not read_until_close:
                break
        return b"".join(chunks)
    finally:
        s.close()


@contextlib.contextmanager
def db_write_lock(d):
    """Holds SQLite's write lock on the daemon's database from another
    connection (as an operator's sqlite3 shell in a transaction would)."""
    lock = sqlite3.connect(os.path.join(d.state_dir, "sofaas.db"))
    lock.isolation_level = None
    lock.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        lock.execute("ROLLBACK")
        lock.close()


def invoke_in_background(d, name, params=None):
    """Starts d.invoke(name) on a thread; returns (thread, result), result
    filled with "status" and "rid" once the response arrived."""
    result = {}

    def call():
        r = d.invoke(name, params=params)
        result["status"] = r.status_code
        result["rid"] = r.headers.get("X-Request-Id")

    t = threading.Thread(target=call)
    t.start()
    return t, result


def wait_invocations_ok(d, name, n):
    """Waits until /metrics counts n successful invocations of name: the
    daemon counts an invocation when the function answered, before it is
    metered. Polls with a generous bound; never asserts on time."""
    line = 'sofaas_invocations_total{function="%s",status="ok"} %d' % (name, n)
    for _ in range(600):
        if line in requests.get(d.url("/metrics"), timeout=60).text:
            return
        time.sleep(0.05)
    raise AssertionError("the daemon never counted: " + line)
