"""tunneld against Dropbear (Debian's dropbear-bin, see dropbear.py), the
SSH server of OpenWrt routers and a common relay in the A -> B <- C
pattern:

  - every tunnel kind moves data intact (sha256 of 8 MiB each way);
  - keepalives for 30 s without a false dead-link verdict;
  - the server killed and restarted: the tunnels come back;
  - down/up/restart of remote tunnels (port 0 too) leave exactly one
    listener on the server: Dropbear before 2026.90 refuses every
    cancel-tcpip-forward, the status says so, up takes the listener back;
  - forwarding disabled (-j, -k) reads as that;
  - the 1,000-channel limit of a Dropbear session reads as that, in a few
    log lines.
"""

import os
import re
import socket
import time

import dropbear
from e2elib import (SLACK, connect, dynamic, echo_handler, echo_roundtrip,
                    free_port, known_hosts_line, local, log_events, note,
                    recv_all, remote, remote_dynamic, sink_handler,
                    socks5_connect, source_handler, start_up, tcp_listen,
                    transfer_both_ways)

MiB = 1 << 20


def test_every_kind_moves_data(dropbear_srv, env, servers):
    data = os.urandom(8 * MiB)
    sink, src = servers(sink_handler), servers(source_handler(data))
    ports = {n: free_port() for n in ("lu", "ld", "ru", "rd", "dyn", "rdyn")}
    d = start_up(env, dropbear_srv, [
        local("lu", tcp_listen(ports["lu"]), sink.target),
        local("ld", tcp_listen(ports["ld"]), src.target),
        remote("ru", tcp_listen(ports["ru"]), sink.target),
        remote("rd", tcp_listen(ports["rd"]), src.target),
        dynamic("dyn", tcp_listen(ports["dyn"])),
        remote_dynamic("rdyn", tcp_listen(ports["rdyn"]))])
    times = {}
    times["local"] = transfer_both_ways(ports["lu"], ports["ld"], data)
    times["remote"] = transfer_both_ways(ports["ru"], ports["rd"], data)
    for kind in ("dyn", "rdyn"):
        s, rep = socks5_connect(("127.0.0.1", ports[kind]), "127.0.0.1",
                                src.port)
        assert rep == 0, "%s: SOCKS reply %d" % (kind, rep)
        with s:
            got = recv_all(s)
        assert got == data, "%s: %d bytes" % (kind, len(got))
        s, rep = socks5_connect(("127.0.0.1", ports[kind]), "127.0.0.1",
                                sink.port)
        assert rep == 0, "%s: SOCKS reply %d" % (kind, rep)
        with s:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
            reply = recv_all(s).decode()
        assert reply.split()[0] == str(len(data)), reply
    st = d.status()
    for n in ports:
        assert st[n]["state"] == "up", st[n]
    note("dropbear %s: local up/down %.2f/%.2fs, remote %.2f/%.2fs (8 MiB),"
         " SOCKS and remote SOCKS intact" % (
             dropbear.version(), times["local"][0], times["local"][1],
             times["remote"][0], times["remote"][1]))


def test_keepalives_30s_no_false_verdict(dropbear_srv, env, servers):
    """keepalive 1 s x 2: Dropbear answers keepalive@openssh.com with
    REQUEST_FAILURE, which is an answer: the link stays up 30 s."""
    echo = servers(echo_handler)
    port = free_port()
    d = start_up(env, dropbear_srv,
                 [local("t", tcp_listen(port), echo.target)],
                 defaults={"keepalive_interval": 1,
                           "keepalive_count_max": 2})
    since = d.link("srv")["since"]
    t0 = time.monotonic()
    while time.monotonic() - t0 < 30:
        assert echo_roundtrip(("127.0.0.1", port), b"k\n") == b"k\n"
        time.sleep(1)
    lk = d.link("srv")
    assert lk["state"] == "up" and lk["since"] == since, lk
    answered = log_events(d.log, r"link srv: keepalive answered")
    assert len(answered) >= 25, len(answered)
    assert not log_events(d.log, r"link srv: (up|connecting) -> "), \
        "the link went down"
    note("dropbear: 30 s at keepalive 1 s x 2: %d keepalives answered, "
         "link up throughout, rtt %s" % (len(answered), lk.get("rtt")))


