"""The Debian package (make deb), installed in a fresh systemd container.

`make deb` builds the package from the work tree into build-deb/ (a no-op
when the tree has not changed since the last build there, as under make
e2e, which makes it first);
lintian must report no error and no warning that debian/ does not
override.  Then a container (container.py) boots the host's /usr under a
writable overlay (the host's /usr is not changed: what dpkg writes lands in
the test's upper directory) and an empty /etc and /var, given a copy of
the host's dpkg database, which describes that /usr; nothing of tunneld is
in it.  Inside:

  - dpkg -i: the user tunneld and the group tunnel exist, /etc/tunneld and
    /var/lib/tunneld with their modes, /etc/tunnels.conf is a conffile,
    tunneld.service is enabled and not started, tunneld.socket neither;
  - a key, known_hosts and a config with one local tunnel to an sshd
    started in the container, `systemctl start tunneld`: data flows;
  - an upgrade whose /etc/tunnels.conf changed while the admin's changed
    too: dpkg asks (and stops at end of input), --force-confold keeps the
    admin's file, puts the package's beside it, and try-restart gives the
    running service the new files;
  - dpkg -r stops the service, removes the units and programs, keeps the
    configuration; dpkg -P removes it, the keys, the state and the unit's
    enablement.

One container for the module, always stopped (by PID).
"""

import glob
import os
import shutil
import subprocess
import time

import pytest

import container
import e2elib
from e2elib import (DEFAULTS, SLACK, Server, echo_handler, known_hosts_line,
                    local, note, render_conf)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
DEB_DIR = os.path.join(REPO, "build-deb")
SSHD_PORT = 2200
TUNNEL_PORT = 7001
CTL_SOCK = "/run/tunneld/control.sock"
KEY = "/etc/tunneld/id_ed25519"
KNOWN_HOSTS = "/var/lib/tunneld/known_hosts"
PAYLOAD = b"through the packaged tunnel\n"

# What must come from the command line only (see test_install.py): under
# make e2e the environment carries make's own.
_MAKE_ENV = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "DESTDIR",
             "PREFIX", "B", "BA", "CFLAGS", "DEB_DIR", "LINTIAN",
             "DEB_BUILD_OPTIONS")


@pytest.fixture(autouse=True)
def _container_available():
    """No silent skip: without root, systemd-nspawn or the packaging
    tools (make deps installs them) these tests fail and say why."""
    why = container.available()
    assert why is None, why
    for tool in ("/usr/bin/dpkg-buildpackage", "/usr/bin/dh",
                 "/usr/bin/lintian"):
        assert os.access(tool, os.X_OK), "%s missing (make deps)" % tool


def _env():
    env = {k: v for k, v in os.environ.items() if k not in _MAKE_ENV}
    env["LC_ALL"] = "C"
    return env


@pytest.fixture(scope="module")
def package():
    """make deb into DEB_DIR (lintian is the test's); the paths."""
    t0 = time.monotonic()
    p = subprocess.run(["make", "--no-print-directory", "-C", REPO, "deb",
                        "DEB_DIR=" + DEB_DIR, "LINTIAN=no"],
                       capture_output=True, text=True, timeout=600,
                       env=_env(), stdin=subprocess.DEVNULL)
    assert p.returncode == 0, "make deb: exit %d\n%s%s" % (
        p.returncode, p.stdout[-4000:], p.stderr[-4000:])
    debs = glob.glob(os.path.join(DEB_DIR, "tunneld_*.deb"))
    changes = glob.glob(os.path.join(DEB_DIR, "tunneld_*.changes"))
    assert len(debs) == 1 and len(changes) == 1, (debs, changes)
    note("deb: make deb %.1fs (%s)" % (
        time.monotonic() - t0,
        "up to date" if "up to date" in p.stdout else "built"))
    return {"deb": debs[0], "changes": changes[0]}


def _deb_field(deb, field):
    return subprocess.run(["dpkg-deb", "-f", deb, field], check=True,
                          capture_output=True, text=True).stdout.strip()


