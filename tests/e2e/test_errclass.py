"""Error classes (issue 15 item 4): a permanent failure (a host key or
authentication refused, a channel open "administratively prohibited", a
remote forward the server refuses to every request of the session) shows
failed with needs_attention, retries at backoff_max only, is logged once
at warning, and counts in STATUS=; fixed, it recovers with a notice. A
transient one (a port in use, the server gone) backs off as before,
without needs_attention.

backoff_initial 0.5 and backoff_max 4 tell the two apart: a transient
retry comes within 0.5 s at first, a permanent one after 4.0 s exactly.
"""

import os
import re
import shutil
import socket

from e2elib import (SLACK, connect, dynamic, echo_handler, echo_roundtrip,
                    free_port, known_hosts_line, local, log_event,
                    log_events, note, port_bindable, recv_all, remote,
                    socks5_connect, tcp_listen)
from test_notify import Notify

ATT = {"backoff_initial": 0.5, "backoff_max": 4.0}


def warnings(d, pattern):
    """The daemon's warning lines whose message matches pattern."""
    rx = re.compile(r"tunneld\[warning\]: " + pattern)
    with open(d.log, errors="replace") as f:
        return [ln for ln in f if rx.search(ln)]


def last_status(n):
    st = n.lines("STATUS=")
    return st[-1][1] if st else None


def retry_delays(d, host):
    """The waits the daemon logged before each retry of host's link."""
    rx = re.compile(r"link %s: retry \d+ in ([\d.]+) s" % host)
    with open(d.log, errors="replace") as f:
        return [float(m.group(1)) for m in map(rx.search, f) if m]


def gaps(times):
    return [round(b - a, 2) for a, b in zip(times, times[1:])]


def set_forwarding(sshd, value):
    """Restart sshd with AllowTcpForwarding value (its sessions end)."""
    sshd.stop()
    with open(sshd.cfg) as f:
        text = f.read()
    with open(sshd.cfg, "w") as f:
        f.write(re.sub(r"AllowTcpForwarding \w+",
                       "AllowTcpForwarding " + value, text))
    sshd.start()


def test_host_key_changed_needs_attention(sshd, env, servers, keys):
    """known_hosts holds another key: the link is failed with
    needs_attention, its tunnel waits with it, retries come backoff_max
    apart, the error is logged at warning once over every retry, STATUS=
    says so; the right key in known_hosts brings it up, "recovered"."""
    n = Notify(env.path("notify.sock"))
    try:
        echo = servers(echo_handler)
        port = free_port()
        env.write_known_hosts(sshd.port, keys.other_pub)
        d = env.start([local("t", tcp_listen(port), echo.target)],
                      sshd=sshd, known_hosts=False, defaults=ATT,
                      daemon_env={"NOTIFY_SOCKET": n.path})
        d.wait_link("srv", "failed", timeout=10 * SLACK)
        lk = d.link("srv")
        assert lk["needs_attention"] is True, lk
        assert keys.other_fp in lk["last_error"], lk
        assert lk["next_retry_seconds"] is not None, lk
        assert retry_delays(d, "srv") and \
            set(retry_delays(d, "srv")) == {4.0}, retry_delays(d, "srv")
        t = d.tunnel("t")
        assert t["state"] == "waiting" and t["needs_attention"] is True, t
        code, out, err = d.tunctl("links")
        assert re.search(r"^srv .* failed! ", out, re.M), out
        code, out, err = d.tunctl("status")
        assert re.search(r"^t .* waiting! ", out, re.M), out

        # Three attempts: the first, and two retries at backoff_max.
        d.wait_for(lambda: len(log_events(
            d.log, r"link srv: host key of .* \(again\)")) >= 2,
            8 + 4 * SLACK, interval=0.2, what="two retries")
        tries = log_events(d.log, r"link srv: host key of ")
        assert len(warnings(d, r"link srv: host key of ")) == 1, \
            warnings(d, r"link srv: host key of ")
        assert all(g >= 3.9 for g in gaps(tries)), gaps(tries)
        d.wait_for(lambda: last_status(n) == "STATUS=0/1 tunnels up, "
                   "1 waiting, 1 needs attention", 2 * SLACK,
                   what="STATUS= with 1 needs attention")
        note("host key changed: %d attempts %s s apart, %d warning line; "
             "%s" % (len(tries), gaps(tries), 1, last_status(n)))

        env.write_known_hosts(sshd.port)
        d.wait_link("srv", "up", timeout=4 + 4 * SLACK)
        lk = d.link("srv")
        assert lk["needs_attention"] is False, lk
        assert d.tunnel("t")["needs_attention"] is False
        log_event(d.log, r"link srv: recovered \(was: host key of ",
                  timeout=2)
        echo_roundtrip(("127.0.0.1", port))
        d.wait_for(lambda: last_status(n) == "STATUS=1/1 tunnels up",
                   2 * SLACK, what="STATUS= all up")
    finally:
        n.close()