def test_server_killed_and_restarted(own_dropbear, env, servers):
    echo = servers(echo_handler)
    srv = own_dropbear()
    lp, rp = free_port(), free_port()
    d = start_up(env, srv, [local("l", tcp_listen(lp), echo.target),
                            remote("r", tcp_listen(rp), echo.target)],
                 defaults={"keepalive_interval": 1,
                           "keepalive_count_max": 2,
                           "backoff_max": 1.0})
    srv.stop()
    d.wait_for(lambda: d.link("srv")["state"] != "up", 10, what="link down")
    t0 = time.monotonic()
    srv.start()
    assert d.tunctl("wait", "l", "r", "--timeout", "20")[0] == 0
    t = time.monotonic() - t0
    assert echo_roundtrip(("127.0.0.1", lp), b"l\n") == b"l\n"
    assert echo_roundtrip(("127.0.0.1", rp), b"r\n") == b"r\n"
    assert srv.forward_ports() == {rp}
    note("dropbear: killed and restarted: both tunnels back %.2fs after "
         "the server" % t)


def _one_listener_each(srv, d, names):
    """The server listens on exactly the ports the tunnels show."""
    st = d.status()
    want = {int(st[n]["listen"].rsplit(":", 1)[1]) for n in names}
    assert srv.forward_ports() == want, (srv.forward_ports(), want)
    return want


def test_remote_down_up_restart_leave_one_listener(own_dropbear, env,
                                                   servers):
    echo = servers(echo_handler)
    srv = own_dropbear()
    fixed = free_port()
    # "keep" holds the link up while the remote ones go down.
    d = start_up(env, srv, [
        remote("fixed", tcp_listen(fixed), echo.target),
        remote("any", tcp_listen(0), echo.target),
        local("keep", tcp_listen(free_port()), echo.target)])
    before = _one_listener_each(srv, d, ("fixed", "any"))

    code, out, _ = d.tunctl("down", "fixed", "any")
    assert code == 0
    # Dropbear 2022.83 never cancels: down says so, and so does status.
    assert re.search(r"^fixed: down; warning: srv did not stop listening on "
                     r"127\.0\.0\.1:%d \(it refuses cancel-tcpip-forward"
                     % fixed, out, re.M), out
    st = d.status()
    assert "tunctl up takes it back" in st["any"]["last_error"], st["any"]
    assert srv.forward_ports() == before       # still there, on the server
    # Its connections are closed, not served.
    with connect(("127.0.0.1", fixed)) as s:
        s.sendall(b"x")
        assert recv_all(s) == b""

    assert d.tunctl("up", "fixed", "any")[0] == 0
    assert d.tunctl("wait", "fixed", "any", "--timeout", "10")[0] == 0
    assert _one_listener_each(srv, d, ("fixed", "any")) == before
    assert echo_roundtrip(("127.0.0.1", fixed), b"f\n") == b"f\n"
    assert not any(ln.startswith("any ") and "warning" in ln
                   for ln in d.tunctl("status")[1].splitlines())

    for _ in range(3):
        assert d.tunctl("restart", "any", "fixed")[0] == 0
        assert d.tunctl("wait", "fixed", "any", "--timeout", "10")[0] == 0
        assert _one_listener_each(srv, d, ("fixed", "any")) == before
    anyp = int(d.status()["any"]["listen"].rsplit(":", 1)[1])
    assert echo_roundtrip(("127.0.0.1", anyp), b"a\n") == b"a\n"
    assert not log_events(d.log, r"refused to listen"), \
        "up was refused against our own listener"
    note("dropbear: down/up and 3 restarts of a fixed and a port-0 remote "
         "tunnel: the server listens on %s throughout, no refusal" %
         sorted(before))


