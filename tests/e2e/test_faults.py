"""Faults of the SSH server: restart, outage longer than connect_wait,
a frozen server (a peer that vanished without FIN/RST), and `tunctl up`
retrying a link in backoff.  Each test has its own sshd.
"""

import socket
import time

import pytest

from e2elib import (FAST, SLACK, connect, echo_handler, echo_roundtrip,
                    keepalive_midpoint,
                    free_port, local, log_event, note, port_bindable,
                    recv_all, tcp_listen)
from e2elib import start_up as e2elib_start_up


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
    d.wait_for(lambda: d.link("srv")["retries"] >= 2,
               FAST["backoff_max"] + SLACK, what="a second retry")
    lk = d.link("srv")
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
    d.wait_for(lambda: isinstance(d.link("srv")["rtt_ms"], (int, float)),
               FAST["keepalive_interval"] + SLACK,
               what="a keepalive answered (RTT measured)")
    assert d.link("srv")["state"] == "up"

    bound = FAST["keepalive_interval"] * (FAST["keepalive_count_max"] + 1)
    keepalive_midpoint(d, FAST["keepalive_interval"])
    t_frozen = time.time()
    frozen = own_sshd.freeze()
    try:
        assert len(frozen) >= 2, frozen     # listener and the session
        # The SPEC bound as written, from the daemon's own log stamp.
        # (Or a probe's, if a network change elsewhere on the machine
        # came first: the same death, sooner.)
        dt = log_event(d.log, r"^link srv: no answer (from|to a probe) "
                       r".*link declared dead", after=t_frozen,
                       timeout=bound + 10) - t_frozen
        note("frozen sshd declared dead after %.2fs (bound %ds)" %
              (dt, bound))
        assert dt <= bound, dt
        d.wait_for(lambda: d.link("srv")["state"] != "up", SLACK,
                   what="link not up once declared dead")
        assert d.tunnel("pg")["state"] != "up"
        assert not port_bindable(port)
    finally:
        own_sshd.thaw()
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
