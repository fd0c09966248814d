"""make install / make uninstall, and the systemd units they install.

`make install DESTDIR=<tmp> PREFIX=/usr` puts the programs, the manual
pages, tunneld.service and tunneld.socket, sysusers.d and tmpfiles.d files
and an example /etc/tunnels.conf where systemd and the SPEC expect them,
with the right modes; a second install keeps a changed tunnels.conf;
`make uninstall` removes what install put (and leaves tunnels.conf, the
user's configuration).  The installed units pass `systemd-analyze verify`
and `systemd-analyze security --offline=yes` rates tunneld.service 2.0 or
better.

No sshd and no daemon: everything is written under the test's temporary
directory (the programs are built into it too), nothing on the host is
changed.  systemd is not asked to run anything: verify, security,
systemd-sysusers and systemd-tmpfiles all work offline on a --root.
"""

import os
import re
import shutil
import stat
import subprocess

import pytest

from e2elib import note

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))

# Variables the Makefile reads that must come from the command line only:
# a stray one in the environment (or make's own, when pytest runs under
# make e2e) would move files or break the sub-make's jobserver.
_MAKE_ENV = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "DESTDIR",
             "PREFIX", "SBINDIR", "BINDIR", "MANDIR", "UNITDIR",
             "SYSUSERSDIR", "TMPFILESDIR", "SYSCONFDIR", "POSTINSTALL", "B",
             "BA", "CFLAGS")


def _pc(var, fallback):
    """A directory as systemd.pc names it, or the Makefile's fallback."""
    try:
        p = subprocess.run(["pkg-config", "--variable=" + var, "systemd"],
                           capture_output=True, text=True, timeout=30)
        v = p.stdout.strip()
    except OSError:
        v = ""
    return v or fallback


UNITDIR = _pc("systemdsystemunitdir", "/lib/systemd/system")
SYSUSERSDIR = _pc("sysusersdir", "/usr/lib/sysusers.d")
TMPFILESDIR = _pc("tmpfilesdir", "/usr/lib/tmpfiles.d")


def _env():
    env = {k: v for k, v in os.environ.items() if k not in _MAKE_ENV}
    env["LC_ALL"] = "C"
    return env


def make(*args, timeout=600):
    """make -C REPO ARGS...; returns its output, fails the test on error."""
    p = subprocess.run(["make", "--no-print-directory", "-C", REPO] +
                       list(args), capture_output=True, text=True,
                       timeout=timeout, env=_env(), stdin=subprocess.DEVNULL)
    out = p.stdout + p.stderr
    assert p.returncode == 0, "make %s: exit %d\n%s" % (
        " ".join(args), p.returncode, out[-4000:])
    return out


@pytest.fixture(scope="module")
def build(workdir):
    """The programs, built once for this module into its own directory."""
    b = os.path.join(workdir, "inst-build")
    make("-j%d" % max(2, os.cpu_count() or 1), "B=" + b, "all",
         timeout=900)
    return b


def install(build, destdir, *extra):
    return make("B=" + build, "DESTDIR=" + destdir, "PREFIX=/usr",
                *extra + ("install",))


def uninstall(build, destdir, *extra):
    return make("B=" + build, "DESTDIR=" + destdir, "PREFIX=/usr",
                *extra + ("uninstall",))


# Every file make install puts, with its mode (PREFIX=/usr).
def expected(prefix="/usr"):
    return {
        prefix + "/sbin/tunneld": 0o755,
        prefix + "/bin/tunctl": 0o755,
        prefix + "/share/man/man8/tunneld.8": 0o644,
        prefix + "/share/man/man1/tunctl.1": 0o644,
        prefix + "/share/man/man5/tunnels.conf.5": 0o644,
        UNITDIR + "/tunneld.service": 0o644,
        UNITDIR + "/tunneld.socket": 0o644,
        SYSUSERSDIR + "/tunneld.conf": 0o644,
        TMPFILESDIR + "/tunneld.conf": 0o644,
        "/etc/tunnels.conf": 0o644,
    }