def test_auth_refused_needs_attention(sshd, env, servers, keys):
    """The identity file holds a key sshd does not accept: failed,
    needs_attention; the right key put in its place is used at the next
    retry (backoff_max later) and clears it."""
    echo = servers(echo_handler)
    ident = env.path("id_key")
    shutil.copyfile(keys.other_key, ident)
    os.chmod(ident, 0o600)
    port = free_port()
    d = env.start([local("t", tcp_listen(port), echo.target)], sshd=sshd,
                  defaults=dict(ATT, identity=ident))
    d.wait_link("srv", "failed", timeout=10 * SLACK)
    lk = d.link("srv")
    assert lk["needs_attention"] is True, lk
    assert "authentication as root refused" in lk["last_error"], lk
    assert set(retry_delays(d, "srv")) == {4.0}, retry_delays(d, "srv")
    shutil.copyfile(keys.client_key, ident)
    d.wait_link("srv", "up", timeout=4 + 4 * SLACK)
    assert d.link("srv")["needs_attention"] is False
    log_event(d.log, r"link srv: recovered \(was: authentication",
              timeout=2)
    echo_roundtrip(("127.0.0.1", port))


def test_forwarding_disabled_needs_attention(own_sshd, env, servers):
    """sshd with AllowTcpForwarding no: a local tunnel's connections are
    refused "administratively prohibited" (failed, needs_attention, one
    warning however many clients; the listener stays), a dynamic one's
    SOCKS requests too (the client hears "not allowed"), a remote tunnel's
    forward is refused, found permanent by the port-0 probe, and retried
    backoff_max apart. sshd fixed: the remote binds at once, the local one
    clears at its next connection that opens."""
    n = Notify(env.path("notify.sock"))
    try:
        set_forwarding(own_sshd, "no")
        echo = servers(echo_handler)
        lp, rp, sp = free_port(), free_port(), free_port()
        d = env.start([local("l", tcp_listen(lp), echo.target),
                       remote("r", tcp_listen(rp), echo.target),
                       dynamic("s", tcp_listen(sp))],
                      sshd=own_sshd, defaults=ATT,
                      daemon_env={"NOTIFY_SOCKET": n.path})
        d.wait_link("srv", "up", timeout=10 * SLACK)
        for _ in range(3):
            with connect(("127.0.0.1", lp)) as s:
                try:
                    s.sendall(b"x")
                    assert recv_all(s) == b""
                except ConnectionResetError:
                    pass
        d.wait_for(lambda: d.tunnel("l")["needs_attention"], 5 * SLACK,
                   what="l needs attention")
        t = d.tunnel("l")
        assert t["state"] == "failed", t
        assert "administratively prohibited" in t["last_error"], t
        assert t["connections"]["failed"] >= 1, t
        assert len(warnings(d, r"tunnel l: .*administratively")) == 1, \
            warnings(d, r"tunnel l: ")
        # SOCKS: the client hears "not allowed" (2); the tunnel fails.
        _, code = socks5_connect(("127.0.0.1", sp), "127.0.0.1",
                                 echo.port)
        assert code == 2, code
        d.wait_for(lambda: d.tunnel("s")["needs_attention"], 5 * SLACK,
                   what="s needs attention")

        d.wait_for(lambda: d.tunnel("r")["needs_attention"], 5 * SLACK,
                   what="r needs attention")
        t = d.tunnel("r")
        assert t["state"] == "failed", t
        assert "does not allow this remote forward" in t["last_error"], t
        d.wait_for(lambda: len(log_events(
            d.log, r"tunnel r: .*refused to listen.*\(again\)")) >= 1,
            4 + 4 * SLACK, interval=0.2, what="r retried")
        tries = log_events(d.log, r"^tunnel r: srv refused to listen")
        assert gaps(tries)[-1] >= 3.9, gaps(tries)
        assert len(warnings(d, r"tunnel r: .*:\d+: the server does not "
                            r"allow")) == 1
        d.wait_for(lambda: last_status(n) == "STATUS=0/3 tunnels up, "
                   "3 failed, 3 need attention", 2 * SLACK,
                   what="STATUS= with 3 need attention")
        code, out, err = d.tunctl("status")
        assert re.search(r"^l .* failed! ", out, re.M), out
        assert re.search(r"^r .* failed! ", out, re.M), out
        note("AllowTcpForwarding no: remote refusals %s s apart; %s" %
             (gaps(tries), last_status(n)))

        set_forwarding(own_sshd, "yes")
        d.wait_tunnel("r", "up", timeout=5 * SLACK)
        assert d.tunnel("r")["needs_attention"] is False
        d.wait_link("srv", "up", timeout=5 * SLACK)
        t = d.tunnel("l")
        assert t["state"] == "failed" and t["needs_attention"], t
        echo_roundtrip(("127.0.0.1", lp))
        d.wait_tunnel("l", "up", timeout=2 * SLACK)
        assert d.tunnel("l")["needs_attention"] is False
        log_event(d.log, r"tunnel l: recovered", timeout=2)
        log_event(d.log, r"tunnel r: recovered", timeout=2)
        echo_roundtrip(("127.0.0.1", rp))
        c, code = socks5_connect(("127.0.0.1", sp), "127.0.0.1", echo.port)
        assert code == 0, code
        c.close()
        d.wait_tunnel("s", "up", timeout=2 * SLACK)
        assert d.tunnel("s")["needs_attention"] is False
        d.wait_for(lambda: last_status(n) == "STATUS=3/3 tunnels up",
                   2 * SLACK, what="STATUS= all up")
    finally:
        n.close()


