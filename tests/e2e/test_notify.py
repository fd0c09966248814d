"""What systemd hears (through a notify socket of the test's own): the
watchdog keep-alive at half the interval asked for, STATUS= at most four
times a second and always current in the end; and a start-up step that
could block the loop (probing a UNIX listen path) that must not.
"""

import os
import re
import socket
import threading
import time

from e2elib import (SLACK, echo_handler, free_port, local, log_event,
                    log_events, note, tcp_listen)


class Notify:
    """A datagram socket standing in for systemd's notify socket, read by
    a thread from the start so every message gets its arrival time."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.msgs = []          # (monotonic time, text)
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                m = self.sock.recv(4096).decode()
            except socket.timeout:
                continue
            except OSError:
                return
            self.msgs.append((time.monotonic(), m))

    def drain(self, seconds):
        """Let messages arrive for seconds."""
        time.sleep(seconds)

    def lines(self, prefix):
        return [(t, ln) for t, m in list(self.msgs) for ln in m.split("\n")
                if ln.startswith(prefix)]

    def close(self):
        self._stop.set()
        self._t.join(2)
        self.sock.close()


def test_watchdog_keepalive(sshd, env, servers):
    """WATCHDOG_USEC=400000: WATCHDOG=1 every 0.2 s from the loop."""
    n = Notify(env.path("notify.sock"))
    try:
        echo = servers(echo_handler)
        d = env.start([local("t", tcp_listen(free_port()), echo.target)],
                      sshd=sshd, daemon_env={"NOTIFY_SOCKET": n.path,
                                             "WATCHDOG_USEC": "400000"})
        log_event(d.log, r"^watchdog: WATCHDOG=1 every 0\.200 s")
        n.drain(0.1)
        del n.msgs[:]
        n.drain(2.0)
        pings = [t for t, _ in n.lines("WATCHDOG=1")]
        gaps = [b - a for a, b in zip(pings, pings[1:])]
        note("watchdog: %d WATCHDOG=1 in 2 s, largest gap %.3f s" %
             (len(pings), max(gaps) if gaps else -1))
        assert len(pings) >= 8, pings
        assert max(gaps) < 0.4, gaps    # never the whole interval
    finally:
        n.close()


def test_no_watchdog_unless_asked(sshd, env, servers):
    n = Notify(env.path("notify.sock"))
    try:
        echo = servers(echo_handler)
        d = env.start([local("t", tcp_listen(free_port()), echo.target)],
                      sshd=sshd, daemon_env={"NOTIFY_SOCKET": n.path})
        assert d.tunctl("wait", "t", "--timeout", "15")[0] == 0
        n.drain(1.0)
        assert n.lines("WATCHDOG=1") == [], n.msgs
        assert n.lines("READY=1")
    finally:
        n.close()


def test_status_rate_limited_and_current(sshd, env, servers):
    """40 tunnels coming up change state 80 times in a moment: STATUS= goes
    out at most every 0.25 s and its last word is the truth; after
    `tunctl down` of 5 it says 35/35 within the gap."""
    n = Notify(env.path("notify.sock"))
    try:
        echo = servers(echo_handler)
        names = ["t%d" % i for i in range(40)]
        t0 = time.monotonic()
        d = env.start([local(nm, tcp_listen(free_port()), echo.target)
                       for nm in names], sshd=sshd,
                      daemon_env={"NOTIFY_SOCKET": n.path})
        assert d.tunctl("wait", *names, "--timeout", "20")[0] == 0
        n.drain(0.5 + SLACK)
        st = n.lines("STATUS=")
        times = [t for t, _ in st]
        gaps = [b - a for a, b in zip(times, times[1:])]
        note("STATUS= while 40 tunnels came up: %d updates in %.2f s, "
             "smallest gap %.3f s, last %r" % (
                 len(st), times[-1] - t0 if times else -1,
                 min(gaps) if gaps else -1, st[-1][1] if st else None))
        assert st and st[-1][1] == "STATUS=40/40 tunnels up", st
        # Datagrams can bunch up on the way: allow a little on the gap.
        assert all(g > 0.2 for g in gaps), gaps
        del n.msgs[:]
        assert d.tunctl("down", *names[:5])[0] == 0
        n.drain(0.25 + SLACK)
        st = n.lines("STATUS=")
        assert st and st[-1][1] == "STATUS=35/35 tunnels up", st
    finally:
        n.close()


def test_unix_listen_probe_never_blocks(env, sshd, servers, tdir):
    """A UNIX listen path held by a live program whose backlog is full: the
    probe that tells a stale socket file from a live one must not wait for
    room (a blocking connect would hang the daemon at start-up)."""
    path = os.path.join(tdir, "busy.sock")
    owner = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    owner.bind(path)
    owner.listen(0)
    fillers = []
    for _ in range(8):              # fill the backlog, accept nothing
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.setblocking(False)
        try:
            c.connect(path)
        except (BlockingIOError, InterruptedError):
            pass
        fillers.append(c)
    try:
        echo = servers(echo_handler)
        t0 = time.monotonic()
        d = env.start([local("busy", path, echo.target),
                       local("ok", tcp_listen(free_port()), echo.target)],
                      sshd=sshd)
        dt = time.monotonic() - t0
        assert dt < 5 * SLACK, dt
        assert d.tunctl("wait", "ok", "--timeout", "15")[0] == 0
        st = d.tunnel("busy")
        assert st["state"] == "failed", st
        assert re.search(r"in use by another program", st["last_error"]), st
    finally:
        for c in fillers:
            c.close()
        owner.close()


def test_status_not_repeated_when_unchanged(env, servers):
    """A link that keeps failing changes state at every retry, but the
    summary reads the same: STATUS= goes out once, not at every retry."""
    n = Notify(env.path("notify.sock"))
    try:
        dead = free_port()          # nothing listens: every connect fails
        d = env.start([local("t", tcp_listen(free_port()), "127.0.0.1:9")],
                      hosts={"srv": {"address": "127.0.0.1", "port": dead}},
                      known_hosts=False,
                      defaults={"backoff_initial": 0.1, "backoff_max": 0.3},
                      daemon_env={"NOTIFY_SOCKET": n.path})
        n.drain(3.0)
        retries = log_events(d.log, r"link srv: retry \d+ in")
        st = n.lines("STATUS=")
        note("STATUS= during %d retries in 3 s: %d message(s): %s" %
             (len(retries), len(st), [m for _, m in st]))
        assert len(retries) >= 6, retries
        assert [m for _, m in st] == ["STATUS=0/1 tunnels up, 1 waiting"], st
    finally:
        n.close()
