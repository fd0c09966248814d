"""Dynamic tunnels (ssh -D): a SOCKS 4, 4a and 5 server here whose
connections are opened from the far side, issue 5.  Clients: curl, OpenBSD
nc -X, and raw sockets for what the tools do not show (reply codes,
garbage, half requests, many at once).
"""

import hashlib
import os
import socket
import threading
import time

import pytest

from e2elib import (closed_without_reply, connect, curl, dynamic,
                    echo_handler, free_port, local, note, recv_all,
                    recv_exact, run_cmd, socks4_connect, socks5_connect,
                    socks5_handshake, start_up, tcp_listen)

SLACK = 3.0             # scheduling slack on a loaded 2-core machine
SOCKS_TIMEOUT = 10      # seconds a client has to finish its request


def test_curl_socks5h_socks4a(sshd, env, http):
    """curl through the SOCKS server: names resolved on the far side
    (--socks5-hostname, --socks4a), literals (--socks5, --socks4), and an
    IPv6 target."""
    web = http()
    web6 = http("::1")
    p = free_port()
    d = start_up(env, sshd, [dynamic("socks", tcp_listen(p))])
    proxy = "127.0.0.1:%d" % p
    cases = [("--socks5-hostname", web.url(host="localhost"), web),
             ("--socks4a", web.url(host="localhost"), web),
             ("--socks5", web.url(), web),
             ("--socks4", web.url(), web),
             ("--socks5-hostname", web6.url(), web6),      # [::1] literal
             ("--socks5", web6.url(), web6)]
    for opt, url, srv in cases:
        code, body, err = curl(opt, proxy, url)
        assert code == 0, (opt, url, code, err)
        assert body == srv.blob, (opt, url, len(body))
    st = d.tunnel("socks")
    assert st["state"] == "up" and st["target"] is None, st
    assert st["connections"]["total"] == len(cases), st
    assert st["connections"]["failed"] == 0, st
    # OUT: what came back to the clients (SPEC section 4).
    assert st["out"] >= len(cases) * len(web.blob), st


def test_nc_socks5_socks4(sshd, env, servers):
    """OpenBSD nc -X 5 / -X 4 -x proxy: bytes echoed intact, IPv4 and (with
    SOCKS5) an IPv6 target."""
    echo = servers(echo_handler)
    echo6 = servers(echo_handler, ("::1", 0))
    p = free_port()
    start_up(env, sshd, [dynamic("socks", tcp_listen(p))])
    proxy = "127.0.0.1:%d" % p
    for x, host, port in (("5", "127.0.0.1", echo.port),
                          ("4", "127.0.0.1", echo.port),
                          ("5", "::1", echo6.port),
                          ("5", "localhost", echo.port)):
        data = os.urandom(200000)
        code, out, err = run_cmd(["nc", "-N", "-w", "10", "-X", x, "-x",
                                  proxy, host, str(port)],
                                 data=data, timeout=30)
        assert code == 0, (x, host, code, err)
        assert out == data, (x, host, len(out))


def test_raw_ipv6_and_domain(sshd, env, servers):
    """SOCKS5 CONNECT with ATYP 4 (IPv6) and ATYP 3 (a name): success
    reply, then exact bytes both ways with half-close."""
    echo6 = servers(echo_handler, ("::1", 0))
    echo = servers(echo_handler)
    p = free_port()
    start_up(env, sshd, [dynamic("socks", tcp_listen(p))])
    for host, port in (("::1", echo6.port), ("localhost", echo.port),
                       ("127.0.0.1", echo.port)):
        s, rep = socks5_connect(("127.0.0.1", p), host, port)
        assert rep == 0, (host, rep)
        payload = os.urandom(300000)
        with s:
            t = threading.Thread(target=lambda: (s.sendall(payload),
                                                 s.shutdown(socket.SHUT_WR)))
            t.start()
            got = recv_all(s)
            t.join(10)
        assert got == payload, (host, len(got))


