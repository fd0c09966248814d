"""Fixtures for the tunneld end-to-end tests.

A private OpenSSH sshd on a free 127.0.0.1 port (keys generated per run),
tunneld started per test with a tunnels.conf written for that test, loopback
echo/sink/source servers, and tunctl.  Everything started here is stopped
here, by PID.  The daemon's log (and sshd's) is attached to a failed test's
report.
"""

import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import e2elib  # noqa: E402
import dropbear  # noqa: E402
from netns import topo  # noqa: E402,F401  (the namespace fixture)
from e2elib import (HttpServer, Server, Sshd, Tunneld,  # noqa: E402
                    fingerprint, known_hosts_line, render_conf, ssh_keygen,
                    tail, DEFAULTS)

# Default time limit of one test (seconds); @pytest.mark.limit(S) overrides.
TEST_LIMIT = 90

_logs = []          # (title, path) of the logs of the running test
_counter = itertools.count(1)


def pytest_configure(config):
    config.addinivalue_line("markers",
                            "limit(seconds): time limit of one test")


def pytest_terminal_summary(terminalreporter):
    if e2elib.NOTES:
        terminalreporter.section("measurements")
        for n in e2elib.NOTES:
            terminalreporter.write_line(n)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for title, path in list(_logs):
            rep.sections.append(("%s (%s)" % (title, rep.when),
                                 tail(path, 120)))


class _TestTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise _TestTimeout("test exceeded its time limit")


@pytest.fixture(autouse=True)
def _limit(request):
    """Bound every test in time and forget the previous test's logs."""
    del _logs[:]
    m = request.node.get_closest_marker("limit")
    secs = int(m.args[0]) if m else TEST_LIMIT
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(secs)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture(autouse=True)
def _sanitizer_reports():
    """Fail the test after which a sanitizer wrote a report (ASan, LSan or
    UBSan under make e2e-asan), even if the process exited 0.  Runs its
    check after every other fixture of the test has stopped its daemons."""
    before = set(e2elib.san_reports())
    yield
    new = e2elib.san_reports(before)
    if new:
        pytest.fail("sanitizer report(s) during this test:\n" + "\n".join(
            "--- %s\n%s" % (p, t[-6000:]) for p, t in new.items()),
            pytrace=False)


