"""Admin token: bearer auth on /v1, and refusal to expose an open admin
API on a non-loopback address."""
import os
import subprocess

import requests

from conftest import SOFAASD, example


def test_token_required_for_admin_api(daemon_factory):
    d = daemon_factory(env={"SOFAAS_ADMIN_TOKEN": "s3cret-token"},
                       token="s3cret-token")
    with open(example("hello"), "rb") as f:
        data = f.read()
    url = d.url("/v1/functions/hello")
    for hdrs in [{}, {"Authorization": "Bearer wrong"},
                 {"Authorization": "Basic czNjcmV0LXRva2Vu"},
                 {"Authorization": "Bearer s3cret-token2"}]:
        r = requests.put(url, data=data, headers=hdrs, timeout=10)
        assert r.status_code == 401, hdrs
        assert r.json()["error"]["code"] == "unauthorized"
    r = requests.get(d.url("/v1/functions"), timeout=10)
    assert r.status_code == 401
    d.deploy("hello", example("hello"))  # with the right token
    # Invocation and health are not admin routes.
    assert d.invoke("hello").status_code == 200
    assert requests.get(d.url("/healthz"), timeout=10).status_code == 200


def test_token_file(daemon_factory, tmp_path):
    tf = tmp_path / "token"
    tf.write_text("file-token\n")
    d = daemon_factory(args=["--admin-token-file", str(tf)],
                       token="file-token")
    d.deploy("hello", example("hello"))  # trailing newline was trimmed
    r = requests.get(d.url("/v1/functions"),
                     headers={"Authorization": "Bearer file-token"})
    assert r.status_code == 200
    r = requests.get(d.url("/v1/functions"),
                     headers={"Authorization": "Bearer file"})
    assert r.status_code == 401


def test_refuses_non_loopback_without_token(tmp_path):
    env = dict(os.environ)
    env.pop("SOFAAS_ADMIN_TOKEN", None)
    p = subprocess.run([SOFAASD, "--listen", "0.0.0.0:0", "--state-dir",
                        str(tmp_path / "s")], capture_output=True, env=env,
                       timeout=30)
    assert p.returncode != 0
    assert b"non-loopback" in p.stderr


def test_bad_flags_are_rejected(tmp_path):
    for args in [["--listen", "nohostport"], ["--workers", "-1"],
                 ["--log-level", "loud"], ["--bogus"]]:
        p = subprocess.run([SOFAASD] + args, capture_output=True, timeout=30)
        assert p.returncode == 2, args
