"""Signals: SIGTERM and SIGINT stop the daemon cleanly, SIGHUP reloads
without disturbing anything, and after a SIGKILL a new daemon starts over
the stale sockets.
"""

import os
import signal
import socket
import time

from e2elib import (SLACK, connect, echo_handler, echo_roundtrip, free_port,
                    local, log_event, port_refuses, recv_all, recv_exact,
                    tcp_listen)


def start_up(env, sshd, servers, tdir):
    echo = servers(echo_handler)
    port = free_port()
    upath = os.path.join(tdir, "l.sock")
    d = env.start([local("pg", tcp_listen(port), echo.target),
                   local("ux", upath, echo.target)], sshd=sshd)
    code, out, err = d.tunctl("wait", "pg", "ux", "--timeout", "15")
    assert code == 0, (code, out, err)
    return d, port, upath, echo


def test_sigterm(sshd, env, servers, tdir):
    d, port, upath, echo = start_up(env, sshd, servers, tdir)
    live = connect(("127.0.0.1", port), timeout=10)
    live.sendall(b"ping")
    assert live.recv(4) == b"ping"
    sessions_before = len(sshd.sessions())
    t0 = time.monotonic()
    rc = d.stop(signal.SIGTERM, timeout=10)
    dt = time.monotonic() - t0
    assert rc == 0, rc
    assert dt < 5, dt
    assert not os.path.exists(d.sock)
    assert port_refuses(port)
    try:
        assert recv_all(live) == b""
    except ConnectionResetError:
        pass
    live.close()
    # The SSH session was disconnected: sshd's session process goes away.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and \
            len(sshd.sessions()) >= sessions_before:
        time.sleep(0.1)
    assert len(sshd.sessions()) < sessions_before


def test_sigint(sshd, env, servers, tdir):
    d, port, upath, echo = start_up(env, sshd, servers, tdir)
    assert d.stop(signal.SIGINT, timeout=10) == 0
    assert not os.path.exists(d.sock)
    assert port_refuses(port)


def test_sighup_does_not_kill(sshd, env, servers, tdir):
    """SIGHUP with an unchanged file reloads it and keeps everything as it
    was: control socket, listeners, link and open connections (the reload
    tests in test_reload.py change the file)."""
    d, port, upath, echo = start_up(env, sshd, servers, tdir)
    live = connect(("127.0.0.1", port), timeout=10)
    live.sendall(b"before")
    assert recv_exact(live, 6) == b"before"
    os.kill(d.pid, signal.SIGHUP)
    log_event(d.log, r"^SIGHUP: reloading ", timeout=SLACK)
    log_event(d.log, r"^reload: kept 2 in [0-9.]+ ms$", timeout=SLACK)
    assert d.alive()
    code, out, err = d.tunctl("status")
    assert code == 0, (code, out, err)
    assert echo_roundtrip(("127.0.0.1", port), b"hup") == b"hup"
    assert echo_roundtrip(upath, b"unix hup") == b"unix hup"
    # The connection open across the SIGHUP still carries data both ways.
    live.sendall(b"after")
    assert recv_exact(live, 5) == b"after"
    live.shutdown(socket.SHUT_WR)
    assert recv_all(live) == b""
    live.close()


def test_restart_after_sigkill(sshd, env, servers, tdir):
    """A daemon killed hard leaves its socket files; the next one starts."""
    d, port, upath, echo = start_up(env, sshd, servers, tdir)
    d.proc.kill()
    d.proc.wait(5)
    d.stop()                    # reaped; the fixture leaves it alone
    assert os.path.exists(d.sock)       # stale
    code, out, err = d.tunctl("status")
    assert code == 3, (code, out, err)
    d2 = env.start([local("pg", tcp_listen(port), echo.target),
                    local("ux", upath, echo.target)], sshd=sshd,
                   conf_name="again.conf")
    code, out, err = d2.tunctl("wait", "pg", "ux", "--timeout", "15")
    assert code == 0, (code, out, err)
    assert echo_roundtrip(upath, b"unix again") == b"unix again"
    assert echo_roundtrip(("127.0.0.1", port), b"tcp again") == b"tcp again"
