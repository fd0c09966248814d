"""Sockets from systemd, on the host (the same under a real systemd is in
test_systemd.py):

  - a tunnel listener passed by a socket unit (FileDescriptorName= the
    tunnel's name, here by systemd-socket-activate) is used, not bound
    again, and kept for the next `up` after a `down`;
  - one that listens elsewhere than its tunnel fails that tunnel with a
    clear error; one no tunnel claims is named in a warning;
  - a control socket passed as "control" must be at the control path;
  - FDSTORE: each listener tunneld binds goes to the notify socket with
    FDSTORE=1 (leaves it with FDSTOREREMOVE=1 on `down`, stays there at a
    stop), and a daemon given it back as systemd would (LISTEN_FDS) after
    a restart serves the clients that connected meanwhile: no refusal.
"""

import array
import os
import socket
import sys
import threading
import time

import pytest

from e2elib import (SLACK, Tunneld, echo_handler, echo_loop, echo_roundtrip,
                    free_port, local, log_event, log_events, note,
                    tcp_listen)

# Does what systemd does for a service its socket units trigger: listening
# sockets at descriptors 3, 4, ..., LISTEN_FDS, LISTEN_PID (exec keeps the
# PID) and LISTEN_FDNAMES; then execs tunneld. (systemd-socket-activate
# would wait for a first connection before starting it.)
ACTIVATE = """
import os, socket, sys
args = sys.argv[1:]
cut = args.index("--")
pairs, argv = args[:cut], args[cut + 1:]
names, keep = [], []
for i in range(0, len(pairs), 2):
    addr, name = pairs[i], pairs[i + 1]
    if addr.startswith("/"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(addr)
    else:
        host, port = addr.rsplit(":", 1)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, int(port)))
    s.listen(64)
    keep.append(s)
    names.append(name)
for i, s in enumerate(keep):
    os.dup2(s.fileno(), 100 + i)
for i, s in enumerate(keep):
    os.dup2(100 + i, 3 + i)     # inheritable, whatever number s had
    os.close(100 + i)
os.environ.update(LISTEN_FDS=str(len(names)), LISTEN_PID=str(os.getpid()),
                  LISTEN_FDNAMES=":".join(names))
os.execv(argv[0], argv)
"""


def activate(*listen):
    """A wrapper passing one listening socket per (address, name): what
    socket units with FileDescriptorName= do."""
    argv = [sys.executable, "-c", ACTIVATE]
    for addr, name in listen:
        argv += [addr, name]
    return argv + ["--"]