def test_lintian(package):
    """lintian on the .changes (source, package, debug symbols): no
    error, and no warning that debian/ does not override (explained)."""
    t0 = time.monotonic()
    p = subprocess.run(["lintian", "-I", "--show-overrides", "--fail-on",
                        "error,warning", package["changes"]],
                       capture_output=True, text=True, timeout=300,
                       env=_env())
    out = p.stdout + p.stderr
    print("--- lintian -I --show-overrides %s\n%s" % (
        os.path.basename(package["changes"]), out))
    lines = p.stdout.splitlines()
    bad = [ln for ln in lines if ln[:2] in ("E:", "W:")]
    assert p.returncode == 0 and not bad, out
    tags = [ln for ln in lines if ln[:2] in ("I:", "O:")]
    note("deb: lintian %.1fs: 0 errors, 0 warnings; %s" % (
        time.monotonic() - t0, "; ".join(tags) or "no other tag"))


def _upgrade_deb(deb, outdir):
    """The same package as version +e2e1 whose /etc/tunnels.conf has one
    more line: an upgrade that changes the conffile."""
    tree = os.path.join(outdir, "up")
    shutil.rmtree(tree, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-R", deb, tree], check=True)
    ctl = os.path.join(tree, "DEBIAN", "control")
    with open(ctl) as f:
        text = f.read()
    ver = _deb_field(deb, "Version")
    text = text.replace("Version: %s\n" % ver, "Version: %s+e2e1\n" % ver)
    with open(ctl, "w") as f:
        f.write(text)
    with open(os.path.join(tree, "etc", "tunnels.conf"), "a") as f:
        f.write("# the next version's line\n")
    out = os.path.join(outdir, "tunneld_up.deb")
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", tree, out],
                   check=True, capture_output=True)
    return out, ver + "+e2e1"


class DebContainer(container.Container):
    """A Container whose /usr is the host's under a writable overlay:
    dpkg inside may write /usr, the writes land in upper."""

    def __init__(self, workdir, upper, **kw):
        super().__init__(workdir, **kw)
        self.upper = upper

    def argv(self):
        a = super().argv()
        i = a.index("/usr/lib/systemd/systemd")
        return a[:i] + ["--overlay=/usr:%s:/usr" % self.upper] + a[i:]


class Box:
    def __init__(self, ctr, echo, keys, pkg, up):
        self.ctr = ctr
        self.echo = echo
        self.keys = keys
        self.pkg = pkg          # {"deb", "changes"} on the host
        self.up = up            # (container path of the upgrade, version)

    def show(self, *props, unit="tunneld.service"):
        return self.ctr.show(unit, *props)

    def dpkg(self, *args, check=True, input=None):
        return self.ctr.run("dpkg", *args, check=check, input=input,
                            timeout=120)

    def roundtrip(self):
        return self.ctr.in_net(e2elib.echo_roundtrip,
                               ("127.0.0.1", TUNNEL_PORT), PAYLOAD)

    def exists(self, path):
        return self.ctr.run("test", "-e", path, check=False).returncode == 0

    def stat(self, path):
        return self.ctr.run("stat", "-c", "%U:%G %a", path).stdout.split()

    def fail_info(self):
        return ("\n--- journal of tunneld.service\n%s"
                "\n--- journal of test-sshd\n%s" %
                (self.ctr.journal("tunneld.service"),
                 self.ctr.journal("test-sshd.service", 20)))


