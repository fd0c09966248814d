"""Faults of the SSH server: restart, outage longer than connect_wait,
a frozen server (a peer that vanished without FIN/RST), and `tunctl up`
retrying a link in backoff.  Each test has its own sshd.
"""

import socket
import time

import pytest

from e2elib import (FAST, connect, echo_handler, echo_roundtrip, free_port,
                    local, note, port_bindable, recv_all, tcp_listen)
from e2elib import start_up as e2elib_start_up

SLACK = 2.0     # seconds of scheduling slack on a loaded 2-core machine


def start_up(env, sshd, tunnels, defaults=FAST):
    return e2elib_start_up(env, sshd, tunnels, defaults=defaults)


@pytest.mark.limit(60)
def test_sshd_restart(own_sshd, env, servers):
    echo = servers(echo_handler)
    port = free_port()
    d = start_up(env, own_sshd, [local("pg", tcp_listen(port), echo.target)])
    assert echo_roundtrip(("127.0.0.1", port), b"before") == b"before"

    own_sshd.stop()
    d.wait_tunnel("pg", "waiting", timeout=5)
    assert d.link("srv")["state"] in ("backoff", "connecting")
    # The listener stays bound: nobody else can take the port.
    assert not port_bindable(port)

    # Retries go on, never waiting longer than backoff_max.
    time.sleep(2.5)
    lk = d.link("srv")
    assert lk["retries"] >= 2, lk
    assert lk["last_error"], lk
    if lk["state"] == "backoff":
        assert 0 <= lk["next_retry_seconds"] <= FAST["backoff_max"] + 0.1, lk
    assert not port_bindable(port)

    # A client arriving during the outage waits (connect_wait = 10).
    waiting = connect(("127.0.0.1", port), timeout=20)
    waiting.sendall(b"sent during the outage")
    time.sleep(1)

    own_sshd.start()
    dt = d.wait_tunnel("pg", "up", timeout=15)
    note("tunnel up again %.2fs after sshd returned" % dt)
    assert dt <= FAST["backoff_max"] + SLACK, dt

    # The waiting client went through once the link was back.
    waiting.shutdown(socket.SHUT_WR)
    assert recv_all(waiting) == b"sent during the outage"
    waiting.close()
    assert echo_roundtrip(("127.0.0.1", port), b"after") == b"after"
    assert d.link("srv")["state"] == "up"


@pytest.mark.limit(60)
def test_outage_longer_than_connect_wait(own_sshd, env, servers):
    """A client that connects while the link is down is closed after
    connect_wait seconds when the link does not come back."""
    echo = servers(echo_handler)
    port = free_port()
    d = start_up(env, own_sshd, [local("cw", tcp_listen(port), echo.target,
                                       connect_wait=2)])
    own_sshd.stop()
    d.wait_tunnel("cw", "waiting", timeout=5)
    t0 = time.monotonic()
    s = connect(("127.0.0.1", port), timeout=15)
    s.sendall(b"nobody will hear this")
    try:
        got = recv_all(s)
    except ConnectionResetError:
        got = b""
    dt = time.monotonic() - t0
    s.close()
    note("closed after %.2fs (connect_wait 2)" % dt)
    assert got == b""
    assert 1.5 <= dt <= 2 + SLACK, dt
    assert d.tunnel("cw")["connections"]["active"] == 0
    assert not port_bindable(port)      # still bound


@pytest.mark.limit(60)
def test_sshd_frozen(own_sshd, env, servers):
    echo = servers(echo_handler)
    port = free_port()
    d = start_up(env, own_sshd, [local("pg", tcp_listen(port), echo.target)])
    assert echo_roundtrip(("127.0.0.1", port), b"before") == b"before"
    # An inbound packet per keepalive probe: it is up and answering.
    time.sleep(2.5)
    lk = d.link("srv")
    assert lk["state"] == "up"
    assert isinstance(lk["rtt_ms"], (int, float)), lk    # measured

    frozen = own_sshd.freeze()
    assert len(frozen) >= 2, frozen     # listener and the session
    bound = FAST["keepalive_interval"] * (FAST["keepalive_count_max"] + 1)
    try:
        dt = d.wait_for(lambda: d.link("srv")["state"] != "up",
                        timeout=bound + 10, what="link declared dead")
        note("frozen sshd declared dead after %.2fs (bound %ds)" %
              (dt, bound))
        assert dt <= bound + 1.5, dt
        assert d.tunnel("pg")["state"] != "up"
        assert not port_bindable(port)
    finally:
        own_sshd.thaw()
    t0 = time.monotonic()
    dt = d.wait_tunnel("pg", "up", timeout=20)
    note("up again %.2fs after SIGCONT" % dt)
    # Worst case: an attempt begun while frozen runs into connect_timeout,
    # then one backoff wait.
    assert dt <= FAST["connect_timeout"] + FAST["backoff_max"] + SLACK, dt
    payload = b"y" * 100000
    assert echo_roundtrip(("127.0.0.1", port), payload) == payload


@pytest.mark.limit(60)
def test_up_retries_link_now(own_sshd, env, servers):
    """`tunctl up NAME` on a waiting tunnel retries its link at once
    instead of sleeping out a long backoff."""
    echo = servers(echo_handler)
    port = free_port()
    own_sshd.stop()
    slow = dict(FAST, backoff_initial=20.0, backoff_max=60.0)
    d = env.start([local("pg", tcp_listen(port), echo.target)],
                  sshd=own_sshd, defaults=slow)
    d.wait_for(lambda: d.link("srv")["retries"] >= 1 and
               d.link("srv")["state"] == "backoff", 10,
               what="link in backoff")
    lk = d.link("srv")
    assert lk["next_retry_seconds"] >= 5, lk       # a long wait ahead
    assert d.tunnel("pg")["state"] == "waiting"
    own_sshd.start()
    t0 = time.monotonic()
    code, out, err = d.tunctl("up", "pg")
    assert code == 0, (code, out, err)
    code, out, err = d.tunctl("wait", "pg", "--timeout", "5")
    dt = time.monotonic() - t0
    assert code == 0, (code, out, err, dt)
    note("up %.2fs after tunctl up" % dt)
    assert echo_roundtrip(("127.0.0.1", port), b"now") == b"now"