def test_refused_target_gets_failure(sshd, env, servers):
    """A CONNECT to a closed port is answered with a failure (SOCKS5 0x05
    connection refused, SOCKS4 91), never success; the tunnel stays up."""
    echo = servers(echo_handler)
    closed = free_port()
    p = free_port()
    d = start_up(env, sshd, [dynamic("socks", tcp_listen(p))])
    proxy = ("127.0.0.1", p)
    for host in ("127.0.0.1", "localhost"):
        s, rep = socks5_connect(proxy, host, closed)
        assert s is None, "SOCKS5 success for a closed port (%s)" % host
        assert rep == 5, "SOCKS5 reply %d for a refused connect, want 5" % rep
    s, rep = socks4_connect(proxy, "127.0.0.1", closed)
    assert s is None and rep == 91, rep
    s, rep = socks4_connect(proxy, "localhost", closed)       # 4a
    assert s is None and rep == 91, rep
    code, body, err = curl("--socks5-hostname", "127.0.0.1:%d" % p,
                           "http://localhost:%d/" % closed)
    assert code != 0 and body == b"", (code, err)

    # The same raw: the reply arrives, then the connection is closed.
    with connect(proxy, timeout=10) as s:
        rep = socks5_handshake(s, "127.0.0.1", closed)
        assert rep == 5, rep
        assert closed_without_reply(s, timeout=5)

    d.wait_for(lambda: d.tunnel("socks")["connections"]["active"] == 0, 5,
               what="no active connections")
    st = d.tunnel("socks")
    assert st["state"] == "up", st
    assert st["connections"]["failed"] >= 5, st
    s, rep = socks5_connect(proxy, "127.0.0.1", echo.port)
    with s:
        s.sendall(b"still here")
        s.shutdown(socket.SHUT_WR)
        assert recv_all(s) == b"still here"


@pytest.mark.limit(120)
def test_100_concurrent_socks5_clients(sshd, env, servers):
    echo = servers(echo_handler, backlog=1024)
    p = free_port()
    d = start_up(env, sshd, [dynamic("socks", tcp_listen(p))])
    n = 100
    payloads = [hashlib.sha256(b"%d" % i).digest() * 2048 +
                os.urandom(1000 + i) for i in range(n)]       # ~65 KiB each
    results = [None] * n
    go = threading.Barrier(n, timeout=30)

    def client(i):
        try:
            s = connect(("127.0.0.1", p), timeout=40)
            with s:
                go.wait()                       # all connected at once
                rep = socks5_handshake(s, "127.0.0.1", echo.port)
                if rep != 0:
                    results[i] = "reply %d" % rep
                    return
                w = threading.Thread(target=lambda: (
                    s.sendall(payloads[i]), s.shutdown(socket.SHUT_WR)))
                w.start()
                got = recv_all(s)
                w.join(30)
                results[i] = got == payloads[i] or \
                    "got %d of %d bytes" % (len(got), len(payloads[i]))
        except Exception as e:              # recorded, asserted below
            results[i] = repr(e)

    t0 = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,), daemon=True)
               for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    dt = time.monotonic() - t0
    bad = [(i, r) for i, r in enumerate(results) if r is not True]
    note("100 concurrent SOCKS5 clients x ~65 KiB echoed in %.2fs" % dt)
    assert not bad, "%d of %d SOCKS clients failed, e.g. %r" % (
        len(bad), n, bad[:3])
    d.wait_for(lambda: d.tunnel("socks")["connections"]["active"] == 0, 10,
               what="no active connections")
    st = d.tunnel("socks")
    assert st["connections"]["total"] >= n, st
    assert st["connections"]["failed"] == 0, st
    # IN: what the clients sent towards their targets, SOCKS excluded.
    assert st["in"] == sum(len(x) for x in payloads), st
    assert echo.errors == []


def _not_socks(n):
    """n random bytes whose first byte is neither 4 nor 5."""
    b = bytearray(os.urandom(n))
    while b[0] in (4, 5):
        b[0] = os.urandom(1)[0]
    return bytes(b)


def _nonzero(n):
    return os.urandom(n).replace(b"\x00", b"\x01")


