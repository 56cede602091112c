"""Install and package: `cmake --install` into a prefix (then build a
function with pkg-config against it and serve it with the installed
daemon), and the Debian package built by CPack (contents, control data,
dependencies), installed for real with dpkg inside a private mount
namespace whose /etc, /usr and /var are overlays, so the host is never
touched."""
import glob
import os
import re
import shutil
import subprocess
import time

import pytest
import requests

from conftest import BUILD, SOFAASD, SOURCE, free_port

EXPECTED_FILES = [
    "./etc/sofaas/sofaasd.json",
    "./usr/include/sofaas.h",
    "./usr/lib/systemd/system/sofaasd.service",
    "./usr/lib/systemd/system/sofaasd.socket",
    "./usr/libexec/sofaas/sofaas-worker",
    "./usr/sbin/sofaasd",
    "./usr/share/man/man7/sofaas-function.7.gz",
    "./usr/share/man/man8/sofaasd.8.gz",
    "./usr/share/pkgconfig/sofaas.pc",
]


def version():
    out = subprocess.run([SOFAASD, "--version"], capture_output=True,
                         text=True, check=True).stdout
    return out.split()[1]


def run(cmd, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 300)
    r = subprocess.run(cmd, **kw)
    assert r.returncode == 0, (cmd, r.stdout, r.stderr)
    return r.stdout


def serve_and_invoke(sofaasd, state, so_path, env=None, prefix_cmd=()):
    """Starts an installed sofaasd, deploys so_path as 'hello', invokes it."""
    port = free_port()
    log = open(os.path.join(os.path.dirname(state), "inst.log"), "ab")
    p = subprocess.Popen(list(prefix_cmd) + [
        sofaasd, "--listen", "127.0.0.1:%d" % port, "--state-dir", state,
        "--workers", "1"], stdout=log, stderr=subprocess.STDOUT, env=env)
    url = "http://127.0.0.1:%d" % port
    try:
        deadline = time.time() + 15
        while True:
            assert p.poll() is None, "installed sofaasd exited"
            try:
                if requests.get(url + "/healthz", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.time() < deadline, "installed sofaasd not ready"
            time.sleep(0.05)
        with open(so_path, "rb") as f:
            r = requests.put(url + "/v1/functions/hello", data=f.read(),
                             timeout=30)
        assert r.status_code == 201, r.text
        return requests.get(url + "/fn/hello/", timeout=30)
    finally:
        p.terminate()
        p.wait(15)
        log.close()


def test_cmake_install_layout_pkgconfig_and_run(tmp_path):
    prefix = tmp_path / "inst"
    run(["cmake", "--install", BUILD, "--prefix", str(prefix)])
    for rel in ["sbin/sofaasd", "libexec/sofaas/sofaas-worker",
                "include/sofaas.h", "share/pkgconfig/sofaas.pc",
                "lib/systemd/system/sofaasd.service",
                "lib/systemd/system/sofaasd.socket",
                "etc/sofaas/sofaasd.json",
                "share/man/man8/sofaasd.8.gz",
                "share/man/man7/sofaas-function.7.gz"]:
        assert (prefix / rel).exists(), rel
    # Units name the installed daemon and config, not /usr/sbin.
    unit = (prefix / "lib/systemd/system/sofaasd.service").read_text()
    assert "ExecStart=%s/sbin/sofaasd --config %s/etc/sofaas/sofaasd.json" \
        % (prefix, prefix) in unit
    # The installed config validates with the installed daemon.
    out = run([str(prefix / "sbin/sofaasd"), "--check-config",
               str(prefix / "etc/sofaas/sofaasd.json")])
    assert "OK" in out

    # A function author's build, exactly as documented.
    env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "share/pkgconfig"))
    cflags = run(["pkg-config", "--cflags", "sofaas"], env=env).split()
    assert run(["pkg-config", "--modversion", "sofaas"], env=env).strip() \
        == version()
    so = tmp_path / "hello.so"
    run(["cc"] + cflags + ["-shared", "-fPIC", "-O2",
                           os.path.join(SOURCE, "examples/hello/hello.c"),
                           "-o", str(so)])
    # The installed daemon finds its worker in ../libexec/sofaas.
    r = serve_and_invoke(str(prefix / "sbin/sofaasd"),
                         str(tmp_path / "state"), str(so))
    assert r.status_code == 200
    assert r.text == "Hello from sofaas!\n"


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    out = tmp_path_factory.mktemp("deb")
    run(["cpack", "-G", "DEB", "--config",
         os.path.join(BUILD, "CPackConfig.cmake"), "-B", str(out)],
        cwd=BUILD, timeout=600)
    path = out / ("sofaas_%s_amd64.deb" % version())
    assert path.exists(), os.listdir(out)
    return path