@pytest.fixture(scope="module")
def box(workdir, keys, package):
    """Boot the fresh container, give it the dpkg database, an sshd and
    the echo server; the package is not installed yet."""
    top = os.path.join(workdir, "deb")
    shutil.rmtree(top, ignore_errors=True)
    upper = os.path.join(top, "usr-upper")
    debs = os.path.join(top, "debs")
    os.makedirs(upper)
    os.makedirs(debs)
    shutil.copy(package["deb"], debs)
    up, upver = _upgrade_deb(package["deb"], debs)
    ctr = DebContainer(os.path.join(top, "run"), upper,
                       name="tddeb-%d" % os.getpid(),
                       binds=[(debs, "/e2e/debs"),
                              ("/var/lib/dpkg", "/e2e/dpkg"),
                              (os.path.dirname(keys.host_key), "/e2e/keys")])
    ctr.boot()
    echo = None
    try:
        note("deb: container boot to %s %.2fs" % (ctr.state,
                                                  ctr.boot_seconds))
        c = ctr
        # Fresh: nothing of tunneld in the host's /usr or the new /etc.
        for path in ("/usr/sbin/tunneld", "/lib/systemd/system/"
                     "tunneld.service", "/usr/lib/sysusers.d/tunneld.conf"):
            assert c.run("test", "-e", path, check=False).returncode != 0, \
                "the host's /usr has %s: not a fresh system" % path
        assert c.run("getent", "passwd", "tunneld",
                     check=False).returncode != 0
        # The database that describes this /usr (the host's); /var is
        # empty at the first boot.
        # Its statoverrides name the host's groups (ssl-cert, ...), which
        # this /etc does not have: dpkg would refuse to run.
        c.sh("rm -rf /var/lib/dpkg; mkdir -p /var/lib /var/log; "
             "cp -a /e2e/dpkg /var/lib/dpkg; "
             ": > /var/lib/dpkg/statoverride")
        # A container image (docker) may carry a policy-rc.d that forbids
        # starting and stopping services from maintainer scripts; a real
        # machine has none. Removed in the overlay only.
        c.run("rm", "-f", "/usr/sbin/policy-rc.d")
        c.start_sshd(SSHD_PORT)
        echo = c.in_net(Server, echo_handler, ("127.0.0.1", 0))
        yield Box(c, echo, keys, package, ("/e2e/debs/" + os.path.basename(up),
                                     upver))
    finally:
        if echo is not None:
            echo.stop()
        t1 = time.monotonic()
        ctr.stop()
        note("deb: container stopped in %.2fs" % (time.monotonic() - t1))


def _check(b, fn):
    try:
        fn()
    except BaseException as e:
        raise AssertionError("%s%s" % (e, b.fail_info())) from e