def test_forwarding_disabled_reads_as_that(own_dropbear, env, servers):
    """Dropbear -k (no remote forwarding): the refusal names that, not a
    stale session of ours; Dropbear -j (no local forwarding): the channel
    open's code 1 reads "administratively prohibited". (Two servers: one
    session's refused global request would otherwise share libssh's one
    error text with the refused channel.)"""
    echo = servers(echo_handler)
    nok, noj = own_dropbear(["-k"]), own_dropbear(["-j"])
    lp = free_port()
    with open(env.known_hosts, "w") as f:
        for srv in (nok, noj):
            f.write(known_hosts_line(srv.port, env.keys.host_pub))
    d = env.start([remote("r", tcp_listen(free_port()), echo.target,
                          via="nok"),
                   remote("r0", tcp_listen(0), echo.target, via="nok"),
                   local("l", tcp_listen(lp), echo.target, via="noj")],
                  hosts={"nok": {"address": "127.0.0.1", "port": nok.port},
                         "noj": {"address": "127.0.0.1", "port": noj.port}},
                  known_hosts=False)
    d.wait_tunnel("r", "failed")
    d.wait_tunnel("r0", "failed")
    st = d.status()
    for n in ("r", "r0"):
        assert "does not allow this remote forward" in \
            st[n]["last_error"], st[n]
        assert "stale" not in st[n]["last_error"]
    # Permanent (errclass.c): r's by the refused port-0 probe.
    d.wait_for(lambda: all(d.tunnel(n)["needs_attention"]
                           for n in ("r", "r0")), 5, what="needs attention")
    assert d.tunctl("wait", "l", "--timeout", "10")[0] == 0
    with connect(("127.0.0.1", lp)) as s:
        try:
            s.sendall(b"x")
            assert recv_all(s) == b""
        except ConnectionResetError:
            pass                # closed before our byte was read
    d.wait_for(lambda: d.tunnel("l")["last_error"] is not None, 5,
               what="the local tunnel's error")
    err = d.tunnel("l")["last_error"]
    assert "administratively prohibited by the server (forwarding " \
        "disabled or not permitted for this key)" in err, err
    t = d.tunnel("l")
    assert t["state"] == "failed" and t["needs_attention"] is True, t
    note("dropbear -k: %s; dropbear -j: %s" % (st["r"]["last_error"], err))


def test_channel_limit_reads_as_that(dropbear_srv, env, servers):
    """Dropbear refuses channels past 1,000 per session (its MAX_CHANNELS)
    with RESOURCE_SHORTAGE: 1,100 clients at once, the ones refused are
    told so, and the log says it in a few lines."""
    hold = servers(echo_handler)
    port = free_port()
    d = start_up(env, dropbear_srv,
                 [local("many", tcp_listen(port), hold.target)])
    socks = []
    try:
        for _ in range(1100):
            socks.append(connect(("127.0.0.1", port)))
        d.wait_for(lambda: d.tunnel("many")["connections"]["failed"] >= 50,
                   20 * SLACK, what="refused channels")
    finally:
        for s in socks:
            s.close()
    st = d.tunnel("many")
    assert "too many channels" in st["last_error"], st
    # What an operator sees (info and above; the rest is at debug).
    with open(d.log, errors="replace") as f:
        lines = [ln for ln in f if re.search(
            r"tunneld\[(info|notice|warning|error)\]: tunnel many: "
            r"(.*too many channels|\d+ more like this)", ln)]
    note("dropbear: 1,100 clients: %d refused past the server's limit, "
         "%d log lines about it; error: %s" % (
             st["connections"]["failed"], len(lines), st["last_error"]))
    assert len(lines) <= 5, len(lines)


def test_clients_that_leave_mid_transfer_keep_the_session(own_dropbear, env,
                                                          servers):
    """Closing a channel while Dropbear still sends on it must not make
    Dropbear end the session ("Unknown channel"): 20 clients each of a
    local and a remote tunnel leave in the middle of a download and of an
    upload; the link stays up."""
    data = os.urandom(16 * MiB)
    src, sink = servers(source_handler(data)), servers(sink_handler)
    srv = own_dropbear()
    ports = {n: free_port() for n in ("ld", "lu", "rd", "ru")}
    d = start_up(env, srv, [local("ld", tcp_listen(ports["ld"]), src.target),
                            local("lu", tcp_listen(ports["lu"]),
                                  sink.target),
                            remote("rd", tcp_listen(ports["rd"]), src.target),
                            remote("ru", tcp_listen(ports["ru"]),
                                   sink.target)])
    since = d.link("srv")["since"]
    for i in range(20):
        for n in ("ld", "rd"):
            with connect(("127.0.0.1", ports[n])) as s:
                got = 0
                while got < (i + 1) * 64 * 1024:
                    b = s.recv(65536)
                    assert b, "EOF after %d bytes" % got
                    got += len(b)
        for n in ("lu", "ru"):
            with connect(("127.0.0.1", ports[n])) as s:
                s.sendall(data[:(i + 1) * 64 * 1024])
    time.sleep(0.5)
    lk = d.link("srv")
    assert lk["state"] == "up" and lk["since"] == since, lk
    assert not log_events(d.log, r"link srv: connection to .* lost"), \
        open(srv.log).read()[-2000:]
