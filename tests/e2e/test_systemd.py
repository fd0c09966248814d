"""tunneld under a real systemd, booted in a container (container.py):
the installed units as "make install" stages them, the users of the
sysusers file, an sshd and the echo server inside the container.

  - systemctl start returns after READY=1 with the tunnel serving, the
    status line reaches systemd, stop ends with Result=success;
  - systemctl reload applies an added tunnel, an open connection on
    another survives;
  - a frozen daemon (SIGSTOP) misses WatchdogSec=2 and systemd restarts it;
  - tunneld.socket alone: tunctl status starts the service;
  - systemctl restart under a client loop refuses no client (FDSTORE);
  - port 80 through a socket unit, for a daemon without capabilities.

One container for the module, always stopped (by PID) at the end.
"""

import fcntl
import json
import os
import shutil
import subprocess
import threading
import time

import pytest

import container
import e2elib
from e2elib import (DEFAULTS, SLACK, Server, echo_handler, known_hosts_line,
                    local, note, render_conf)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BUILD = os.environ.get("TUNNELD_CTR_BUILD", "build-ctr")
SSHD_PORT = 2200
CTL_SOCK = "/run/tunneld/control.sock"
KEY = "/etc/tunneld/id_ed25519"
KNOWN_HOSTS = "/var/lib/tunneld/known_hosts"


@pytest.fixture(autouse=True)
def _container_available():
    """No silent skip: without root or systemd-nspawn (make deps installs
    systemd-container) these tests fail and say why."""
    why = container.available()
    assert why is None, why