def under(destdir, path):
    return os.path.join(destdir, path.lstrip("/"))


def files_in(destdir):
    """Every non-directory under destdir, as an absolute installed path."""
    found = set()
    for root, dirs, files in os.walk(destdir):
        for f in files:
            found.add("/" + os.path.relpath(os.path.join(root, f), destdir))
    return found


def unit_settings(path):
    """{key: [values...]} of a unit file (comments and sections ignored)."""
    s = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;[" or "=" not in line:
                continue
            k, v = line.split("=", 1)
            s.setdefault(k.strip(), []).append(v.strip())
    return s


def read(path):
    with open(path, "rb") as f:
        return f.read()


def test_install_puts_every_file(build, tdir):
    dest = os.path.join(tdir, "root")
    install(build, dest)
    want = expected()
    assert files_in(dest) == set(want), "make install put other files"
    for path, mode in want.items():
        st = os.lstat(under(dest, path))
        assert stat.S_ISREG(st.st_mode), path
        assert stat.S_IMODE(st.st_mode) == mode, "%s: mode %o, not %o" % (
            path, stat.S_IMODE(st.st_mode), mode)
    # The sources, unchanged (the unit only has its paths set).
    assert read(under(dest, "/etc/tunnels.conf")) == read(
        os.path.join(REPO, "conf/tunnels.conf"))
    for src, dst in (("systemd/tunneld.socket", UNITDIR + "/tunneld.socket"),
                     ("systemd/tunneld.sysusers",
                      SYSUSERSDIR + "/tunneld.conf"),
                     ("systemd/tunneld.tmpfiles",
                      TMPFILESDIR + "/tunneld.conf"),
                     ("docs/tunneld.8", "/usr/share/man/man8/tunneld.8")):
        assert read(under(dest, dst)) == read(os.path.join(REPO, src)), dst
    svc = unit_settings(under(dest, UNITDIR + "/tunneld.service"))
    assert svc["ExecStart"] == ["/usr/sbin/tunneld -d"]
    # The installed programs run, and accept the installed example.
    p = subprocess.run([under(dest, "/usr/sbin/tunneld"), "-V"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and p.stdout.startswith("tunneld "), p
    p = subprocess.run([under(dest, "/usr/sbin/tunneld"), "-t", "-f",
                        under(dest, "/etc/tunnels.conf")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    p = subprocess.run([under(dest, "/usr/bin/tunctl"), "check",
                        under(dest, "/etc/tunnels.conf")],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr


def test_install_keeps_a_changed_tunnels_conf(build, tdir):
    dest = os.path.join(tdir, "root")
    install(build, dest)
    conf = under(dest, "/etc/tunnels.conf")
    mine = b"# mine\nversion = 1;\n"
    with open(conf, "wb") as f:
        f.write(mine)
    os.chmod(conf, 0o640)
    # Everything else is put again: a removed page comes back.
    page = under(dest, "/usr/share/man/man1/tunctl.1")
    os.unlink(page)
    out = install(build, dest)
    assert "exists: left as it is" in out, out
    assert read(conf) == mine
    assert stat.S_IMODE(os.stat(conf).st_mode) == 0o640
    assert os.path.isfile(page)
    assert files_in(dest) == set(expected())
    # Nor a symbolic link the user put there (even a dangling one).
    os.unlink(conf)
    os.symlink("/nonexistent/tunnels.conf", conf)
    install(build, dest)
    assert os.path.islink(conf)
    assert os.readlink(conf) == "/nonexistent/tunnels.conf"


def test_uninstall_removes_what_install_put(build, tdir):
    dest = os.path.join(tdir, "root")
    install(build, dest)
    out = uninstall(build, dest)
    # tunnels.conf is the user's: it stays, and uninstall says so.
    assert files_in(dest) == {"/etc/tunnels.conf"}, files_in(dest)
    assert "left in place" in out, out
    # Twice is harmless; and with no tunnels.conf nothing at all is left.
    os.unlink(under(dest, "/etc/tunnels.conf"))
    uninstall(build, dest)
    assert files_in(dest) == set()


def test_install_prefix_names_the_programs_in_the_unit(build, tdir):
    """PREFIX=/usr/local: the programs go there and the unit runs them
    from there; systemd's own directories stay what systemd.pc says."""
    dest = os.path.join(tdir, "root")
    make("B=" + build, "DESTDIR=" + dest, "PREFIX=/usr/local", "install")
    want = expected("/usr/local")
    assert files_in(dest) == set(want)
    svc = unit_settings(under(dest, UNITDIR + "/tunneld.service"))
    assert svc["ExecStart"] == ["/usr/local/sbin/tunneld -d"]
    for v in svc["ExecReload"]:
        assert "/usr/sbin/" not in v, v
    make("B=" + build, "DESTDIR=" + dest, "PREFIX=/usr/local", "uninstall")
    assert files_in(dest) == {"/etc/tunnels.conf"}


def verify_root(tdir, dest):
    """A root for systemd-analyze --root: what was installed in dest, and
    the host's own units (the targets and slices ours depend on)."""
    vroot = os.path.join(tdir, "vroot")
    host_units = os.path.realpath(UNITDIR)
    shutil.copytree(host_units, under(vroot, host_units), symlinks=True,
                    ignore=shutil.ignore_patterns("tunneld.*"))
    shutil.copytree(dest, vroot, symlinks=True, dirs_exist_ok=True)
    return vroot


def analyze(*args, env=None):
    p = subprocess.run(["systemd-analyze"] + list(args), capture_output=True,
                       timeout=120, env=env, stdin=subprocess.DEVNULL)
    return (p.returncode, p.stdout.decode(errors="replace") +
            p.stderr.decode(errors="replace"))


def test_installed_units_pass_systemd_analyze_verify(build, tdir):
    dest = os.path.join(tdir, "root")
    install(build, dest)
    vroot = verify_root(tdir, dest)
    env = _env()
    args = ["verify", "--root=" + vroot]
    if shutil.which("man"):
        # Documentation=man:...: the installed pages must be found.
        env["MANPATH"] = under(dest, "/usr/share/man")
    else:
        args.append("--man=no")
    code, out = analyze(*(args + ["tunneld.service", "tunneld.socket"]),
                        env=env)
    assert code == 0, out
    # Warnings (an unknown or misspelt setting, say) do not change the
    # exit status: none may name our units.
    ours = [ln for ln in out.splitlines() if "tunneld" in ln]
    assert not ours, out
    # It would have seen a missing program at the ExecStart= path.
    os.unlink(under(vroot, "/usr/sbin/tunneld"))
    code, out = analyze(*(args + ["tunneld.service"]), env=env)
    assert code != 0 and "/usr/sbin/tunneld" in out, out


def test_tunneld_service_security_exposure(build, tdir):
    dest = os.path.join(tdir, "root")
    install(build, dest)
    vroot = verify_root(tdir, dest)
    code, out = analyze("security", "--offline=yes", "--root=" + vroot,
                        "--no-pager", "tunneld.service")
    m = re.search(r"Overall exposure level for tunneld\.service: "
                  r"(\d+\.\d+)", out)
    assert m, out
    score = float(m.group(1))
    note("systemd-analyze security tunneld.service: exposure %.1f "
         "(2.0 or better wanted)" % score)
    assert score <= 2.0, out
    # --threshold is in tenths: exit 0 only when the exposure is <= 2.0.
    code, out = analyze("security", "--offline=yes", "--root=" + vroot,
                        "--threshold=20", "--no-pager", "tunneld.service")
    assert code == 0, out


def _passwd(path):
    with open(path) as f:
        return {ln.split(":")[0]: ln.rstrip("\n").split(":")
                for ln in f if ln.strip()}


@pytest.mark.skipif(os.geteuid() != 0, reason="tmpfiles chown needs root")
def test_sysusers_and_tmpfiles_make_the_user_and_directories(build, tdir):
    """systemd-sysusers and systemd-tmpfiles on the installed files (offline,
    --root): the names the units use exist, and the directories they want
    are there with their modes and owner."""
    dest = os.path.join(tdir, "root")
    install(build, dest)
    vroot = verify_root(tdir, dest)
    for cmd in (["systemd-sysusers", "--root=" + vroot],
                ["systemd-tmpfiles", "--root=" + vroot, "--create"]):
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        assert p.returncode == 0, "%s: %s" % (cmd, p.stdout + p.stderr)
    users = _passwd(under(vroot, "/etc/passwd"))
    groups = _passwd(under(vroot, "/etc/group"))
    assert "tunneld" in users and "tunneld" in groups and "tunnel" in groups
    u = users["tunneld"]
    assert u[3] == groups["tunneld"][2], "tunneld's group is not tunneld"
    assert int(u[2]) < 1000, "not a system user"
    assert u[5] == "/var/lib/tunneld" and u[6].endswith("nologin"), u
    uid, gid = int(u[2]), int(u[3])
    for path, mode in (("/etc/tunneld", 0o750), ("/var/lib/tunneld", 0o700),
                       ("/run/tunneld", 0o755)):
        st = os.lstat(under(vroot, path))
        assert stat.S_ISDIR(st.st_mode), path
        assert stat.S_IMODE(st.st_mode) == mode, "%s: %o" % (
            path, stat.S_IMODE(st.st_mode))
        assert (st.st_uid, st.st_gid) == (uid, gid), path

    # Every user and group the units name is one sysusers makes.
    svc = unit_settings(under(vroot, UNITDIR + "/tunneld.service"))
    sock = unit_settings(under(vroot, UNITDIR + "/tunneld.socket"))
    assert svc["User"] == ["tunneld"] and svc["Group"] == ["tunneld"]
    for g in svc.get("SupplementaryGroups", [""])[0].split():
        assert g in groups, g
    assert sock["SocketUser"][0] in users
    assert sock["SocketGroup"] == ["tunnel"]
    assert sock["SocketMode"] == ["0660"]
    # The service's directories are the ones tmpfiles makes, with the same
    # modes (systemd would otherwise change them at each start).
    assert svc["RuntimeDirectory"] == ["tunneld"]
    assert svc["RuntimeDirectoryMode"] == ["0755"]
    assert svc["StateDirectory"] == ["tunneld"]
    assert svc["StateDirectoryMode"] == ["0700"]
    assert svc["ConfigurationDirectory"] == ["tunneld"]
    assert svc["ConfigurationDirectoryMode"] == ["0750"]


def test_units_agree_with_the_programs_defaults(build, tdir):
    """The socket unit listens where tunctl and tunneld look by default, in
    the service's RuntimeDirectory; the service's StateDirectory holds the
    default known_hosts; systemd passes the socket to the service."""
    dest = os.path.join(tdir, "root")
    install(build, dest)
    sock = unit_settings(under(dest, UNITDIR + "/tunneld.socket"))
    svc = unit_settings(under(dest, UNITDIR + "/tunneld.service"))
    p = subprocess.run([under(dest, "/usr/bin/tunctl"), "--help"],
                       capture_output=True, text=True, timeout=30)
    default_sock = re.search(r"else (/\S+?)\.?$", p.stdout + p.stderr,
                             re.M)
    assert default_sock, p.stdout + p.stderr
    assert sock["ListenStream"] == [default_sock.group(1)]
    assert os.path.dirname(default_sock.group(1)) == (
        "/run/" + svc["RuntimeDirectory"][0])
    assert "Service" not in sock  # tunneld.socket -> tunneld.service
    assert svc["Type"] == ["notify"]
    assert svc["WatchdogSec"], "no WatchdogSec"
    with open(os.path.join(REPO, "conf/tunnels.conf")) as f:
        kh = re.search(r'^\s*known_hosts\s*=\s*"([^"]+)"', f.read(), re.M)
    assert kh and os.path.dirname(kh.group(1)) == (
        "/var/lib/" + svc["StateDirectory"][0])