def test_transient_failures_back_off(own_sshd, env, servers):
    """A remote port held on the server (the probe finds forwarding
    allowed) and a server that is gone are transient: failed or backoff,
    needs_attention false, retries on the exponential schedule."""
    echo = servers(echo_handler)
    held = socket.socket()
    rp = free_port()
    held.bind(("127.0.0.1", rp))
    held.listen(1)
    try:
        d = env.start([remote("r", tcp_listen(rp), echo.target)],
                      sshd=own_sshd, defaults=ATT)
        d.wait_for(lambda: len(log_events(
            d.log, r"^tunnel r: srv refused to listen")) >= 4,
            3.5 + 4 * SLACK, interval=0.1, what="four quick refusals")
        tries = log_events(d.log, r"^tunnel r: srv refused to listen")
        t = d.tunnel("r")
        assert t["state"] == "failed" and t["needs_attention"] is False, t
        assert "in use" in t["last_error"], t
        assert gaps(tries)[0] < 1.0, gaps(tries)
        log_event(d.log, r"link srv: remote forwarding probe granted",
                  timeout=2)
    finally:
        held.close()
    d.wait_tunnel("r", "up", timeout=4 + 4 * SLACK)
    echo_roundtrip(("127.0.0.1", rp))

    own_sshd.stop()
    d.wait_link("srv", ("backoff", "connecting"), timeout=5 * SLACK)
    d.wait_for(lambda: d.link("srv")["retries"] >= 2, 3 * SLACK,
               what="two failed retries")
    lk = d.link("srv")
    assert lk["needs_attention"] is False, lk
    assert lk["state"] != "failed", lk
    assert d.tunnel("r")["needs_attention"] is False
    note("transient: port in use retried %s s apart; server gone: %d "
         "retries, %s" % (gaps(tries), lk["retries"], lk["last_error"]))
    own_sshd.start()
    d.wait_tunnel("r", "up", timeout=4 + 4 * SLACK)