def control(deb):
    fields = {}
    key = None
    for line in run(["dpkg-deb", "-f", str(deb)]).splitlines():
        if line.startswith(" ") and key:
            fields[key] += "\n" + line
        else:
            key, _, val = line.partition(":")
            fields[key] = val.strip()
    return fields


def test_deb_contents(deb):
    listing = run(["dpkg-deb", "-c", str(deb)])
    files = [l.split()[-1] for l in listing.splitlines()
             if not l.startswith("d")]
    assert sorted(f for f in files if "/doc/" not in f) == EXPECTED_FILES
    assert "./usr/share/doc/sofaas/copyright" in files
    assert "./usr/share/doc/sofaas/operations.md" in files
    assert re.search(r"^-rwxr-xr-x root/root .* \./usr/sbin/sofaasd$",
                     listing, re.M)
    info = run(["dpkg-deb", "-I", str(deb)])
    for script in ("postinst", "prerm", "postrm", "conffiles"):
        assert re.search(r"^ +\d+ bytes, +\d+ lines +\*? +%s\b" % script,
                         info, re.M), script
    conffiles = run(["dpkg-deb", "--ctrl-tarfile", str(deb)],
                    text=False)
    assert b"conffiles" in conffiles
    f = control(deb)
    assert f["Package"] == "sofaas"
    assert f["Architecture"] == "amd64"
    assert f["Version"] == version()


def test_deb_depends_on_every_library_it_links(deb, tmp_path):
    depends = control(deb)["Depends"]
    dep_names = {d.strip().split()[0] for alt in depends.split(",")
                 for d in alt.split("|")}
    for pkg in ("libuv1", "libcjson1", "libseccomp2", "libsqlite3-0",
                "libc6", "adduser"):
        assert pkg in dep_names, (pkg, depends)
    # Every shared library the packaged binaries need belongs to a package
    # the .deb depends on.
    root = tmp_path / "x"
    run(["dpkg-deb", "-x", str(deb), str(root)])
    for binary in ("usr/sbin/sofaasd", "usr/libexec/sofaas/sofaas-worker"):
        needed = re.findall(r"\(NEEDED\).*\[(.+)\]",
                            run(["readelf", "-d", str(root / binary)]))
        for lib in needed:
            if lib.startswith(("libasan", "libubsan")):
                continue  # sanitizer builds only
            owner = run(["dpkg", "-S", "*/" + lib]).split(":")[0]
            assert owner in dep_names, (binary, lib, owner, depends)


def in_namespace_prereqs():
    if os.geteuid() != 0:
        return "needs root for a private mount namespace with overlays"
    for tool in ("unshare", "nsenter", "dpkg", "setpriv", "curl"):
        if shutil.which(tool) is None:
            return tool + " not installed"
    return None


class Overlaid:
    """A process holding a private mount namespace in which /etc, /usr and
    /var are overlays over the host's: dpkg -i in there is a real install
    whose writes land in tmp dirs."""

    def __init__(self, tmp):
        self.tmp = tmp
        script = ["set -e"]
        for d in ("etc", "usr", "var"):
            u, w = tmp / ("up-" + d), tmp / ("work-" + d)
            u.mkdir()
            w.mkdir()
            script.append("mount -t overlay overlay -o lowerdir=/%s,"
                          "upperdir=%s,workdir=%s /%s" % (d, u, w, d))
        script.append("echo mounted")
        script.append("exec sleep 3600")
        self.proc = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             "\n".join(script)], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if line != "mounted":
            self.close()
            pytest.skip("cannot mount overlays in a mount namespace here")

    def run(self, cmd, check=True, **kw):
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 300)
        r = subprocess.run(["nsenter", "-t", str(self.proc.pid), "-m", "--"]
                           + cmd, **kw)
        if check:
            assert r.returncode == 0, (cmd, r.stdout, r.stderr)
        return r

    def close(self):
        self.proc.kill()
        self.proc.wait()


