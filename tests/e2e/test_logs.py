"""Logs that tell the operator the truth without flooding (issue 13, item 3)
and errors shown with their age (item 2).

- 1,000 refused channel opens in a second: a handful of lines, the
  failures counted in status, the rest summarized per tunnel;
- 50 failed SOCKS CONNECTs: no warning at all;
- a second tunneld on the same control socket names the first one's pid,
  an unknown control_group is an error;
- detaching: refused without a syslog (a private /dev without /dev/log),
  to syslog when one answers there, to a file with -l (reopened on SIGHUP);
- accept-new with a known_hosts whose directories do not exist yet;
- an error that is history: its age in the table, its time in JSON.
"""

import json
import os
import re
import selectors
import signal
import socket
import struct
import subprocess
import threading
import time
import calendar

import pytest

from e2elib import (SLACK, TUNNELD_BIN, dynamic, echo_handler,
                    echo_roundtrip, free_port, local, log_event, note,
                    run_tunctl, socks5_connect, start_up, tail, tcp_listen)

_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} "
                   r"tunneld\[(\w+)\]: (.*)$")


def lines(path, level=None, pattern=""):
    """The messages of the daemon's log at that level (all levels when
    None) that match the regular expression pattern."""
    rx = re.compile(pattern)
    out = []
    with open(path, errors="replace") as f:
        for ln in f:
            m = _LINE.match(ln.rstrip("\n"))
            if m and (level is None or m.group(1) == level) and \
                    rx.search(m.group(2)):
                out.append(m.group(2))
    return out


def summaries(path, prefix):
    """The held-back counts of the rate limiter's summary lines."""
    rx = re.compile(r"^%s: (\d+) more like this in the last \d+ s "
                    r"\(failed connections\)$" % re.escape(prefix))
    return [int(rx.match(m).group(1)) for m in lines(path)
            if rx.match(m)]


def hammer(port, n, timeout):
    """Open n connections to 127.0.0.1:port as fast as the kernel takes
    them (at most 250 at a time) and wait until the daemon closes each;
    return the seconds the opening took and how many it closed."""
    sel = selectors.DefaultSelector()
    opened = closed = 0
    t0 = time.monotonic()
    opening = None
    deadline = t0 + timeout
    while (opened < n or sel.get_map()) and time.monotonic() < deadline:
        while opened < n and len(sel.get_map()) < 250:
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            sel.register(s, selectors.EVENT_READ)
            opened += 1
        if opened == n and opening is None:
            opening = time.monotonic() - t0
        for key, _ in sel.select(0.2):
            s = key.fileobj
            try:
                if s.recv(64) == b"":
                    closed += 1
                else:
                    continue
            except (ConnectionResetError, ConnectionRefusedError):
                closed += 1
            except BlockingIOError:
                continue
            sel.unregister(s)
            s.close()
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    sel.close()
    return opening, closed


@pytest.mark.limit(120)
def test_refused_flood(sshd, env, servers):
    """A local tunnel whose target port is closed: the server refuses
    every channel. 1,000 connections in about a second make at most a
    few log lines at info and none at warning; every failure is counted;
    the summaries add up to the rest and carry the tunnel's prefix."""
    echo = servers(echo_handler)
    p_dead, p_ok, closed_port = free_port(), free_port(), free_port()
    d = start_up(env, sshd, [
        local("dead", tcp_listen(p_dead), tcp_listen(closed_port)),
        local("ok", tcp_listen(p_ok), echo.target)])
    t0 = time.time()
    opening, closed = hammer(p_dead, 1000, timeout=60)
    assert closed == 1000, "the daemon closed %d of 1000" % closed
    d.wait_for(lambda: d.tunnel("dead")["connections"]["failed"] == 1000,
               10 * SLACK, what="1000 failures counted")
    st = d.tunnel("dead")
    assert st["state"] == "up", st
    assert st["connections"]["active"] == 0, st
    assert re.search(r"connect to 127\.0\.0\.1:%d .*failed" % closed_port,
                     st["last_error"]), st
    # Nothing at warning; one line at info, every one at debug.
    assert lines(d.log, "warning", "^tunnel dead:") == []
    info = lines(d.log, "info", "^tunnel dead: connect to")
    assert len(info) == 1, info
    assert len(lines(d.log, "debug", "^tunnel dead: connect to")) == 999
    # The summaries (after each window) account for the other 999.
    d.wait_for(lambda: sum(summaries(d.log, "tunnel dead")) == 999,
               10 + 20 + 5 * SLACK, interval=0.5, what="summaries of 999")
    n = summaries(d.log, "tunnel dead")
    assert len(n) <= 3, n
    assert len(lines(d.log, "info", r"^tunnel dead: \d+ more like this")) \
        == len(n)
    # The error is history on an up tunnel: shown with its age.
    code, out, err = d.tunctl("status", "dead")
    assert code == 0, (code, out, err)
    assert re.search(r"\d+s ago: connect to 127\.0\.0\.1:%d" % closed_port,
                     out), out
    # The other tunnel never noticed.
    assert echo_roundtrip(("127.0.0.1", p_ok), b"fine") == b"fine"
    assert d.tunnel("ok")["last_error"] is None
    note("refused flood: 1000 connections opened in %.2f s, %d log lines "
         "about the tunnel at info or above" % (opening, len(lines(
             d.log, "info", "^tunnel dead:"))))
    assert time.time() - t0 < 100


