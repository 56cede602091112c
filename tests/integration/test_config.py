"""The config file: validation errors name the key path and the expected
type, --check-config, flags override the file, the packaged default config
and docs/configuration.md list exactly the keys the daemon knows, and
SIGHUP applies what can change at run time."""
import json
import os
import signal
import subprocess
import time

import pytest
import requests

from conftest import SOFAASD, SOURCE, example, free_port

PACKAGED = os.path.join(SOURCE, "packaging", "sofaasd.json")
DOCS = os.path.join(SOURCE, "docs", "configuration.md")


def sofaasd(*args, env=None):
    return subprocess.run([SOFAASD] + list(args), capture_output=True,
                          text=True, timeout=30, env=env)


def write(tmp_path, obj, name="c.json"):
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return str(p)


def effective(*args):
    r = sofaasd("--print-config", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def key_paths(obj, prefix=""):
    out = set()
    for k, v in obj.items():
        if isinstance(v, dict):
            out |= key_paths(v, prefix + k + ".")
        else:
            out.add(prefix + k)
    return out


@pytest.mark.parametrize("doc,message", [
    ({"pool": {"genric_min": 1}}, "pool.genric_min: unknown key"),
    ({"lisen": "127.0.0.1:1"}, "lisen: unknown key"),
    ({"meterr": {}}, "meterr: unknown key"),
    ({"pool": {"max_workers": "8"}},
     "pool.max_workers: expected integer 1..4096, got string"),
    ({"pool": {"generic_min": 1.5}},
     "pool.generic_min: expected integer 0..1024, got 1.5"),
    ({"http": {"max_connections": 0}},
     "http.max_connections: expected integer 1..1000000, got 0"),
    ({"access_log": "yes"}, "access_log: expected boolean, got string"),
    ({"log_level": "loud"},
     "log_level: expected string, one of error|warn|info|debug, got 'loud'"),
    ({"state_dir": 5}, "state_dir: expected string, got number"),
    ({"pool": 4}, "pool: expected object, got number"),
    ({"listen": "8080"}, "listen: expected \"HOST:PORT\""),
])
def test_bad_key_or_type_is_a_startup_error(tmp_path, doc, message):
    path = write(tmp_path, doc)
    for args in (["--check-config", path], ["--config", path]):
        r = sofaasd(*args)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert "%s: %s" % (path, message) in r.stderr, r.stderr


def test_every_problem_is_reported_at_once(tmp_path):
    path = write(tmp_path, {"a": 1, "pool": {"b": 2, "max_workers": True}})
    r = sofaasd("--check-config", path)
    assert r.returncode == 1
    assert "a: unknown key" in r.stderr
    assert "pool.b: unknown key" in r.stderr
    assert "pool.max_workers: expected integer" in r.stderr


def test_invalid_json_names_the_line(tmp_path):
    path = write(tmp_path, '{\n  "listen": "127.0.0.1:1",\n  oops\n}\n')
    r = sofaasd("--check-config", path)
    assert r.returncode == 1
    assert "%s:3: not valid JSON" % path in r.stderr


def test_missing_config_file(tmp_path):
    r = sofaasd("--config", str(tmp_path / "nope.json"))
    assert r.returncode == 1
    assert "cannot read config file" in r.stderr


def test_check_config_accepts_the_packaged_file():
    r = sofaasd("--check-config", PACKAGED)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "sofaasd: %s: OK" % PACKAGED


def test_packaged_file_and_docs_list_every_key():
    known = key_paths(effective())
    with open(PACKAGED) as f:
        packaged = key_paths(json.load(f))
    assert packaged == known
    with open(DOCS) as f:
        docs = f.read()
    for k in sorted(known):
        assert "`%s`" % k in docs, "%s is not documented" % k


def test_defaults_in_docs_match_the_daemon():
    """Each key's row in the table says its built-in default."""
    defaults = effective()
    with open(DOCS) as f:
        rows = [l for l in f if l.startswith("| `")]
    seen = {}
    for row in rows:
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        seen[cells[0].strip("`")] = cells[2].strip("`")
    for path in key_paths(defaults):
        v = defaults
        for part in path.split("."):
            v = v[part]
        want = json.dumps(v) if not isinstance(v, str) else v
        assert seen.get(path) == (want if want != "" else '""'), path


def test_flags_override_the_file(tmp_path):
    path = write(tmp_path, {"log_level": "warn",
                            "pool": {"generic_min": 5, "max_workers": 9},
                            "http": {"max_connections": 77}})
    c = effective("--config", path, "--workers", "1",
                  "--set", "http.max_connections=12")
    assert c["pool"]["generic_min"] == 1      # flag wins
    assert c["http"]["max_connections"] == 12  # --set wins
    assert c["log_level"] == "warn"           # from the file
    assert c["pool"]["max_workers"] == 9      # from the file
    assert c["shutdown"]["drain_timeout_ms"] == 30000  # default


def test_bad_flag_values_fail_like_bad_file_values():
    r = sofaasd("--workers", "many")
    assert r.returncode == 2
    assert "pool.generic_min: expected integer 0..1024, got 'many'" \
        in r.stderr
    r = sofaasd("--set", "nope.key=1")
    assert r.returncode == 2
    assert "nope.key: unknown key" in r.stderr
    r = sofaasd("--bogus")
    assert r.returncode == 2
    assert "unknown option '--bogus'" in r.stderr


def test_daemon_serves_with_the_file(tmp_path):
    port = free_port()
    path = write(tmp_path, {"listen": "127.0.0.1:%d" % port,
                            "state_dir": str(tmp_path / "st"),
                            "pool": {"generic_min": 1}})
    p = subprocess.Popen([SOFAASD, "--config", path],
                         stderr=subprocess.DEVNULL)
    try:
        wait_ok("http://127.0.0.1:%d/healthz" % port, p)
        assert (tmp_path / "st" / "sofaas.db").exists()
    finally:
        p.terminate()
        assert p.wait(15) == 0


def wait_ok(url, proc, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, "sofaasd exited %s" % proc.returncode
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.05)
    raise AssertionError("not ready: " + url)


def children(pid):
    with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
        return [int(x) for x in f.read().split()]


def wait_for(pred, what, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def test_sighup_applies_reloadable_keys_and_reports_the_rest(tmp_path):
    port = free_port()
    cfg = {"listen": "127.0.0.1:%d" % port,
           "state_dir": str(tmp_path / "st"),
           "log_level": "info", "pool": {"generic_min": 1}}
    path = write(tmp_path, cfg)
    log = tmp_path / "d.log"
    with open(log, "wb") as lf:
        p = subprocess.Popen([SOFAASD, "--config", path], stderr=lf)
    try:
        # Ready, not only alive: SIGHUP is ignored while starting, and a
        # worker exists (as a child) before it has said HELLO.
        wait_ok("http://127.0.0.1:%d/readyz" % port, p)
        wait_for(lambda: len(children(p.pid)) == 1, "1 worker")

        cfg["pool"]["generic_min"] = 3
        cfg["log_level"] = "debug"
        cfg["listen"] = "127.0.0.1:%d" % free_port()
        write(tmp_path, cfg)
        p.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in log.read_text(),
                 "reload")
        wait_for(lambda: len(children(p.pid)) == 3, "3 workers")
        text = log.read_text()
        assert 'msg="config changed" key=pool.generic_min' in text
        assert 'msg="config changed" key=log_level' in text
        assert "needs a restart, keeping the running value\" key=listen" \
            in text
        # Still on the old address; the new log level is in force.
        wait_ok("http://127.0.0.1:%d/healthz" % port, p)
        assert "level=debug" in log.read_text()

        # A broken file: reported, the running configuration stays.
        write(tmp_path, '{"pool": {"generic_min": "many"}}')
        p.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload failed" in log.read_text(), "failure")
        assert "pool.generic_min: expected integer" in log.read_text()
        wait_ok("http://127.0.0.1:%d/healthz" % port, p)
        assert len(children(p.pid)) == 3

        # Fewer generic workers: the surplus is retired.
        cfg["pool"]["generic_min"] = 1
        write(tmp_path, cfg)
        p.send_signal(signal.SIGHUP)
        wait_for(lambda: len(children(p.pid)) == 1, "back to 1 worker")
    finally:
        p.terminate()
        assert p.wait(15) == 0


def test_body_limits_come_from_the_config(daemon_factory):
    d = daemon_factory(args=["--set", "deploy.max_artifact_mb=1",
                             "--set", "http.invoke_body_max_kb=1"])
    r = requests.put(d.url("/v1/functions/big"), data=b"\0" * (2 << 20),
                     timeout=30)
    assert r.status_code == 413, r.text
    d.deploy("echo", example("echo"))
    assert d.invoke("echo", method="POST", data=b"x" * 1000).status_code \
        == 200
    r = d.invoke("echo", method="POST", data=b"x" * 2048)
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"]