def _socks_success(got):
    """Did the server tell this client a CONNECT succeeded?"""
    if got[:2] == b"\x05\x00" and len(got) >= 4 and got[2] == 5:
        return got[3] == 0
    return len(got) >= 2 and got[0] == 0 and got[1] == 90


@pytest.mark.limit(60)
def test_garbage_on_the_listener(sshd, env, servers, http):
    """64 KiB of random bytes over 8 connections, some behind a SOCKS4 or
    SOCKS5 start, and 64 KiB more on one: each gets a failure or a close
    within the handshake bound, none is told success, and the daemon
    serves the next client.  (Every request that could parse names
    127.0.0.1: the garbage never makes sshd connect anywhere else.)"""
    web = http()
    p = free_port()
    closed = free_port().to_bytes(2, "big")
    lo = socket.inet_aton("127.0.0.1")
    d = start_up(env, sshd, [dynamic("socks", tcp_listen(p))])
    k = 8 << 10
    chunks = [
        _not_socks(k),
        b"\x05\xff" + _nonzero(255) + os.urandom(k - 257),  # no "no auth"
        b"\x04\x01" + closed + lo + _nonzero(k - 8),          # endless userid
        b"\x05\x01\x00\x05\x02\x00\x01" + lo + closed +       # BIND
        os.urandom(k - 13),
        b"\x05\x01\x00\x05\x01\x00\x07" + os.urandom(k - 7),  # bad ATYP
        b"\x05\x01\x00\x05\x09\x00\x01" + lo + closed +       # bad CMD
        os.urandom(k - 13),
        b"\x04\x02" + closed + lo + b"\x00" + os.urandom(k - 9),  # SOCKS4 BIND
        _not_socks(k),
        _not_socks(64 << 10),                               # 64 KiB at once
    ]
    assert sum(len(c) for c in chunks[:8]) == 64 << 10
    outcome = [None] * len(chunks)

    def garbage(i):
        t0 = time.monotonic()
        try:
            with connect(("127.0.0.1", p), timeout=SOCKS_TIMEOUT + 10) as s:
                try:
                    s.sendall(chunks[i])
                except (BrokenPipeError, ConnectionResetError):
                    pass
                got = b""
                try:
                    got = recv_all(s, limit=1 << 16)
                except ConnectionResetError:
                    pass
            outcome[i] = (time.monotonic() - t0, got)
        except Exception as e:
            outcome[i] = (time.monotonic() - t0, repr(e))

    ts = [threading.Thread(target=garbage, args=(i,), daemon=True)
          for i in range(len(chunks))]
    for t in ts:
        t.start()
    for t in ts:
        t.join(SOCKS_TIMEOUT + 20)
    worst = max(o[0] for o in outcome)
    note("garbage: %d connections, 64 KiB + 64 KiB random, all closed "
         "within %.2fs" % (len(chunks), worst))
    for i, (dt, got) in enumerate(outcome):
        assert isinstance(got, bytes), (i, got)
        assert dt <= SOCKS_TIMEOUT + SLACK, (i, dt)
        assert not _socks_success(got), (i, got)
        assert len(got) <= 12, (i, got)       # a method choice and a reply
    # The same requests without trailing bytes: the failure reply itself.
    # (With unread garbage behind it, the close may turn into a reset that
    # overtakes the reply.)
    exact = [
        (b"\x05\x01\x00\x05\x02\x00\x01" + lo + closed,
         b"\x05\x00\x05\x07"),                      # BIND: not supported
        (b"\x05\x01\x00\x05\x03\x00\x01" + lo + closed,
         b"\x05\x00\x05\x07"),                      # UDP ASSOCIATE
        (b"\x05\x01\x00\x05\x01\x00\x07", b"\x05\x00\x05\x08"),  # ATYP
        (b"\x04\x02" + closed + lo + b"\x00", b"\x00\x5b"),  # SOCKS4 BIND
        (b"\x05\x01\x02", b"\x05\xff"),    # only user/password offered
    ]
    for req, want in exact:
        with connect(("127.0.0.1", p), timeout=10) as s:
            s.sendall(req)
            try:
                got = recv_all(s, limit=64)
            except ConnectionResetError as e:
                got = repr(e).encode()
        assert got[:len(want)] == want, (req, got)

    assert d.alive()
    code, body, err = curl("--socks5-hostname", "127.0.0.1:%d" % p,
                           web.url(host="localhost"))
    assert code == 0 and body == web.blob, (code, err)
    d.wait_for(lambda: d.tunnel("socks")["connections"]["active"] == 0, 5,
               what="no active connections")
    st = d.tunnel("socks")
    assert st["state"] == "up"
    assert st["in"] < 4096, st     # no garbage was sent anywhere


