"""The unit files: `systemd-analyze verify` passes (with the man pages
they name resolvable), every directive is commented with why, the
hardening keeps what the worker sandbox needs, and the offline security
review stays at the documented exposure."""
import os
import re
import shutil
import subprocess

import pytest

from conftest import BUILD, SOFAASD, SOURCE

UNITS = os.path.join(SOURCE, "packaging", "systemd")

pytestmark = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None,
    reason="systemd-analyze not installed (make deps installs systemd)")


def directives(path):
    """(line number, key, value, comment block above) per directive."""
    out, comment = [], []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if line.startswith("#"):
                comment.append(line)
            elif not line.strip() or line.startswith("["):
                comment = []
            else:
                key, _, val = line.partition("=")
                out.append((n, key, val, list(comment)))
                comment = []
    return out


def local_units(tmp_path):
    """The units with ExecStart pointing at this build's sofaasd."""
    for u in ("sofaasd.service", "sofaasd.socket"):
        with open(os.path.join(UNITS, u)) as f:
            text = f.read().replace("/usr/sbin/sofaasd", SOFAASD)
        (tmp_path / u).write_text(text)
    return tmp_path


def test_verify_passes(tmp_path):
    d = local_units(tmp_path)
    env = dict(os.environ, MANPATH=os.path.join(BUILD, "man"))
    r = subprocess.run(["systemd-analyze", "verify",
                        str(d / "sofaasd.service"), str(d / "sofaasd.socket")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout + r.stderr == ""


@pytest.mark.parametrize("unit", ["sofaasd.service", "sofaasd.socket"])
def test_every_directive_says_why(unit):
    prev_key = None
    for n, key, _, comment in directives(os.path.join(UNITS, unit)):
        # A repeated key (two ExecReload=, two SystemCallFilter=) shares
        # the comment above the first one.
        assert comment or key == prev_key, "%s:%d %s= has no comment" % (
            unit, n, key)
        prev_key = key


def test_hardening_required_by_the_issue_and_sandbox():
    d = {}
    for _, key, val, _ in directives(os.path.join(UNITS, "sofaasd.service")):
        d.setdefault(key, []).append(val)
    for key, val in [("Type", "notify"), ("StateDirectory", "sofaas"),
                     ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                     ("PrivateTmp", "yes"), ("Delegate", "yes"),
                     ("Restart", "on-failure"), ("NoNewPrivileges", "yes"),
                     ("NotifyAccess", "main")]:
        assert d.get(key) == [val], key
    assert "LimitNOFILE" in d and "WatchdogSec" in d
    # What the worker sandbox builds on must stay allowed.
    ns = d["RestrictNamespaces"][0].split()
    for kind in ("user", "mnt", "net"):
        assert kind in ns
    fams = d["RestrictAddressFamilies"][0].split()
    for fam in ("AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"):
        assert fam in fams
    allow = d["SystemCallFilter"][0].split()
    for call in ("seccomp", "landlock_create_ruleset", "landlock_add_rule",
                 "landlock_restrict_self", "@mount"):
        assert call in allow
    for forbidden in ("ProtectControlGroups", "PrivateUsers",
                      "MemoryDenyWriteExecute"):
        assert forbidden not in d, forbidden


def test_security_exposure_matches_docs(tmp_path):
    d = local_units(tmp_path)
    r = subprocess.run(["systemd-analyze", "security", "--offline=true",
                        "--no-pager", str(d / "sofaasd.service")],
                       capture_output=True, text=True, timeout=120)
    m = re.search(r"Overall exposure level for sofaasd.service: ([0-9.]+)",
                  r.stdout)
    if m is None:
        pytest.skip("this systemd-analyze has no offline security review")
    with open(os.path.join(SOURCE, "docs", "operations.md")) as f:
        documented = re.search(r"Exposure score: ([0-9.]+)", f.read())
    assert documented, "docs/operations.md must state the exposure score"
    assert m.group(1) == documented.group(1), r.stdout[-2000:]