def test_jump_host_prohibits_the_hop(sshd, own_sshd, env, servers, keys):
    """The jump host's sshd has AllowTcpForwarding no: the channel that
    would carry the inner link is "administratively prohibited", so the
    inner link is failed for good (needs_attention, backoff_max), and its
    tunnel needs attention while it waits; fixed, it comes up."""
    set_forwarding(own_sshd, "no")
    echo = servers(echo_handler)
    p = free_port()
    with open(env.known_hosts, "w") as f:
        f.write(known_hosts_line(own_sshd.port, keys.host_pub))
        f.write(known_hosts_line(sshd.port, keys.host_pub))
    hosts = {"b": {"address": "127.0.0.1", "port": own_sshd.port},
             "a": {"address": "127.0.0.1", "port": sshd.port, "jump": "b"}}
    d = env.start([local("t", tcp_listen(p), echo.target, via="a")],
                  hosts=hosts, known_hosts=False, defaults=ATT)
    d.wait_link("a", "failed", timeout=10 * SLACK)
    lk = d.links()
    assert lk["a"]["needs_attention"] is True, lk["a"]
    assert "administratively prohibited" in lk["a"]["last_error"], lk["a"]
    assert set(retry_delays(d, "a")) == {4.0}, retry_delays(d, "a")
    assert lk["b"]["state"] == "up" and not lk["b"]["needs_attention"]
    t = d.tunnel("t")
    assert t["state"] == "waiting" and t["needs_attention"] is True, t

    set_forwarding(own_sshd, "yes")
    code, out, err = d.tunctl("wait", "t", "--timeout",
                              str(int(4 + 6 * SLACK)))
    assert code == 0, (code, out, err)
    assert d.link("a")["needs_attention"] is False
    assert d.tunnel("t")["needs_attention"] is False
    echo_roundtrip(("127.0.0.1", p))


def test_privileged_remote_port_for_a_user(sshd, env, servers):
    """As a user other than root (nobody: the test sshd reads one
    authorized_keys file for every user), a remote port below 1024 is
    refused for good, the reason inferred and said so, while a port above
    1023 on the same link is granted."""
    echo = servers(echo_handler)
    low = next(p for p in range(1023, 900, -1) if port_bindable(p))
    high = free_port()
    d = env.start([remote("low", tcp_listen(low), echo.target),
                   remote("high", tcp_listen(high), echo.target)],
                  sshd=sshd, defaults=dict(ATT, user="nobody"))
    d.wait_tunnel("high", "up", timeout=10 * SLACK)
    d.wait_for(lambda: d.tunnel("low")["needs_attention"], 5 * SLACK,
               what="low needs attention")
    t = d.tunnel("low")
    assert t["state"] == "failed", t
    assert "privileged port, and user nobody is not root" in \
        t["last_error"], t
    assert "inferred" in t["last_error"], t
    assert d.link("srv")["needs_attention"] is False
    echo_roundtrip(("127.0.0.1", high))
    note("privileged remote port %d as nobody: %s" % (low, t["last_error"]))