def test_deb_installs_upgrades_and_purges(deb, tmp_path):
    why = in_namespace_prereqs()
    if why:
        pytest.skip(why)
    host_had_etc = os.path.exists("/etc/sofaas")
    ns = Overlaid(tmp_path)
    try:
        assert ns.run(["getent", "passwd", "sofaas"], check=False) \
            .returncode != 0, "host already has a sofaas user"
        ns.run(["dpkg", "-i", str(deb)])
        st = ns.run(["dpkg-query", "-W", "-f=${Status}", "sofaas"]).stdout
        assert st == "install ok installed"
        # Users: the daemon's and the workers', system accounts, no login.
        for user in ("sofaas", "sofaas-worker"):
            pw = ns.run(["getent", "passwd", user]).stdout.strip().split(":")
            assert int(pw[2]) < 1000, pw
            assert pw[6] == "/usr/sbin/nologin", pw
        # The admin token: generated, 64 hex digits, root:sofaas 0640.
        tok = ns.run(["stat", "-c", "%U:%G %a", "/etc/sofaas/admin-token"])
        assert tok.stdout.strip() == "root:sofaas 640"
        token = ns.run(["cat", "/etc/sofaas/admin-token"]).stdout.strip()
        assert re.fullmatch(r"[0-9a-f]{64}", token)
        # Enabled per Debian convention (service yes, socket left alone).
        wants = "/etc/systemd/system/multi-user.target.wants/sofaasd.service"
        assert ns.run(["readlink", wants]).stdout.strip() \
            .endswith("/sofaasd.service")
        assert ns.run(["test", "-e", "/etc/systemd/system/sockets.target."
                       "wants/sofaasd.socket"], check=False).returncode != 0
        assert "/etc/sofaas/sofaasd.json" in ns.run(
            ["dpkg-query", "-W", "-f=${Conffiles}", "sofaas"]).stdout
        assert "OK" in ns.run(["/usr/sbin/sofaasd", "--check-config",
                               "/etc/sofaas/sofaasd.json"]).stdout

        # Run the installed daemon as its user with the packaged config,
        # the way the unit does (systemd would create the state dir).
        ns.run(["install", "-d", "-o", "sofaas", "-g", "sofaas", "-m",
                "0750", "/var/lib/sofaas"])
        port = free_port()
        daemon = subprocess.Popen(
            ["nsenter", "-t", str(ns.proc.pid), "-m", "--", "setpriv",
             "--reuid=sofaas", "--regid=sofaas", "--init-groups",
             # as the unit: only CAP_SETUID/CAP_SETGID, ambient, for the
             # workers' switch to sofaas-worker
             "--inh-caps=+setuid,+setgid", "--ambient-caps=+setuid,+setgid",
             "--bounding-set=-all,+setuid,+setgid",
             "/usr/sbin/sofaasd", "--config", "/etc/sofaas/sofaasd.json",
             "--listen", "127.0.0.1:%d" % port, "--workers", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        url = "http://127.0.0.1:%d" % port
        try:
            deadline = time.time() + 15
            while True:
                assert daemon.poll() is None, daemon.stderr.read()
                try:
                    if requests.get(url + "/healthz", timeout=1).ok:
                        break
                except requests.ConnectionError:
                    pass
                assert time.time() < deadline
                time.sleep(0.05)
            # The packaged config turns the generated token on.
            assert requests.get(url + "/v1/functions",
                                timeout=5).status_code == 401
            r = requests.get(url + "/v1/functions", timeout=5,
                             headers={"Authorization": "Bearer " + token})
            assert r.status_code == 200
        finally:
            daemon.terminate()
            daemon.wait(15)
        db = "/var/lib/sofaas/sofaas.db"
        assert ns.run(["stat", "-c", "%U", db]).stdout.strip() == "sofaas"

        # Upgrade (same version reinstalled): token and state survive.
        ns.run(["dpkg", "-i", str(deb)])
        assert ns.run(["cat", "/etc/sofaas/admin-token"]).stdout.strip() \
            == token
        assert ns.run(["test", "-f", db], check=False).returncode == 0

        # Purge: package and token gone, state kept, users kept.
        ns.run(["dpkg", "--purge", "sofaas"])
        assert ns.run(["test", "-e", "/usr/sbin/sofaasd"],
                      check=False).returncode != 0
        assert ns.run(["test", "-e", "/etc/sofaas/admin-token"],
                      check=False).returncode != 0
        assert ns.run(["test", "-f", db], check=False).returncode == 0
    finally:
        ns.close()
    # Nothing leaked to the host.
    if not host_had_etc:
        assert not os.path.exists("/etc/sofaas")
    assert not glob.glob("/var/lib/dpkg/info/sofaas.*")