@pytest.mark.limit(60)
def test_half_request_closed(sshd, env, servers):
    """Clients that stop in the middle of their request (or say nothing)
    are closed by the daemon after the handshake bound (10 s)."""
    echo = servers(echo_handler)
    p = free_port()
    d = start_up(env, sshd, [dynamic("socks", tcp_listen(p))])
    halves = {
        "nothing": b"",
        "socks5 greeting cut": b"\x05\x02\x00",
        "socks5 request cut": b"\x05\x01\x00" + b"\x05\x01\x00\x03\x09loc",
        "socks4 userid unended": b"\x04\x01\x00\x50\x7f\x00\x00\x01user",
        "socks4a name unended": b"\x04\x01\x00\x50\x00\x00\x00\x01u\x00loc",
    }
    done = {}

    def slow(name, data):
        t0 = time.monotonic()
        try:
            with connect(("127.0.0.1", p), timeout=SOCKS_TIMEOUT + 15) as s:
                if data:
                    s.sendall(data)
                got = b""
                try:
                    got = recv_all(s)
                except ConnectionResetError:
                    pass
            done[name] = (time.monotonic() - t0, got)
        except Exception as e:
            done[name] = (time.monotonic() - t0, repr(e))

    ts = [threading.Thread(target=slow, args=kv, daemon=True)
          for kv in halves.items()]
    for t in ts:
        t.start()
    # Meanwhile a complete client is served at once.
    time.sleep(1)
    s, rep = socks5_connect(("127.0.0.1", p), "127.0.0.1", echo.port)
    with s:
        s.sendall(b"quick")
        s.shutdown(socket.SHUT_WR)
        assert recv_all(s) == b"quick"
    for t in ts:
        t.join(SOCKS_TIMEOUT + 20)
    note("half requests closed after " + ", ".join(
        "%s %.2fs" % (k, v[0]) for k, v in sorted(done.items())))
    for name in halves:
        assert name in done, name
        dt, got = done[name]
        assert isinstance(got, bytes), (name, got)
        assert SOCKS_TIMEOUT - 1.5 <= dt <= SOCKS_TIMEOUT + SLACK, (name, dt)
        # At most the method choice of a greeting; never a CONNECT reply.
        assert got in (b"", b"\x05\x00"), (name, got)
    d.wait_for(lambda: d.tunnel("socks")["connections"]["active"] == 0, 5,
               what="no active connections")
    assert d.tunnel("socks")["state"] == "up"