@pytest.fixture(scope="session")
def workdir():
    """A short session directory (UNIX socket paths must stay < 108)."""
    d = tempfile.mkdtemp(prefix="tde2e.", dir="/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def tdir(workdir):
    """A fresh directory for one test."""
    d = os.path.join(workdir, "t%d" % next(_counter))
    os.makedirs(d)
    return d


@pytest.fixture(scope="session")
def loadgen(workdir):
    """bench/loadgen.c (its delay relay: a WAN in user space), built once
    for the run."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    out = os.path.join(workdir, "loadgen")
    subprocess.run(["cc", "-std=gnu11", "-D_GNU_SOURCE", "-O2", "-o", out,
                    os.path.join(root, "bench", "loadgen.c")], check=True,
                   timeout=60, stdin=subprocess.DEVNULL)
    return out


class Keys:
    pass


@pytest.fixture(scope="session")
def keys(workdir):
    """An ed25519 host key, a client key and its authorized_keys file."""
    k = Keys()
    d = os.path.join(workdir, "keys")
    os.makedirs(d)
    k.host_key = os.path.join(d, "ssh_host_ed25519_key")
    k.host_pub = ssh_keygen(k.host_key, "e2e-host")
    k.host_fp = fingerprint(k.host_key + ".pub")
    k.client_key = os.path.join(d, "id_ed25519")
    k.client_pub = ssh_keygen(k.client_key, "e2e-client")
    k.authorized_keys = os.path.join(d, "authorized_keys")
    with open(k.authorized_keys, "w") as f:
        f.write(k.client_pub + "\n")
    # A second host key: "the wrong key" for the host key tests.
    k.other_key = os.path.join(d, "other_host_key")
    k.other_pub = ssh_keygen(k.other_key, "e2e-other")
    k.other_fp = fingerprint(k.other_key + ".pub")
    return k


def _new_sshd(workdir, keys):
    d = os.path.join(workdir, "sshd%d" % next(_counter))
    s = Sshd(d, keys.host_key, keys.authorized_keys)
    s.start()
    return s


@pytest.fixture(scope="module")
def sshd(workdir, keys):
    """A private sshd shared by the tests of one module (left running)."""
    s = _new_sshd(workdir, keys)
    yield s
    s.stop()


@pytest.fixture
def own_sshd(workdir, keys):
    """A private sshd for one test, which may stop, restart or freeze it."""
    s = _new_sshd(workdir, keys)
    _logs.append(("sshd log", s.log))
    yield s
    s.stop()


def _new_dropbear(workdir, keys, options=()):
    why = dropbear.available()
    assert why is None, why
    d = os.path.join(workdir, "dropbear%d" % next(_counter))
    s = dropbear.Dropbear(d, keys.host_key, keys.authorized_keys,
                          options=options)
    s.start()
    _logs.append(("dropbear log", s.log))
    return s


@pytest.fixture(scope="module")
def dropbear_srv(workdir, keys):
    """A private Dropbear shared by the tests of one module."""
    s = _new_dropbear(workdir, keys)
    yield s
    s.stop()


@pytest.fixture
def own_dropbear(workdir, keys):
    """Factory: private Dropbears for one test (options: Dropbear's flags),
    which it may stop, restart or freeze; all stopped after it."""
    made = []

    def make(options=()):
        s = _new_dropbear(workdir, keys, options)
        made.append(s)
        return s
    yield make
    for s in made:
        s.stop()


@pytest.fixture
def servers():
    """Factory for loopback servers; all are stopped after the test."""
    made = []

    def make(handler, addr=("127.0.0.1", 0), **kw):
        s = Server(handler, addr, **kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.stop()


@pytest.fixture
def http(tdir):
    """Factory for loopback HTTP servers (python http.server) serving a
    random blob.bin; all are stopped after the test."""
    made = []

    def make(host="127.0.0.1", size=256 << 10):
        h = HttpServer(os.path.join(tdir, "www%d" % len(made)), host, size)
        made.append(h)
        return h
    yield make
    for h in made:
        h.stop()


class Env:
    """What a test needs to write a tunnels.conf and start tunneld."""

    def __init__(self, tdir, keys):
        self.dir = tdir
        self.keys = keys
        self.sock = os.path.join(tdir, "ctl.sock")
        self.known_hosts = os.path.join(tdir, "known_hosts")
        self.daemons = []

    def path(self, name):
        return os.path.join(self.dir, name)

    def write_known_hosts(self, port, pub=None, path=None):
        path = path or self.known_hosts
        with open(path, "w") as f:
            f.write(known_hosts_line(port, pub or self.keys.host_pub))
        return path

    def conf_text(self, tunnels, sshd=None, hosts=None, defaults=None,
                  sock=None):
        d = dict(DEFAULTS)
        d["identity"] = self.keys.client_key
        d["known_hosts"] = self.known_hosts
        d.update(defaults or {})
        if hosts is None:
            hosts = {"srv": {"address": "127.0.0.1", "port": sshd.port}}
        return render_conf(sock or self.sock, d, hosts, tunnels)

    def write_conf(self, tunnels, name="tunnels.conf", **kw):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(self.conf_text(tunnels, **kw))
        return p

    def start(self, tunnels, sshd=None, hosts=None, defaults=None,
              known_hosts=True, extra_args=(), conf_name="tunnels.conf",
              sock=None, daemon_env=None, wrap=(), pass_fds=()):
        """Write the conf (and known_hosts) and start tunneld -d -f.
        A second daemon in the same test needs its own sock and
        conf_name. wrap: a program (and its arguments) that execs tunneld,
        with pass_fds inherited."""
        sock = sock or self.sock
        if known_hosts and sshd is not None:
            self.write_known_hosts(sshd.port)
        conf = self.write_conf(tunnels, name=conf_name, sshd=sshd,
                               hosts=hosts, defaults=defaults, sock=sock)
        log = self.path("tunneld%d.log" % (len(self.daemons) + 1))
        _logs.append(("tunneld log" if not self.daemons else
                      "tunneld log %d" % (len(self.daemons) + 1), log))
        with open(conf) as f:
            with open(log, "w") as lf:
                lf.write("=== %s\n%s\n=== log\n" % (conf, f.read()))
        d = Tunneld(conf, sock, log, extra_args, env=daemon_env, wrap=wrap,
                    pass_fds=pass_fds)
        self.daemons.append(d)
        d.start()
        return d


@pytest.fixture
def env(tdir, keys):
    """Start tunneld for this test; SIGTERM it at the end and check that it
    exited 0 and removed its control socket."""
    for b in (e2elib.TUNNELD_BIN, e2elib.TUNCTL_BIN):
        assert os.access(b, os.X_OK), "%s is not built" % b
    e = Env(tdir, keys)
    yield e
    problems = []
    for d in e.daemons:
        if d.proc is None:
            continue            # the test stopped it and checked it
        crashed = d.proc.poll()
        rc = d.stop()
        if crashed is not None:
            problems.append("tunneld died during the test (status %s)" %
                            crashed)
        elif rc != 0:
            problems.append("tunneld exited %s on SIGTERM, not 0" % rc)
        if os.path.exists(d.sock):
            problems.append("control socket %s left behind" % d.sock)
    assert not problems, "; ".join(problems)