class Store:
    """A notify socket that keeps the descriptors sent with FDSTORE=1, as
    systemd's file descriptor store does."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.msgs = []          # texts, in order
        self.fds = {}           # FDNAME -> our copy of the socket
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        fdsize = array.array("i").itemsize
        while not self._stop.is_set():
            try:
                m, anc, _, _ = self.sock.recvmsg(
                    4096, socket.CMSG_SPACE(4 * fdsize))
            except socket.timeout:
                continue
            except OSError:
                return
            fds = array.array("i")
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[:len(data) - len(data) % fdsize])
            text = m.decode()
            kv = dict(ln.split("=", 1) for ln in text.split("\n")
                      if "=" in ln)
            if kv.get("FDSTORE") == "1" and fds:
                old = self.fds.pop(kv.get("FDNAME", "stored"), None)
                if old is not None:
                    old.close()
                self.fds[kv.get("FDNAME", "stored")] = socket.socket(
                    fileno=fds[0])
                for fd in fds[1:]:
                    os.close(fd)
            else:
                for fd in fds:
                    os.close(fd)
            if kv.get("FDSTOREREMOVE") == "1":
                old = self.fds.pop(kv.get("FDNAME", ""), None)
                if old is not None:
                    old.close()
            self.msgs.append(text)

    def wait(self, pred, timeout, what):
        t0 = time.monotonic()
        while not pred():
            assert time.monotonic() - t0 < timeout, \
                "timed out waiting for %s; messages: %r" % (what, self.msgs)
            time.sleep(0.02)

    def close(self):
        self._stop.set()
        self._t.join(2)
        self.sock.close()
        for s in self.fds.values():
            s.close()


def test_listener_from_a_socket_unit(sshd, env, servers):
    """The passed socket is the tunnel's listener; after down and up it is
    taken again (a socket unit's socket stays systemd's)."""
    echo = servers(echo_handler)
    port = free_port()
    d = env.start([local("web", tcp_listen(port), echo.target)], sshd=sshd,
                  wrap=activate(("127.0.0.1:%d" % port, "web")))
    log_event(d.log, r"tunnel web: listening on the socket of a systemd "
              r"socket unit")
    assert d.tunctl("wait", "web", "--timeout", "15")[0] == 0
    assert echo_roundtrip(("127.0.0.1", port), b"via systemd's socket\n") \
        == b"via systemd's socket\n"
    assert d.tunctl("down", "web")[0] == 0
    assert d.tunnel("web")["state"] == "down"
    assert d.tunctl("up", "web")[0] == 0
    assert d.tunctl("wait", "web", "--timeout", "15")[0] == 0
    assert len(log_events(d.log, r"tunnel web: listening on the socket of "
                          r"a systemd socket unit")) == 2
    assert echo_roundtrip(("127.0.0.1", port), b"again\n") == b"again\n"


def test_socket_unit_socket_elsewhere_or_unclaimed(sshd, env, servers):
    """A socket named after a tunnel but bound elsewhere fails that tunnel
    (the others run); a name no tunnel has is warned about."""
    echo = servers(echo_handler)
    want, other, spare = free_port(), free_port(), free_port()
    ok = free_port()
    d = env.start([local("web", tcp_listen(want), echo.target),
                   local("ok", tcp_listen(ok), echo.target)], sshd=sshd,
                  wrap=activate(("127.0.0.1:%d" % other, "web"),
                                ("127.0.0.1:%d" % spare, "nosuch")))
    assert d.tunctl("wait", "ok", "--timeout", "15")[0] == 0
    d.wait_tunnel("web", "failed", timeout=10)
    err = d.tunnel("web")["last_error"]
    assert ("the socket systemd passed (FileDescriptorName=) listens on "
            "127.0.0.1:%d" % other) in err, err
    log_event(d.log, r'systemd: passed a socket named "nosuch", but there '
              r"is no tunnel of that name")
    note("sdfds: misplaced socket: %s" % err)


def test_control_socket_passed_must_be_at_the_control_path(env, tdir):
    """A socket passed as "control" at another path: tunneld says both
    paths and does not start; at the right path it is used."""
    conf = env.write_conf([local("t", tcp_listen(free_port()),
                                 "127.0.0.1:9")],
                          hosts={"srv": {"address": "127.0.0.1",
                                         "port": 9}})
    wrong = env.path("elsewhere.sock")
    d = Tunneld(conf, env.sock, env.path("wrong.log"),
                wrap=activate((wrong, "control")))
    with pytest.raises(RuntimeError) as e:
        d.start(timeout=5 * SLACK)
    assert d.proc.wait(5) == 1
    assert ("systemd passed a control socket at %s, but tunneld's is %s" %
            (wrong, env.sock)) in str(e.value), str(e.value)

    d = Tunneld(conf, env.sock, env.path("right.log"),
                wrap=activate((env.sock, "control")))
    try:
        d.start(timeout=5 * SLACK)
        log_event(d.log, r"control: using the socket passed by systemd")
        assert d.tunctl("status")[0] in (0, 4)
    finally:
        assert d.stop() == 0
        # systemd's socket: tunneld leaves the file to its owner.
        os.unlink(env.sock)


# Gives tunneld the stored socket as systemd does after a restart:
# descriptor 3, LISTEN_PID its own (exec keeps the PID), LISTEN_FDNAMES.
RESTORE = ("import os, sys\n"
           "os.dup2(int(sys.argv[1]), 3)\n"
           "if int(sys.argv[1]) != 3: os.close(int(sys.argv[1]))\n"
           "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid()),\n"
           "                  LISTEN_FDNAMES=sys.argv[2])\n"
           "os.execv(sys.argv[3], sys.argv[3:])\n")



class Clients:
    """echo_loop in a thread: clients connecting while the daemon goes."""

    def __init__(self, port):
        self.stop_ev = threading.Event()
        self.r = {}
        self._t = threading.Thread(target=lambda: self.r.update(echo_loop(
            ("127.0.0.1", port), self.stop_ev)), daemon=True)
        self._t.start()

    def stop(self):
        self.stop_ev.set()
        self._t.join(30)
        return self.r


def test_fdstore_restart_refuses_no_client(sshd, env, servers):
    echo = servers(echo_handler)
    store = Store(env.path("notify.sock"))
    port = free_port()
    tunnels = [local("t", tcp_listen(port), echo.target)]
    clients = None
    try:
        d = env.start(tunnels, sshd=sshd,
                      daemon_env={"NOTIFY_SOCKET": store.path})
        store.wait(lambda: "tunnel/t" in store.fds, 5 * SLACK,
                   "FDSTORE=1 of tunnel t")
        kept = store.fds["tunnel/t"]
        assert kept.getsockname() == ("127.0.0.1", port)
        assert kept.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        assert d.tunctl("wait", "t", "--timeout", "15")[0] == 0

        clients = Clients(port)
        time.sleep(0.5)
        assert d.stop() == 0
        t_gap = time.monotonic()
        # A stop keeps the socket stored (the next daemon takes it).
        assert "tunnel/t" in store.fds, store.msgs
        assert not any("FDSTOREREMOVE" in m for m in store.msgs), store.msgs
        time.sleep(0.5)         # clients queue in the kernel meanwhile
        fd = store.fds["tunnel/t"].fileno()
        d2 = env.start(tunnels, sshd=sshd, conf_name="tunnels2.conf",
                       daemon_env={"NOTIFY_SOCKET": store.path},
                       wrap=[sys.executable, "-c", RESTORE, str(fd),
                             "tunnel/t"], pass_fds=(fd,))
        log_event(d2.log, r"tunnel t: listening on the socket systemd kept "
                  r"across the restart")
        assert d2.tunctl("wait", "t", "--timeout", "15")[0] == 0
        t_up = time.monotonic() - t_gap
        time.sleep(0.5)
        r = clients.stop()
        clients = None
        note("sdfds: restart with the stored socket: %d echoes, %d refused, "
             "%d cut at the stop, slowest %.2fs (daemon away %.2fs)" %
             (r["ok"], r["refused"], r["cut"], r["slowest"], t_up))
        assert r["refused"] == 0
        # The one connection in flight when the old daemon stopped.
        assert r["cut"] <= 1, r["errors"]
        assert r["ok"] > 10
        assert r["slowest"] >= 0.5      # one waited out the gap, queued

        # down closes it for good: out of the store.
        assert d2.tunctl("down", "t")[0] == 0
        store.wait(lambda: "tunnel/t" not in store.fds, 5 * SLACK,
                   "FDSTOREREMOVE=1 of tunnel t")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), 2).close()
    finally:
        if clients is not None:
            clients.stop()
        store.close()


def test_fdstore_socket_of_a_changed_tunnel_is_replaced(sshd, env, servers):
    """After a restart with a new listen port the stored socket is not the
    tunnel's: dropped from the store, a new one bound and stored."""
    echo = servers(echo_handler)
    store = Store(env.path("notify.sock"))
    try:
        old, new = free_port(), free_port()
        d = env.start([local("t", tcp_listen(old), echo.target)],
                      sshd=sshd, daemon_env={"NOTIFY_SOCKET": store.path})
        store.wait(lambda: "tunnel/t" in store.fds, 5 * SLACK, "FDSTORE")
        assert d.stop() == 0
        fd = store.fds["tunnel/t"].fileno()
        n = len(store.msgs)
        d2 = env.start([local("t", tcp_listen(new), echo.target)],
                       sshd=sshd, conf_name="tunnels2.conf",
                       daemon_env={"NOTIFY_SOCKET": store.path},
                       wrap=[sys.executable, "-c", RESTORE, str(fd),
                             "tunnel/t"], pass_fds=(fd,))
        assert d2.tunctl("wait", "t", "--timeout", "15")[0] == 0
        log_event(d2.log, r"tunnel t: listen 127\.0\.0\.1:%d: the socket "
                  r"stored before the restart listens on 127\.0\.0\.1:%d; "
                  r"binding a new one" % (new, old))
        store.wait(lambda: store.fds.get("tunnel/t") is not None and
                   store.fds["tunnel/t"].getsockname()[1] == new,
                   5 * SLACK, "the new socket stored")
        assert "FDSTOREREMOVE=1\nFDNAME=tunnel/t" in store.msgs[n:]
        assert echo_roundtrip(("127.0.0.1", new), b"x\n") == b"x\n"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", old), 2).close()
    finally:
        store.close()