def test_socks_failures_no_warning(sshd, env):
    """50 SOCKS CONNECTs to a closed port: 50 refusals to the client,
    50 failures in status, one line at info, no warning."""
    p, closed_port = free_port(), free_port()
    d = start_up(env, sshd, [dynamic("socks", tcp_listen(p))])
    for i in range(50):
        s, rep = socks5_connect(("127.0.0.1", p), "127.0.0.1", closed_port)
        assert s is None and rep == 5, (i, rep)
    d.wait_for(lambda: d.tunnel("socks")["connections"]["failed"] == 50,
               5 * SLACK, what="50 failures counted")
    assert lines(d.log, "warning", "^tunnel socks:") == []
    info = lines(d.log, "info", "^tunnel socks: connect to")
    assert len(info) == 1, info
    st = d.tunnel("socks")
    assert st["state"] == "up" and st["last_error_time"], st


def peer_pid(path):
    """The pid of the process listening on the UNIX socket path."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(path)
        cred = s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                            struct.calcsize("3i"))
    return struct.unpack("3i", cred)[0]


def test_second_daemon_names_the_first(sshd, env, servers):
    """A second tunneld on the same control socket exits 1, saying at the
    error level which pid runs there; the first one is not disturbed."""
    echo = servers(echo_handler)
    port = free_port()
    d = start_up(env, sshd, [local("t", tcp_listen(port), echo.target)])
    r = subprocess.run([TUNNELD_BIN, "-d", "-f", d.conf],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 1, (r.returncode, r.stderr)
    want = "another tunneld is running on %s (pid %d)" % (d.sock, d.pid)
    assert re.search(r"tunneld\[error\]: " + re.escape(want), r.stderr), \
        r.stderr
    assert "warning" not in r.stderr, r.stderr
    assert d.tunctl("status", "t")[0] == 0
    assert echo_roundtrip(("127.0.0.1", port), b"still") == b"still"


def test_unknown_control_group_is_an_error(env, tdir):
    """control_group naming no group: an error that says so, exit 1."""
    text = env.conf_text([local("t", "127.0.0.1:%d" % free_port(),
                                "127.0.0.1:9")],
                         hosts={"srv": {"address": "127.0.0.1",
                                        "port": 22}})
    text = text.replace("daemon: {", 'daemon: {\n  control_group = '
                        '"no-such-group-e2e";', 1)
    conf = os.path.join(tdir, "group.conf")
    with open(conf, "w") as f:
        f.write(text)
    r = subprocess.run([TUNNELD_BIN, "-d", "-f", conf], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert re.search(r'tunneld\[error\]: control socket \S+: control_group '
                     r'"no-such-group-e2e" is not a group', r.stderr), \
        r.stderr
    assert not os.path.exists(env.sock)


def private_dev(extra=""):
    """A shell command that gives what follows a private, empty /dev
    (a tmpfs with only null in it, plus extra) in a new mount
    namespace: no /dev/log whatever the machine has."""
    return ("mount -t tmpfs -o mode=755 tmpfs /dev && "
            "mknod -m 666 /dev/null c 1 3 && %s" % extra)


def stop_detached(pid, sock):
    """SIGTERM a detached daemon (our own child's child) and wait until
    it is gone and its socket removed."""
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10 * SLACK
    while os.path.exists("/proc/%d" % pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists("/proc/%d" % pid), "pid %d still runs" % pid
    assert not os.path.exists(sock)


def wait_socket(sock, what):
    deadline = time.monotonic() + 10 * SLACK
    while time.monotonic() < deadline:
        if os.path.exists(sock) and run_tunctl(sock, "status",
                                               timeout=5)[0] in (0, 4):
            return
        time.sleep(0.05)
    raise AssertionError("%s: no control socket %s" % (what, sock))


def test_detach_without_syslog_refused(env, sshd, tdir):
    """Detaching with nothing to log to: exit 1 with the reason on
    stderr, before anything is bound."""
    port = free_port()
    conf = env.write_conf([local("t", tcp_listen(port), "127.0.0.1:9")],
                          sshd=sshd)
    r = subprocess.run(["unshare", "-m", "sh", "-c",
                        private_dev('exec "$0" -f "$1"'), TUNNELD_BIN, conf],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert re.search(r"\[error\]: nothing to log to once detached: no "
                     r"syslog answers on /dev/log; use -l FILE", r.stderr), \
        r.stderr
    assert not os.path.exists(env.sock)
    with socket.socket() as s:          # the listener was never bound
        s.bind(("127.0.0.1", port))


def test_detach_to_syslog(env, sshd, tdir):
    """With a syslog on /dev/log (ours, in a private /dev), the daemon
    detaches and its lines arrive there, tagged tunneld[PID]."""
    logsock = os.path.join(tdir, "syslog.sock")
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(logsock)
    rx.settimeout(0.2)
    got = []
    done = threading.Event()

    def drain():
        # A datagram queue holds 10: a syslog that does not read stalls
        # its writers, as a real one would.
        while not done.is_set():
            try:
                got.append(rx.recv(4096).decode(errors="replace"))
            except socket.timeout:
                pass
    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    port = free_port()
    conf = env.write_conf([local("t", tcp_listen(port), "127.0.0.1:9")],
                          sshd=sshd)
    env.write_known_hosts(sshd.port)
    pid = None
    try:
        r = subprocess.run(["unshare", "-m", "sh", "-c", private_dev(
            'ln -s "$2" /dev/log && exec "$0" -f "$1"'), TUNNELD_BIN, conf,
            logsock], capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, (r.returncode, r.stderr)
        wait_socket(env.sock, "detached tunneld")
        pid = peer_pid(env.sock)
        deadline = time.monotonic() + 10 * SLACK
        while not any("started" in m for m in got) and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        started = [m for m in got if "started" in m]
        assert started, got
        assert re.search(r"tunneld\[%d\]: started, 1 tunnels" % pid,
                         started[0]), started
    finally:
        if pid is not None:
            stop_detached(pid, env.sock)
        done.set()
        reader.join(5)
        rx.close()
    assert any(re.search(r"tunneld\[%d\]: stopped$" % pid, m) for m in got)


def test_detach_with_log_file(env, sshd, servers, tdir):
    """-l FILE: detached, every line in FILE, stamped as under -d; SIGHUP
    reopens it after a rotation."""
    echo = servers(echo_handler)
    port = free_port()
    conf = env.write_conf([local("t", tcp_listen(port), echo.target)],
                          sshd=sshd)
    env.write_known_hosts(sshd.port)
    logf = os.path.join(tdir, "detached.log")
    r = subprocess.run([os.path.abspath(TUNNELD_BIN), "-f", conf, "-l",
                        "detached.log"],
                       cwd=tdir, capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, (r.returncode, r.stderr)
    assert r.stderr == "", r.stderr
    wait_socket(env.sock, "tunneld -l")
    pid = peer_pid(env.sock)
    try:
        with open("/proc/%d/comm" % pid) as f:
            assert f.read().strip() == "tunneld"
        assert run_tunctl(env.sock, "wait", "t", "--timeout", "15")[0] == 0
        assert echo_roundtrip(("127.0.0.1", port), b"via") == b"via"
        log_event(logf, r"^started, 1 tunnels")
        log_event(logf, r"^tunnel t: \w+ -> up")
        # Rotation: move the file away, SIGHUP, a new file appears.
        os.rename(logf, logf + ".1")
        os.kill(pid, signal.SIGHUP)
        deadline = time.monotonic() + 10 * SLACK
        while not os.path.exists(logf) and time.monotonic() < deadline:
            time.sleep(0.05)
        log_event(logf, r"^SIGHUP: reloading", timeout=10 * SLACK)
        assert lines(logf + ".1", None, "SIGHUP") == []
    finally:
        stop_detached(pid, env.sock)
    log_event(logf, r"^stopped$")


def test_log_file_unwritable(env, sshd, tdir):
    """-l naming a file that cannot be opened: exit 1, saying why."""
    conf = env.write_conf([local("t", tcp_listen(free_port()),
                                 "127.0.0.1:9")], sshd=sshd)
    r = subprocess.run([TUNNELD_BIN, "-d", "-f", conf, "-l",
                        os.path.join(tdir, "no", "such", "dir", "x.log")],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "cannot open the log file" in r.stderr and \
        "No such file or directory" in r.stderr, r.stderr
    assert not os.path.exists(env.sock)


def test_accept_new_creates_directories(sshd, env, servers, keys, tdir):
    """accept-new with a known_hosts two directories deep that do not
    exist: they are created, the key is learned, and no warning is
    logged (no false "mkdir ...: No such file or directory")."""
    kh = os.path.join(tdir, "state", "tunneld", "known_hosts")
    echo = servers(echo_handler)
    port = free_port()
    d = env.start([local("t", tcp_listen(port), echo.target)], sshd=sshd,
                  known_hosts=False,
                  defaults={"host_key_policy": "accept-new",
                            "known_hosts": kh})
    code, out, err = d.tunctl("wait", "t", "--timeout", "15")
    assert code == 0, (code, out, err, tail(d.log, 30))
    assert echo_roundtrip(("127.0.0.1", port)) == \
        b"hello through the tunnel\n"
    with open(kh) as f:
        assert keys.host_pub.split()[1] in f.read()
    assert lines(d.log, "warning") == [], lines(d.log, "warning")
    assert lines(d.log, None, "mkdir") == []
    assert lines(d.log, "notice", r"^link srv: learned host key")


def test_error_age_after_recovery(sshd, env, servers):
    """A tunnel that failed (its port taken) and is up again keeps the
    error as history: the table shows its age, JSON its time."""
    echo = servers(echo_handler)
    port = free_port()
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", port))
    blocker.listen(1)
    try:
        d = env.start([local("t", tcp_listen(port), echo.target)],
                      sshd=sshd, defaults={"backoff_initial": 0.5,
                                           "backoff_max": 1.0})
        d.wait_tunnel("t", "failed", timeout=5)
        t_fail = time.time()
        st = d.tunnel("t")
        assert "in use" in st["last_error"], st
        code, out, err = d.tunctl("status", "t")
        assert "ago:" not in out, out           # the reason, not history
    finally:
        blocker.close()
    d.wait_tunnel("t", "up", timeout=5 * SLACK)
    assert echo_roundtrip(("127.0.0.1", port), b"back") == b"back"
    time.sleep(2)
    code, out, err = d.tunctl("status", "t")
    assert code == 0, (code, out, err)
    m = re.search(r"(\d+)s ago: listen \S+: .*in use", out)
    assert m and int(m.group(1)) >= 2, out
    code, out, err = d.tunctl("status", "t", json_out=True)
    t = json.loads(out)["tunnels"][0]
    assert "in use" in t["last_error"], t
    when = calendar.timegm(time.strptime(t["last_error_time"],
                                         "%Y-%m-%dT%H:%M:%SZ"))
    assert abs(when - t_fail) <= 2 + SLACK, (t["last_error_time"], t_fail)
    assert t["last_error_seconds"] >= 2, t
    # Links: the same fields (no error on an up link).
    lk = d.link("srv")
    assert lk["last_error"] is None and lk["last_error_time"] is None and \
        lk["last_error_seconds"] is None, lk