@pytest.mark.limit(60)
def test_max_connections(sshd, env, servers):
    """max_connections = 5 (per tunnel) and 3 (from defaults, a local
    tunnel): that many connections are served at once; one more is closed
    without service; once one ends, a new one is served again."""
    echo = servers(echo_handler)
    p_socks, p_loc = free_port(), free_port()
    defaults = {"max_connections": 3}
    d = start_up(env, sshd, [dynamic("socks", tcp_listen(p_socks),
                                     max_connections=5),
                             local("loc", tcp_listen(p_loc), echo.target)],
                 defaults=defaults)

    def talk(s, msg):
        s.sendall(msg)
        return recv_exact(s, len(msg)) == msg

    # dynamic, cap 5
    held = []
    try:
        for i in range(5):
            s, rep = socks5_connect(("127.0.0.1", p_socks), "127.0.0.1",
                                    echo.port)
            assert rep == 0, (i, rep)
            assert talk(s, b"conn %d" % i)
            held.append(s)
        d.wait_for(lambda: d.tunnel("socks")["connections"]["active"] == 5,
                   5, what="5 active")
        sixth = connect(("127.0.0.1", p_socks), timeout=10)
        try:
            try:
                sixth.sendall(b"\x05\x01\x00")
            except (BrokenPipeError, ConnectionResetError):
                pass
            assert closed_without_reply(sixth, timeout=5), \
                "the 6th connection got a SOCKS answer"
        finally:
            sixth.close()
        for i, s in enumerate(held):                 # the 5 still work
            assert talk(s, b"again %d" % i), i
        held.pop().close()
        d.wait_for(lambda: d.tunnel("socks")["connections"]["active"] == 4,
                   5, what="4 active")
        s, rep = socks5_connect(("127.0.0.1", p_socks), "127.0.0.1",
                                echo.port)
        assert rep == 0, rep
        assert talk(s, b"a new one")
        held.append(s)
    finally:
        for s in held:
            s.close()

    # local, cap 3 from defaults
    held = []
    try:
        for i in range(3):
            s = connect(("127.0.0.1", p_loc), timeout=10)
            assert talk(s, b"loc %d" % i)
            held.append(s)
        fourth = connect(("127.0.0.1", p_loc), timeout=10)
        try:
            try:
                fourth.sendall(b"hello?")
            except (BrokenPipeError, ConnectionResetError):
                pass
            assert closed_without_reply(fourth, timeout=5), \
                "the 4th connection of a tunnel capped at 3 was served"
        finally:
            fourth.close()
        for i, s in enumerate(held):
            assert talk(s, b"loc again %d" % i), i
    finally:
        for s in held:
            s.close()
    st = d.status()
    assert st["socks"]["connections"]["failed"] >= 1, st["socks"]
    assert st["loc"]["connections"]["failed"] >= 1, st["loc"]
    assert st["socks"]["state"] == "up" and st["loc"]["state"] == "up"


@pytest.mark.limit(60)
def test_dynamic_while_link_down(own_sshd, env, servers):
    """The SOCKS listener stays bound while the link is down.  A request
    made meanwhile waits for the link (connect_wait) and is then served;
    when the link does not come back in time the client hears a failure,
    never success."""
    from e2elib import FAST, port_bindable
    echo = servers(echo_handler)
    p = free_port()
    d = start_up(env, own_sshd, [dynamic("socks", tcp_listen(p),
                                         connect_wait=3)], defaults=FAST)
    own_sshd.stop()
    d.wait_tunnel("socks", "waiting", timeout=5)
    assert not port_bindable(p)

    # Served once the link is back.
    s = connect(("127.0.0.1", p), timeout=15)
    try:
        s.sendall(b"\x05\x01\x00")
        assert recv_exact(s, 2) == b"\x05\x00"
        s.sendall(b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") +
                  echo.port.to_bytes(2, "big"))
        time.sleep(1)
        own_sshd.start()
        t0 = time.monotonic()
        head = recv_exact(s, 10)
        dt = time.monotonic() - t0
        assert head[:2] == b"\x05\x00", head
        s.sendall(b"after the outage")
        s.shutdown(socket.SHUT_WR)
        assert recv_all(s) == b"after the outage"
    finally:
        s.close()
    note("SOCKS request made during an outage answered %.2fs after sshd "
         "returned" % dt)
    assert dt <= FAST["backoff_max"] + SLACK, dt

    # Not back within connect_wait: a failure reply (or a close).
    own_sshd.stop()
    d.wait_tunnel("socks", "waiting", timeout=5)
    t0 = time.monotonic()
    with connect(("127.0.0.1", p), timeout=15) as s:
        rep = None
        try:
            rep = socks5_handshake(s, "127.0.0.1", echo.port)
        except (EOFError, ConnectionResetError):
            pass
        dt = time.monotonic() - t0
    note("SOCKS request during an outage longer than connect_wait (3 s): "
         "answered %s after %.2fs" % ("with reply %s" % rep, dt))
    assert rep != 0, "told success while the link was down"
    assert 2.5 <= dt <= 3 + SLACK, dt
    assert not port_bindable(p)
