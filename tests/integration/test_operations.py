"""The procedures docs/operations.md tells operators to follow, run for
real: an online backup of the state directory while the daemon serves and
a restore into a fresh state directory; and an "upgrade" (a restart on
the same state dir) that keeps every deployed function."""
import base64
import os
import shutil
import subprocess

import pytest

from conftest import example


def backup(state, dest):
    """The documented backup: artifacts, then the online SQLite backup,
    then artifacts again (new deploys) -- never deleting in the copy."""
    os.makedirs(os.path.join(dest, "artifacts"), exist_ok=True)

    def copy_artifacts():
        src = os.path.join(state, "artifacts")
        for name in os.listdir(src):
            if name.endswith(".so"):
                out = os.path.join(dest, "artifacts", name)
                if not os.path.exists(out):
                    shutil.copy2(os.path.join(src, name), out)

    copy_artifacts()
    subprocess.run(["sqlite3", os.path.join(state, "sofaas.db"),
                    ".backup '%s'" % os.path.join(dest, "sofaas.db")],
                   check=True, timeout=60)
    copy_artifacts()


@pytest.mark.skipif(shutil.which("sqlite3") is None,
                    reason="sqlite3 CLI not installed (make deps)")
def test_online_backup_and_restore(daemon_factory, tmp_path):
    d = daemon_factory()
    d.deploy("hello", example("hello"))
    d.deploy("echo", example("echo"))
    assert d.invoke("hello").status_code == 200

    # While the daemon runs and serves.
    bk = str(tmp_path / "backup")
    backup(d.state_dir, bk)
    assert d.invoke("hello").status_code == 200
    out = subprocess.run(["sqlite3", os.path.join(bk, "sofaas.db"),
                          "PRAGMA integrity_check"], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert out == "ok"
    d.stop()

    # Restore into a new state dir and serve from it.
    restored = tmp_path / "restored"
    shutil.copytree(bk, restored)
    r = daemon_factory(name="restored")
    assert r.invoke("hello").text == "Hello from sofaas!\n"
    e = r.invoke("echo", path="/x", method="POST", data=b"abc")
    assert e.status_code == 200
    assert base64.b64decode(e.json()["body_base64"]) == b"abc"


def test_restart_on_the_same_state_keeps_functions(daemon_factory):
    d = daemon_factory()
    d.deploy("hello", example("hello"))
    d.deploy("hello", example("echo"))  # version 2
    d.restart()
    r = d.invoke("hello", path="/after", method="POST", data=b"upgrade")
    assert r.status_code == 200
    assert r.json()["path"] == "/after"  # still version 2 (echo)
    assert base64.b64decode(r.json()["body_base64"]) == b"upgrade"