def test_install_start_upgrade_remove_purge(box):
    """The package's whole life on a fresh machine, as an admin lives it:
    install, configure, start, a tunnel works; an upgrade that changed
    the shipped config; remove; purge."""
    b, c = box, box.ctr
    deb = "/e2e/debs/" + os.path.basename(b.pkg["deb"])
    ver = _deb_field(b.pkg["deb"], "Version")

    def body():
        # -- install ------------------------------------------------------
        t0 = time.monotonic()
        r = b.dpkg("-i", deb)
        t_inst = time.monotonic() - t0
        st = c.run("dpkg-query", "-W", "-f", "${Status} ${Version}",
                   "tunneld").stdout
        assert st == "install ok installed %s" % ver, st
        # The version the package says is the one tunneld says.
        r = c.run("tunneld", "-V")
        v = r.stdout + r.stderr
        assert ver in v, (ver, v)
        # sysusers and tmpfiles ran in the postinst.
        pw = c.run("getent", "passwd", "tunneld").stdout.split(":")
        assert pw[5] == "/var/lib/tunneld", pw
        assert c.run("getent", "group", "tunnel").returncode == 0
        assert b.stat("/etc/tunneld") == ["tunneld:tunneld", "750"]
        assert b.stat("/var/lib/tunneld") == ["tunneld:tunneld", "700"]
        conff = c.run("dpkg-query", "-W", "-f", "${Conffiles}",
                      "tunneld").stdout
        assert "/etc/tunnels.conf" in conff, conff
        # The shipped file has no tunnel and passes the checker.
        r = c.run("tunctl", "check", "/etc/tunnels.conf")
        assert "(0 tunnels" in r.stdout, r.stdout
        # Enabled, not started; the socket neither.
        en = c.run("systemctl", "is-enabled", "tunneld.service",
                   "tunneld.socket", check=False).stdout.split()
        assert en == ["enabled", "disabled"], en
        assert b.show("ActiveState")["ActiveState"] == "inactive"
        assert b.show("ActiveState", unit="tunneld.socket")[
            "ActiveState"] == "inactive"

        # -- configure, start: a tunnel works -----------------------------
        c.run("install", "-o", "tunneld", "-g", "tunneld", "-m", "0600",
              "/e2e/keys/id_ed25519", KEY)
        c.write(KNOWN_HOSTS, known_hosts_line(SSHD_PORT, b.keys.host_pub),
                mode="0600", owner="tunneld:tunneld")
        d = dict(DEFAULTS)
        d["identity"] = KEY
        d["known_hosts"] = KNOWN_HOSTS
        conf = render_conf(CTL_SOCK, d, {"srv": {"address": "127.0.0.1",
                                                 "port": SSHD_PORT}},
                           [local("one", "127.0.0.1:%d" % TUNNEL_PORT,
                                  b.echo.target)])
        c.write("/etc/tunnels.conf", conf)
        t0 = time.monotonic()
        c.systemctl("start", "tunneld")
        t_start = time.monotonic() - t0
        p = b.show("ActiveState", "MainPID", "User")
        assert p["ActiveState"] == "active" and p["User"] == "tunneld", p
        pid = p["MainPID"]
        assert b.roundtrip() == PAYLOAD
        c.wait_for(lambda: b.show("StatusText")["StatusText"] ==
                   "1/1 tunnels up", 10 * SLACK, "StatusText 1/1 tunnels up")

        # -- upgrade, the shipped config changed, so did the admin's -------
        up, upver = b.up
        r = b.dpkg("-i", up, check=False, input="")
        out = r.stdout + r.stderr
        # dpkg asks; with nothing to answer on stdin it stops there.
        assert r.returncode != 0 and "conffile prompt" in out, out
        assert c.run("cat", "/etc/tunnels.conf").stdout == conf
        t0 = time.monotonic()
        r = b.dpkg("--configure", "--force-confold", "tunneld")
        t_up = time.monotonic() - t0
        st = c.run("dpkg-query", "-W", "-f", "${Status} ${Version}",
                   "tunneld").stdout
        assert st == "install ok installed %s" % upver, st
        assert c.run("cat", "/etc/tunnels.conf").stdout == conf
        dist = c.run("cat", "/etc/tunnels.conf.dpkg-dist").stdout
        assert "the next version's line" in dist
        # Restarted by the postinst (try-restart): a new daemon, serving.
        p = b.show("ActiveState", "MainPID")
        assert p["ActiveState"] == "active" and p["MainPID"] != pid, \
            (pid, p)
        assert b.roundtrip() == PAYLOAD

        # -- remove: stopped, units and programs gone, config kept --------
        b.dpkg("-r", "tunneld")
        p = b.show("ActiveState", "LoadState")
        assert p == {"ActiveState": "inactive", "LoadState": "not-found"}, p
        for path in ("/lib/systemd/system/tunneld.service",
                     "/lib/systemd/system/tunneld.socket",
                     "/usr/sbin/tunneld", "/usr/bin/tunctl"):
            assert not b.exists(path), path
        assert c.in_net(e2elib.port_refuses, TUNNEL_PORT)
        assert c.run("cat", "/etc/tunnels.conf").stdout == conf
        assert b.exists(KEY)

        # -- purge: the configuration, keys, state, enablement gone -------
        b.dpkg("-P", "tunneld")
        for path in ("/etc/tunnels.conf", "/etc/tunneld",
                     "/var/lib/tunneld", "/etc/systemd/system/"
                     "multi-user.target.wants/tunneld.service"):
            assert not b.exists(path), path
        r = c.run("dpkg-query", "-W", "tunneld", check=False)
        assert r.returncode != 0, r.stdout
        note("deb: dpkg -i %.2fs; systemctl start %.2fs, echo through the "
             "tunnel ok; upgrade asked for the changed tunnels.conf, kept "
             "the admin's, restarted the service in %.2fs; remove and "
             "purge clean" % (t_inst, t_start, t_up))
    _check(b, body)