def _make(*args):
    # One make at a time in BUILD: parallel runs share the directory.
    os.makedirs(os.path.join(REPO, BUILD), exist_ok=True)
    with open(os.path.join(REPO, BUILD, ".e2e-lock"), "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        return _make_locked(*args)


def _make_locked(*args):
    jobs = "-j%d" % (os.cpu_count() or 2)
    p = subprocess.run(["make", jobs, "-C", REPO, "B=" + BUILD] + list(args),
                       capture_output=True, text=True, timeout=300,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == 0, "make %s:\n%s%s" % (" ".join(args),
                                                   p.stdout[-3000:],
                                                   p.stderr[-3000:])


class Box:
    """The booted container and what the tests put into it."""

    def __init__(self, ctr, echo, keys):
        self.ctr = ctr
        self.echo = echo
        self.keys = keys

    def conf(self, tunnels):
        d = dict(DEFAULTS)
        d["identity"] = KEY
        d["known_hosts"] = KNOWN_HOSTS
        return render_conf(CTL_SOCK, d, {"srv": {"address": "127.0.0.1",
                                                 "port": SSHD_PORT}},
                           tunnels)

    def write_conf(self, tunnels):
        self.ctr.write("/etc/tunnels.conf", self.conf(tunnels))

    def roundtrip(self, port, payload=b"through the container's tunnel\n"):
        return self.ctr.in_net(e2elib.echo_roundtrip, ("127.0.0.1", port),
                               payload)

    def connect(self, port):
        return self.ctr.in_net(e2elib.connect, ("127.0.0.1", port), 15.0)

    def show(self, *props, unit="tunneld.service"):
        return self.ctr.show(unit, *props)

    def status_text(self):
        return self.show("StatusText")["StatusText"]

    def wait_status(self, text, timeout):
        return self.ctr.wait_for(lambda: self.status_text() == text,
                                 timeout, "StatusText=%r (now %r)" %
                                 (text, self.status_text()))

    def reset(self):
        """tunneld.service and .socket stopped, failed state forgotten."""
        self.ctr.systemctl("stop", "tunneld.service", "tunneld.socket",
                           check=False)
        self.ctr.systemctl("reset-failed", "tunneld.service",
                           "tunneld.socket", check=False)
        self.ctr.run("rm", "-rf", "/etc/systemd/system/tunneld.service.d")
        self.ctr.systemctl("daemon-reload")

    def fail_info(self):
        return ("\n--- journal of tunneld.service\n%s"
                "\n--- journal of test-sshd\n%s" %
                (self.ctr.journal("tunneld.service"),
                 self.ctr.journal("test-sshd.service", 20)))


@pytest.fixture(scope="module")
def box(workdir, keys):
    """Build, stage "make install", boot the container, set it up."""
    t0 = time.monotonic()
    _make()
    top = os.path.join(workdir, "ctr")
    stage = os.path.join(top, "stage")
    shutil.rmtree(top, ignore_errors=True)
    os.makedirs(top)
    _make("install", "DESTDIR=" + stage, "PREFIX=/usr")
    t_build = time.monotonic() - t0
    ctr = container.Container(
        os.path.join(top, "run"),
        overlays=[("/usr", os.path.join(stage, "usr"))],
        binds=[(stage, "/e2e/stage"), (os.path.dirname(keys.host_key),
                                       "/e2e/keys")])
    ctr.boot()
    echo = None
    try:
        note("container: build+stage %.1fs, boot to %s %.2fs" %
             (t_build, ctr.state, ctr.boot_seconds))
        c = ctr
        # The sysusers file came in with the overlay and ran at boot; once
        # more, as an installation would.
        c.run("systemd-sysusers")
        c.run("systemd-tmpfiles", "--create",
              "/usr/lib/tmpfiles.d/tunneld.conf")
        c.sh("cp /e2e/stage/lib/systemd/system/tunneld.service "
             "/e2e/stage/lib/systemd/system/tunneld.socket "
             "/etc/systemd/system/")
        c.run("install", "-o", "tunneld", "-g", "tunneld", "-m", "0600",
              "/e2e/keys/id_ed25519", KEY)
        c.write(KNOWN_HOSTS, known_hosts_line(SSHD_PORT, keys.host_pub),
                mode="0600", owner="tunneld:tunneld")
        c.systemctl("daemon-reload")
        c.start_sshd(SSHD_PORT)
        # The echo server: a socket of the container's network namespace.
        echo = c.in_net(Server, echo_handler, ("127.0.0.1", 0))
        yield Box(c, echo, keys)
    finally:
        if echo is not None:
            echo.stop()
        t1 = time.monotonic()
        ctr.stop()
        note("container: stopped in %.2fs" % (time.monotonic() - t1))


@pytest.fixture
def b(box):
    box.reset()
    yield box
    box.reset()


def _check(b, fn):
    try:
        fn()
    except BaseException as e:
        raise AssertionError("%s%s" % (e, b.fail_info())) from e


def test_start_ready_status_stop(b):
    """systemctl start returns after READY=1 with the tunnel listening and
    serving; StatusText is the daemon's "1/1 tunnels up"; after stop the
    Result is success."""
    def body():
        b.write_conf([local("one", "127.0.0.1:7001", b.echo.target)])
        t0 = time.monotonic()
        b.ctr.systemctl("start", "tunneld.service")
        t_start = time.monotonic() - t0
        p = b.show("ActiveState", "SubState", "MainPID", "Type")
        assert (p["ActiveState"], p["SubState"]) == ("active", "running"), p
        assert p["Type"] == "notify"
        # READY=1 comes after the listeners are bound: no retry needed.
        s = b.connect(7001)
        s.close()
        assert b.roundtrip(7001) == b"through the container's tunnel\n"
        t1 = time.monotonic()
        b.wait_status("1/1 tunnels up", 10 * SLACK)
        note("systemd: start returned in %.2fs, echo through the tunnel ok,"
             " StatusText '1/1 tunnels up' %.2fs after that" %
             (t_start, time.monotonic() - t1))
        b.ctr.systemctl("stop", "tunneld.service")
        p = b.show("ActiveState", "Result", "ExecMainStatus")
        assert p["ActiveState"] == "inactive", p
        assert p["Result"] == "success", p
        assert p["ExecMainStatus"] == "0", p
    _check(b, body)


def test_reload_adds_tunnel_open_connection_survives(b):
    """systemctl reload (tunneld -t, then SIGHUP) applies an added tunnel;
    a connection open on the other stays up across it."""
    def body():
        one = local("one", "127.0.0.1:7001", b.echo.target)
        b.write_conf([one])
        b.ctr.systemctl("start", "tunneld.service")
        pid = b.show("MainPID")["MainPID"]
        s = b.connect(7001)
        try:
            s.sendall(b"before ")
            assert e2elib.recv_exact(s, 7) == b"before "
            b.write_conf([one, local("two", "127.0.0.1:7002",
                                     b.echo.target)])
            t0 = time.monotonic()
            b.ctr.systemctl("reload", "tunneld.service")
            t_reload = time.monotonic() - t0
            p = b.show("ActiveState", "MainPID")
            assert p["ActiveState"] == "active", p
            assert p["MainPID"] == pid, "reload restarted the daemon"
            assert b.roundtrip(7002, b"the new one\n") == b"the new one\n"
            s.sendall(b"after\n")
            assert e2elib.recv_exact(s, 6) == b"after\n"
        finally:
            s.close()
        b.wait_status("2/2 tunnels up", 10 * SLACK)
        note("systemd: reload returned in %.2fs; added tunnel serves, open "
             "connection survived, StatusText '2/2 tunnels up'" % t_reload)
    _check(b, body)


def test_watchdog_restarts_frozen_daemon(b):
    """WatchdogSec=2 (drop-in): a SIGSTOPped daemon misses WATCHDOG=1;
    systemd kills it (Result=watchdog) and Restart=on-failure brings up a
    new one that serves the tunnel again."""
    def body():
        b.ctr.write("/etc/systemd/system/tunneld.service.d/e2e.conf",
                    "[Service]\nWatchdogSec=2\nTimeoutAbortSec=3\n"
                    "LimitCORE=0\n")
        b.ctr.systemctl("daemon-reload")
        b.write_conf([local("one", "127.0.0.1:7001", b.echo.target)])
        b.ctr.systemctl("start", "tunneld.service")
        p = b.show("MainPID", "NRestarts", "WatchdogUSec")
        assert p["WatchdogUSec"] in ("2s", "2000000"), p
        pid, n0 = int(p["MainPID"]), int(p["NRestarts"])
        assert b.roundtrip(7001) == b"through the container's tunnel\n"
        # pid is the container's PID namespace's number: signal it there.
        b.ctr.run("kill", "-STOP", str(pid))
        t0 = time.monotonic()

        def restarted():
            q = b.show("MainPID", "NRestarts", "ActiveState")
            if (q["ActiveState"] == "active" and q["MainPID"] not in
                    ("0", str(pid)) and int(q["NRestarts"]) > n0):
                return q
            return None
        # 2 s watchdog, kill, RestartSec=2s, start: ~4-5 s.
        q = b.ctr.wait_for(restarted, 15 + 5 * SLACK,
                           "a restart after the watchdog")
        t = time.monotonic() - t0
        assert int(q["NRestarts"]) == n0 + 1, q
        assert b.roundtrip(7001) == b"through the container's tunnel\n"
        j = b.ctr.journal("tunneld.service", 200)
        assert "Watchdog timeout" in j, j
        note("systemd: SIGSTOPped daemon (WatchdogSec=2) replaced after "
             "%.1fs: MainPID %d -> %s, NRestarts %d -> %s" %
             (t, pid, q["MainPID"], n0, q["NRestarts"]))
    _check(b, body)


def test_socket_activation_by_tunctl(b):
    """Only tunneld.socket started: the first tunctl command starts
    tunneld.service, which takes the socket and answers."""
    def body():
        b.write_conf([local("one", "127.0.0.1:7001", b.echo.target)])
        b.ctr.systemctl("start", "tunneld.socket")
        assert b.show("ActiveState")["ActiveState"] == "inactive"
        st = b.ctr.run("stat", "-c", "%U:%G %a", CTL_SOCK).stdout.split()
        assert st == ["tunneld:tunnel", "660"], st
        t0 = time.monotonic()
        r = b.ctr.run("tunctl", "status", check=False, timeout=30)
        t = time.monotonic() - t0
        assert r.returncode == 0, r
        assert "one" in r.stdout, r.stdout
        p = b.show("ActiveState", "MainPID", "TriggeredBy")
        assert p["ActiveState"] == "active", p
        assert "tunneld.socket" in p["TriggeredBy"], p
        assert b.roundtrip(7001) == b"through the container's tunnel\n"
        # The service keeps systemd's socket: stop it, the socket stays.
        b.ctr.systemctl("stop", "tunneld.service")
        assert b.show("ActiveState", unit="tunneld.socket")[
            "ActiveState"] == "active"
        b.ctr.run("test", "-S", CTL_SOCK)
        note("systemd: socket activation: tunctl status answered in %.2fs "
             "(service started by tunneld.socket)" % t)
    _check(b, body)


def _journal_since(b, cursor, grep):
    """tunneld.service's journal lines after cursor matching grep; with
    cursor None, the cursor of the journal's end."""
    if cursor is None:
        r = b.ctr.run("journalctl", "-n", "0", "--show-cursor", "--no-pager",
                      check=False)
        return r.stdout.strip().rsplit("-- cursor: ", 1)[-1]
    r = b.ctr.run("journalctl", "-u", "tunneld.service", "-o", "cat",
                  "--no-pager", "--after-cursor", cursor, "-g", grep,
                  check=False)
    return r.stdout.splitlines()


def test_fdstore_restart_refuses_no_client(b):
    """systemctl restart (an upgrade) while clients connect in a loop: the
    listener waits in systemd's file descriptor store, the kernel queues
    the clients, the new daemon serves them. No refusal."""
    def body():
        b.write_conf([local("one", "127.0.0.1:7001", b.echo.target)])
        cursor = _journal_since(b, None, None)
        b.ctr.systemctl("start", "tunneld.service")
        assert b.roundtrip(7001) == b"through the container's tunnel\n"
        p = b.show("NFileDescriptorStore", "FileDescriptorStoreMax")
        assert p["NFileDescriptorStore"] == "1", p
        stop, res = threading.Event(), {}

        def clients():
            res.update(b.ctr.in_net(e2elib.echo_loop, ("127.0.0.1", 7001),
                                    stop, timeout=180))
        t = threading.Thread(target=clients, daemon=True)
        t.start()
        try:
            time.sleep(1.0)
            pids, times = [b.show("MainPID")["MainPID"]], []
            for _ in range(3):
                t0 = time.monotonic()
                b.ctr.systemctl("restart", "tunneld.service")
                times.append(time.monotonic() - t0)
                pids.append(b.show("MainPID")["MainPID"])
                time.sleep(1.0)
        finally:
            stop.set()
            t.join(60)
        assert len(set(pids)) == 4, pids
        assert res, "the client loop did not finish"
        kept = _journal_since(b, cursor, "tunnel one: listening on the "
                              "socket systemd kept across the restart")
        assert len(kept) == 3, kept
        note("systemd: 3 restarts (%s s) under a client loop: %d echoes, "
             "%d refused, %d cut in flight at a stop, slowest echo %.2fs" %
             (", ".join("%.2f" % x for x in times), res["ok"],
              res["refused"], res["cut"], res["slowest"]))
        assert res["refused"] == 0, res
        assert res["cut"] <= 3, res["errors"]
        assert res["ok"] > 20, res
    _check(b, body)


def test_privileged_port_by_socket_unit_without_capabilities(b):
    """A socket unit binds 127.0.0.1:80 for the tunnel "web"
    (FileDescriptorName=web); the daemon, with no capability at all, serves
    it, while port 81 that it must bind itself is refused to it."""
    web = "/etc/systemd/system/tunneld-web.socket"

    def body():
        b.ctr.write(web, "[Socket]\nListenStream=127.0.0.1:80\n"
                    "FileDescriptorName=web\nService=tunneld.service\n")
        b.ctr.write("/etc/systemd/system/tunneld.service.d/e2e.conf",
                    "[Service]\nCapabilityBoundingSet=\n"
                    "AmbientCapabilities=\n")
        b.ctr.systemctl("daemon-reload")
        b.write_conf([local("web", "127.0.0.1:80", b.echo.target),
                      local("self", "127.0.0.1:81", b.echo.target)])
        b.ctr.systemctl("start", "tunneld-web.socket")
        b.ctr.systemctl("start", "tunneld.service")
        pid = b.show("MainPID")["MainPID"]
        caps = b.ctr.run("grep", "^Cap", "/proc/%s/status" % pid).stdout
        assert "CapEff:\t0000000000000000" in caps, caps
        assert "CapBnd:\t0000000000000000" in caps, caps
        assert b.roundtrip(80) == b"through the container's tunnel\n"
        r = b.ctr.run("tunctl", "--json", "status", check=False)
        st = {t["name"]: t for t in json.loads(r.stdout)["tunnels"]}
        assert st["web"]["state"] == "up", st
        assert st["self"]["state"] == "failed", st
        assert "CAP_NET_BIND_SERVICE" in st["self"]["last_error"], st
        note("systemd: port 80 from tunneld-web.socket served by a daemon "
             "with CapEff 0; port 81 it binds itself: %s" %
             st["self"]["last_error"])
    try:
        _check(b, body)
    finally:
        b.ctr.systemctl("stop", "tunneld.service", "tunneld-web.socket",
                        check=False)
        b.ctr.run("rm", "-f", web)
        b.ctr.systemctl("daemon-reload")
