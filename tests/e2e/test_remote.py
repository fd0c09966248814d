"""Remote tunnels (ssh -R) and remote-dynamic tunnels (a SOCKS server on the
far side whose connections leave from this machine), issue 4.

The private sshd runs on this machine, so "the far side" is loopback here
too: a remote tunnel's listener is a port sshd binds on 127.0.0.1, and a
test reaches it with an ordinary connect.
"""

import hashlib
import os
import re
import signal
import socket
import time

import pytest

from e2elib import (FAST, SLACK, connect, curl, echo_handler,
                    keepalive_midpoint,
                    echo_roundtrip, free_port, listen_port, local, log_event,
                    note, port_refuses, proc_descendants, recv_all, remote,
                    remote_dynamic, run_cmd, sink_handler, socks4_connect,
                    socks5_connect, source_handler, start_up, tcp_listen,
                    transfer_both_ways, wait_port)


def wait_refused(port, timeout=5.0):
    """Wait until a TCP connect to 127.0.0.1:port is refused."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if port_refuses(port):
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError("127.0.0.1:%d still accepts after %.1fs" %
                         (port, timeout))


def count_in_log(path, pattern):
    with open(path, errors="replace") as f:
        return len(re.findall(pattern, f.read()))


# ---------------------------------------------------------------------------


@pytest.mark.limit(150)
def test_remote_64mib_both_directions(sshd, env, servers):
    data = os.urandom(64 << 20)
    sink = servers(sink_handler)
    src = servers(source_handler(data))
    p_up, p_down = free_port(), free_port()
    d = start_up(env, sshd, [remote("rup", tcp_listen(p_up), sink.target),
                             remote("rdown", tcp_listen(p_down),
                                    src.target)])

    dt_up, dt_down, _ = transfer_both_ways(p_up, p_down, data)
    note("remote 64 MiB far->here %.0f MB/s, here->far %.0f MB/s" %
         (len(data) / dt_up / 1e6, len(data) / dt_down / 1e6))

    def counted():
        st = d.status()
        return (st["rup"]["in"] >= len(data) and
                st["rdown"]["out"] >= len(data))
    d.wait_for(counted, 5, what="byte counters")
    st = d.status()
    assert st["rup"]["in"] == len(data), st["rup"]
    assert st["rdown"]["out"] == len(data), st["rdown"]
    assert st["rup"]["connections"]["total"] == 1
    assert sink.errors == [] and src.errors == []


def test_remote_port_zero(sshd, env, servers):
    """listen = "0" and "127.0.0.1:0": the server picks the port; status
    (table and JSON) shows it, and it reaches the target."""
    echo = servers(echo_handler)
    d = start_up(env, sshd, [remote("z", "0", echo.target),
                             remote("z4", "127.0.0.1:0", echo.target)])
    st = d.status()
    ports = {}
    for name in ("z", "z4"):
        p = listen_port(st[name]["listen"])
        assert p != 0, st[name]
        ports[name] = p
    assert ports["z"] != ports["z4"], ports
    assert st["z4"]["listen"] == "127.0.0.1:%d" % ports["z4"], st["z4"]

    code, out, err = d.tunctl("status")
    assert code == 0, (code, out, err)
    rows = {ln.split()[0]: ln.split() for ln in out.splitlines()[1:]
            if ln.strip()}
    for name, p in ports.items():
        assert rows[name][3].endswith(":%d" % p), (rows[name], p)
        assert not rows[name][3].endswith(":0")

    for name, p in ports.items():
        payload = os.urandom(200000)
        assert echo_roundtrip(("127.0.0.1", p), payload) == payload, name
    # No address: the server's "localhost", its IPv6 loopback too.
    assert echo_roundtrip(("::1", ports["z"]), b"six") == b"six"
    assert d.tunnel("z")["connections"]["total"] == 2

    # down cancels the forward the server chose; up gets a port again.
    code, out, err = d.tunctl("down", "z4")
    assert code == 0, (code, out, err)
    wait_refused(ports["z4"], timeout=5)
    code, out, err = d.tunctl("up", "z4")
    assert code == 0, (code, out, err)
    assert d.tunctl("wait", "z4", "--timeout", "10")[0] == 0
    p2 = listen_port(d.tunnel("z4")["listen"])
    assert p2 != 0
    assert echo_roundtrip(("127.0.0.1", p2), b"again") == b"again"


def test_remote_target_forms_refusal_half_close(sshd, env, servers, tdir):
    """A UNIX-socket target, an IPv6 listener on the server, a target that
    refuses (only that channel closes, counted and shown), and a
    half-close carried from the far-side client to the target here."""
    unix_echo = servers(echo_handler, os.path.join(tdir, "echo.sock"))
    sink = servers(sink_handler)
    dead = free_port()
    p_unix, p_dead, p_hc = free_port(), free_port(), free_port()
    p6 = free_port(socket.AF_INET6, "::1")
    d = start_up(env, sshd, [
        remote("unix", tcp_listen(p_unix), unix_echo.target),
        remote("six", tcp_listen(p6, "::1"), unix_echo.target),
        remote("dead", tcp_listen(p_dead), tcp_listen(dead)),
        remote("hc", tcp_listen(p_hc), sink.target),
    ])
    for addr in (("127.0.0.1", p_unix), ("::1", p6)):
        payload = os.urandom(500000)
        assert echo_roundtrip(addr, payload) == payload, addr
    for _ in range(3):
        t0 = time.monotonic()
        with connect(("127.0.0.1", p_dead), timeout=10) as s:
            try:
                s.sendall(b"anyone?")
                got = recv_all(s)
            except (ConnectionResetError, BrokenPipeError):
                got = b""
        assert got == b""
        assert time.monotonic() - t0 < SLACK
    d.wait_for(lambda: d.tunnel("dead")["connections"]["failed"] == 3, 5,
               what="3 failed connections")
    t = d.tunnel("dead")
    assert t["state"] == "up", t
    assert t["last_error"] and str(dead) in t["last_error"], t
    # The sink answers only after EOF: the half-close went through.
    payload = os.urandom(300000)
    with connect(("127.0.0.1", p_hc), timeout=20) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        reply = recv_all(s).decode()
    assert reply.split() == [str(len(payload)),
                             hashlib.sha256(payload).hexdigest()], reply
    assert d.link("srv")["state"] == "up"
    assert unix_echo.errors == [] and sink.errors == []


@pytest.mark.limit(60)
def test_remote_bind_refused_recovers(sshd, env, servers):
    """sshd cannot bind the port (we hold it on its side): the tunnel is
    failed with the reason and a hint, retried with backoff while the link
    stays up and the link's other tunnels keep working; once the port is
    free it comes up within the backoff bound and passes data."""
    echo = servers(echo_handler)
    p_held, p_other, p_loc = free_port(), free_port(), free_port()
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", p_held))
    holder.listen(8)
    try:
        d = env.start([remote("held", tcp_listen(p_held), echo.target),
                       remote("other", tcp_listen(p_other), echo.target),
                       local("loc", tcp_listen(p_loc), echo.target)],
                      sshd=sshd, defaults=FAST)
        code, out, err = d.tunctl("wait", "other", "loc", "--timeout", "15")
        assert code == 0, (code, out, err)
        d.wait_tunnel("held", "failed", timeout=10)
        t = d.tunnel("held")
        err_text = t["last_error"] or ""
        assert re.search(r"refus", err_text, re.I), t
        assert re.search(r"in use|GatewayPorts|stale", err_text), t
        assert str(p_held) in err_text, t
        # The table shows it too, and `status held` exits 4.
        code, out, _ = d.tunctl("status", "held")
        assert code == 4, out
        row = out.splitlines()[1]
        assert "failed" in row and re.search(r"refus", row, re.I), out
        link0 = d.link("srv")
        assert link0["state"] == "up", link0

        # Retried with backoff while the link stays up; the others work.
        n0 = count_in_log(d.log, r"tunnel held: .*refus")
        t_end = time.monotonic() + 4
        rounds = 0
        while time.monotonic() < t_end:
            for p in (p_other, p_loc):
                payload = os.urandom(50000)
                assert echo_roundtrip(("127.0.0.1", p), payload) == payload
            rounds += 1
            time.sleep(0.2)
        n1 = count_in_log(d.log, r"tunnel held: .*refus")
        assert n1 - n0 >= 1, "no bind retry in 4 s (backoff_max 2)"
        assert d.tunnel("held")["state"] == "failed"
        note("refused remote bind retried %d times in 4 s (backoff %.1f-"
             "%.1f s); other tunnels served %d rounds meanwhile" %
             (n1 - n0, FAST["backoff_initial"], FAST["backoff_max"], rounds))
    finally:
        t_free = time.time()
        holder.close()
    d.wait_tunnel("held", "up", timeout=FAST["backoff_max"] + 10)
    dt = log_event(d.log, r"^tunnel held: srv listens on ",
                   after=t_free) - t_free
    note("remote bind up %.2fs after the port was freed (backoff_max %.1f)"
         % (dt, FAST["backoff_max"]))
    assert dt <= FAST["backoff_max"] + SLACK, dt
    assert echo_roundtrip(("127.0.0.1", p_held), b"bound now") == \
        b"bound now"
    lk = d.link("srv")
    assert lk["state"] == "up"
    assert lk["since"] == link0["since"], (lk, link0)


def test_remote_down_up_live_link(own_sshd, env, servers):
    """`tunctl down r` cancels the forward on the server (the port refuses)
    and `up` binds it again on the same live link."""
    echo = servers(echo_handler)
    p_r, p_keep = free_port(), free_port()
    d = start_up(env, own_sshd,
                 [remote("r", tcp_listen(p_r), echo.target),
                  remote("keep", tcp_listen(p_keep), echo.target)])
    assert echo_roundtrip(("127.0.0.1", p_r), b"one") == b"one"
    link0 = d.link("srv")
    sessions0 = own_sshd.sessions()

    # A connection open through r is closed by `down`.
    held = connect(("127.0.0.1", p_r), timeout=10)
    held.sendall(b"x")
    assert held.recv(1) == b"x"
    code, out, err = d.tunctl("down", "r")
    assert code == 0, (code, out, err)
    assert "r: down" in out, out
    dt = wait_refused(p_r, timeout=5)
    note("remote forward cancelled on the server %.3fs after tunctl down"
         % dt)
    try:
        got = recv_all(held)
    except ConnectionResetError:
        got = b""
    held.close()
    assert got == b""
    assert d.tunnel("r")["state"] == "down"
    assert echo_roundtrip(("127.0.0.1", p_keep), b"kept") == b"kept"

    code, out, err = d.tunctl("up", "r")
    assert code == 0, (code, out, err)
    code, out, err = d.tunctl("wait", "r", "--timeout", "10")
    assert code == 0, (code, out, err)
    payload = os.urandom(300000)
    assert echo_roundtrip(("127.0.0.1", p_r), payload) == payload
    lk = d.link("srv")
    assert lk["state"] == "up"
    assert lk["since"] == link0["since"], (lk, link0)
    assert lk["retries"] == link0["retries"], (lk, link0)
    assert own_sshd.sessions() == sessions0

    # restart: cancelled and bound again, still on the same link.
    code, out, err = d.tunctl("restart", "r")
    assert code == 0, (code, out, err)
    code, out, err = d.tunctl("wait", "r", "--timeout", "10")
    assert code == 0, (code, out, err)
    assert echo_roundtrip(("127.0.0.1", p_r), b"three") == b"three"
    assert d.link("srv")["since"] == link0["since"]

    # An orderly stop gives both ports back on the server.
    assert d.stop() == 0
    for p in (p_r, p_keep):
        wait_refused(p, timeout=5)


@pytest.mark.limit(120)
def test_20_remote_tunnels_churn(own_sshd, env, servers):
    """20 remote tunnels on one link, bound and cancelled over and over while
    keepalives run every second: every global request is answered in
    turn, all end up and pass data, and the link never drops."""
    echo = servers(echo_handler)
    n = 20
    names = ["r%02d" % i for i in range(n)]
    ports = [free_port() for _ in range(n)]
    p_anchor = free_port()
    fast = dict(FAST, keepalive_interval=1, keepalive_count_max=3)
    tunnels = [remote(nm, tcp_listen(p), echo.target)
               for nm, p in zip(names, ports)]
    # A local tunnel keeps the link in use while every remote one is down.
    tunnels.append(local("anchor", tcp_listen(p_anchor), echo.target))
    d = start_up(env, own_sshd, tunnels, defaults=fast)
    link0 = d.link("srv")
    sessions0 = own_sshd.sessions()
    t_start = time.monotonic()

    def all_state(state, which=names):
        st = d.status()
        return all(st[nm]["state"] == state for nm in which)

    def wait_all(state, which=names, timeout=20):
        return d.wait_for(lambda: all_state(state, which), timeout,
                          what="%s all %s" % (which, state))

    requests = [0]

    def ctl(*args):
        requests[0] += 1
        code, out, err = d.tunctl(*args)
        assert code == 0, (args, code, out, err)

    # Round 1: all 20 down in one request, then `up --all`.
    ctl("down", *names)
    wait_all("down")
    for p in ports:
        wait_refused(p, timeout=5)
    time.sleep(1.2)                     # a keepalive or two in between
    ctl("up", "--all")
    wait_all("up")

    for rnd in range(3):
        # Round 2: one by one, down and up at once, nothing awaited.
        for nm in names:
            ctl("down", nm)
            ctl("up", nm)
        time.sleep(0.5)
        # Round 3: half down, `up --all` straight away; then the other
        # half down and up by name, with a keepalive tick in between.
        ctl("down", *names[rnd % 2::2])
        ctl("up", "--all")
        ctl("down", *names[(rnd + 1) % 2::2])
        time.sleep(1.1)
        ctl("up", *names[(rnd + 1) % 2::2])
        # Round 4: down/up/down/up of everything by name, back to back.
        for _ in range(2):
            ctl("down", *names)
            ctl("up", *names)
        wait_all("up")
    churn = time.monotonic() - t_start

    def check_all(tag):
        for nm, p in zip(names, ports):
            payload = ("%s %s " % (tag, nm)).encode() + os.urandom(20000)
            assert echo_roundtrip(("127.0.0.1", p), payload) == payload, nm

    check_all("by-name")
    lk = d.link("srv")
    assert lk["state"] == "up", lk
    assert lk["since"] == link0["since"], (lk, link0)
    assert lk["retries"] == 0, lk
    assert isinstance(lk["rtt_ms"], (int, float)), lk   # keepalives answered
    assert own_sshd.sessions() == sessions0, "the SSH session was replaced"
    with open(d.log, errors="replace") as f:
        bad = [ln for ln in f if re.search(
            r"link srv: (up -> |disconnected|connection to \S+ lost|"
            r"no answer)", ln)]
    assert not bad, bad
    note("20 remote tunnels: %d tunctl down/up requests in %.1fs with 1 s "
         "keepalives, link never dropped, RTT %s ms" %
         (requests[0], churn, lk["rtt_ms"]))

    # Round 5: `down --all` stops every tunnel (the anchor too), so the
    # link goes idle by design; `up --all` brings it all back.
    code, out, err = d.tunctl("down", "--all")
    assert code == 0, (code, out, err)
    wait_all("down", names + ["anchor"])
    for p in ports:
        wait_refused(p, timeout=5)
    code, out, err = d.tunctl("up", "--all")
    assert code == 0, (code, out, err)
    wait_all("up", names + ["anchor"])
    check_all("all")
    assert echo_roundtrip(("127.0.0.1", p_anchor), b"a") == b"a"


def test_remote_dynamic_socks(sshd, env, http):
    """remote-dynamic: SOCKS5 (curl --socks5-hostname, nc -X 5) and
    SOCKS4/4a (curl --socks4a, nc -X 4) on the far side reach an HTTP
    server here; a closed port gets a failure reply."""
    web = http()
    p = free_port()
    d = start_up(env, sshd, [remote_dynamic("rsocks", tcp_listen(p))])
    proxy = "127.0.0.1:%d" % p
    url_name = web.url(host="localhost")
    for opt in ("--socks5-hostname", "--socks4a", "--socks5", "--socks4"):
        url = url_name if opt in ("--socks5-hostname", "--socks4a") \
            else web.url()
        code, body, err = curl(opt, proxy, url)
        assert code == 0, (opt, code, err)
        assert body == web.blob, (opt, len(body))

    req = b"GET /blob.bin HTTP/1.0\r\nHost: x\r\n\r\n"
    for x in ("5", "4"):
        code, out, err = run_cmd(["nc", "-N", "-w", "10", "-X", x, "-x",
                                  proxy, "127.0.0.1", str(web.port)],
                                 data=req, timeout=30)
        assert code == 0, (x, code, err)
        assert out.startswith(b"HTTP/1.0 200"), (x, out[:200])
        assert out.endswith(web.blob), (x, len(out))

    # A closed port here: a failure reply, never success.
    closed = free_port()
    s, rep = socks5_connect(("127.0.0.1", p), "127.0.0.1", closed)
    assert s is None and rep != 0, rep
    assert rep == 5, "SOCKS5 reply %d, expected 5 (connection refused)" % rep
    s, rep = socks4_connect(("127.0.0.1", p), "127.0.0.1", closed)
    assert s is None and rep == 91, rep
    code, body, err = curl("--socks5-hostname", proxy,
                           "http://localhost:%d/" % closed)
    assert code != 0 and body == b"", (code, body[:100], err)

    st = d.tunnel("rsocks")
    assert st["state"] == "up"
    assert st["target"] is None
    assert st["connections"]["total"] >= 9, st
    assert st["connections"]["failed"] >= 3, st
    assert st["out"] >= 6 * len(web.blob), st


@pytest.mark.limit(90)
def test_remote_forwards_after_sshd_restart(own_sshd, env, servers, http):
    """After the link drops (sshd restarted on the same port) every remote
    forward, a port-0 one and a remote-dynamic one too, is asked for again
    and works."""
    echo = servers(echo_handler)
    web = http()
    p_fixed, p_rd = free_port(), free_port()
    d = start_up(env, own_sshd,
                 [remote("fixed", tcp_listen(p_fixed), echo.target),
                  remote("any", "127.0.0.1:0", echo.target),
                  remote_dynamic("rd", tcp_listen(p_rd))],
                 defaults=FAST)
    p_any = listen_port(d.tunnel("any")["listen"])
    assert echo_roundtrip(("127.0.0.1", p_any), b"before") == b"before"

    own_sshd.restart()
    t0 = time.monotonic()
    code, out, err = d.tunctl("wait", "fixed", "any", "rd",
                              "--timeout", "20")
    dt = time.monotonic() - t0
    assert code == 0, (code, out, err)
    note("remote forwards back %.2fs after sshd restarted" % dt)
    p_any2 = listen_port(d.tunnel("any")["listen"])
    assert p_any2 != 0
    for p in (p_fixed, p_any2):
        payload = os.urandom(100000)
        assert echo_roundtrip(("127.0.0.1", p), payload) == payload, p
    code, body, err = curl("--socks5-hostname", "127.0.0.1:%d" % p_rd,
                           web.url(host="localhost"))
    assert code == 0 and body == web.blob, (code, err)
    assert d.link("srv")["state"] == "up"


@pytest.mark.limit(90)
@pytest.mark.parametrize("release", ["sigkill", "sigcont"])
def test_stale_listener_after_link_drop(own_sshd, env, servers, release):
    """The old session's sshd still holds the port after the link dropped
    (its processes are frozen, as when the server has not noticed that the
    client vanished): tunneld finds the link dead, reconnects, the new
    session's bind is refused and retried with backoff; once the old
    session dies (SIGKILL) or wakes and notices (SIGCONT) the tunnel is up
    within the backoff bound."""
    echo = servers(echo_handler)
    port = free_port()
    d = start_up(env, own_sshd, [remote("r", tcp_listen(port), echo.target)],
                 defaults=FAST)
    assert echo_roundtrip(("127.0.0.1", port), b"before") == b"before"
    old = proc_descendants(own_sshd.pid)
    assert old, "no sshd session process"
    dead_bound = FAST["keepalive_interval"] * (FAST["keepalive_count_max"]
                                               + 1)
    keepalive_midpoint(d, FAST["keepalive_interval"])
    t_frozen = time.time()
    for pid in old:
        os.kill(pid, signal.SIGSTOP)
    own_sshd.frozen = list(old)         # own_sshd.stop() thaws them
    try:
        # The SPEC bound as written, from the daemon's own log stamp.
        # (Or a probe's, if a network change elsewhere on the machine
        # came first: the same death, sooner.)
        t_dead = log_event(d.log, r"^link srv: no answer (from|to a probe) "
                           r".*link declared dead", after=t_frozen,
                           timeout=dead_bound + 10) - t_frozen
        assert t_dead <= dead_bound, t_dead
        d.wait_link("srv", "up", timeout=15)
        t_link = time.time() - t_frozen
        new = [k for k in proc_descendants(own_sshd.pid) if k not in old]
        assert new, "no new sshd session"
        d.wait_tunnel("r", "failed", timeout=10)
        t_failed = time.time() - t_frozen
        err_text = d.tunnel("r")["last_error"] or ""
        assert re.search(r"refus", err_text, re.I), err_text
        assert re.search(r"in use|stale", err_text), err_text
        # The frozen listener still holds the port: connects hang in its
        # backlog, no byte comes back.
        with connect(("127.0.0.1", port), timeout=3) as s:
            s.sendall(b"anyone?")
            s.settimeout(1.0)
            try:
                got = s.recv(10)
            except socket.timeout:
                got = None
            assert got is None, got
        # The refused bind is retried, never waiting more than backoff_max.
        log_event(d.log, r"^tunnel r: .*refus", after=time.time(),
                  timeout=FAST["backoff_max"] + SLACK)
        assert d.link("srv")["state"] == "up"
        assert d.tunnel("r")["state"] == "failed"

        t1 = time.time()
        sig = signal.SIGKILL if release == "sigkill" else signal.SIGCONT
        for pid in old:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if release == "sigcont":
            own_sshd.frozen = []
        d.wait_tunnel("r", "up", timeout=20)
        dt = log_event(d.log, r"^tunnel r: srv listens on ", after=t1) - t1
    finally:
        if own_sshd.frozen:
            for pid in own_sshd.frozen:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            own_sshd.frozen = []
    refusals = count_in_log(d.log, r"tunnel r: .*refus")
    note("stale listener (%s): link dead after %.2fs (bound %ds), new "
         "session up after %.2fs, tunnel failed (bind refused) at %.2fs, "
         "%d refused binds while the old session held the port; tunnel up "
         "%.2fs after %s (backoff_max %.1f)" %
         (release, t_dead, dead_bound, t_link, t_failed, refusals, dt,
          release.upper(), FAST["backoff_max"]))
    assert dt <= FAST["backoff_max"] + SLACK, dt
    payload = os.urandom(100000)
    assert wait_port(port, timeout=5)
    assert echo_roundtrip(("127.0.0.1", port), payload) == payload
    assert d.link("srv")["state"] == "up"


@pytest.mark.limit(60)
def test_remote_hanging_target_does_not_block(sshd, env, servers):
    """Connecting to a remote tunnel's target never blocks the daemon: with
    five connects hanging (the target's accept queue is full, its SYNs are
    dropped), other tunnels pass data and tunctl answers at once; a client
    that gives up frees its connection."""
    echo = servers(echo_handler)
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(0)
    fill = socket.create_connection(blocker.getsockname(), timeout=5)
    p_hang, p_ok = free_port(), free_port()
    clients = []
    try:
        d = start_up(env, sshd, [
            remote("hang", tcp_listen(p_hang),
                   tcp_listen(blocker.getsockname()[1])),
            remote("ok", tcp_listen(p_ok), echo.target)])
        for _ in range(5):
            s = connect(("127.0.0.1", p_hang), timeout=10)
            s.sendall(b"waiting for a target that never answers")
            clients.append(s)
        d.wait_for(lambda: d.tunnel("hang")["connections"]["active"] == 5,
                   5, what="5 connects under way")
        worst = 0.0
        for _ in range(5):
            t0 = time.monotonic()
            code, out, _ = d.tunctl("status")
            worst = max(worst, time.monotonic() - t0)
            assert code == 0
            t0 = time.monotonic()
            payload = os.urandom(100000)
            assert echo_roundtrip(("127.0.0.1", p_ok), payload) == payload
            worst = max(worst, time.monotonic() - t0)
        note("with 5 target connects hanging: tunctl status and a 100 kB "
             "echo took at most %.3fs" % worst)
        assert worst < SLACK, worst
        # The far-side clients give up.  (tunneld confirms a forwarded
        # channel before its target answers; the server passes the client's
        # EOF, which may be a half-close, and closes the channel only after
        # ours, so the connect is abandoned only when the target answers.
        # Measured, not asserted: OpenSSH's ssh -R keeps it until the
        # connect ends too.)
        for s in clients:
            s.close()
        clients = []
        time.sleep(3)
        lingering = d.tunnel("hang")["connections"]["active"]
        # The target answers (refuses): every abandoned connect is freed.
        fill.close()
        blocker.close()
        t0 = time.monotonic()
        d.wait_for(lambda: d.tunnel("hang")["connections"]["active"] == 0,
                   10, what="abandoned connects cleaned up")
        note("remote: %d of 5 connects still held 3 s after their far-side "
             "clients left; all freed %.2fs after the target refused" %
             (lingering, time.monotonic() - t0))
        assert d.tunnel("hang")["state"] == "up"
        assert d.link("srv")["state"] == "up"
        payload = os.urandom(1000)
        assert echo_roundtrip(("127.0.0.1", p_ok), payload) == payload
    finally:
        for s in clients:
            s.close()
        fill.close()
        blocker.close()


@pytest.mark.limit(90)
def test_remote_slow_reader_bounded_memory(sshd, env, servers):
    """Backpressure through a remote tunnel: a far-side client that does
    not read slows the target here, and a target that does not read slows
    the far-side client; the daemon does not grow; bytes stay in order."""
    from e2elib import Firehose, mem_limit, proc_rss_kb, recv_exact
    firehose = Firehose()
    block, stop = firehose.block, firehose.stop

    def deaf(conn):
        stop.wait(30)

    fh = servers(firehose)
    deaf_srv = servers(deaf)
    p1, p2 = free_port(), free_port()
    d = start_up(env, sshd, [remote("fh", tcp_listen(p1), fh.target),
                             remote("deaf", tcp_listen(p2),
                                    deaf_srv.target)])
    base = proc_rss_kb(d.pid)
    try:
        with connect(("127.0.0.1", p1), timeout=20) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
            first = recv_exact(s, 1000)
            time.sleep(3)
            grown = proc_rss_kb(d.pid) - base
            in_flight = firehose.sent
            note("remote target->far client asleep: target sent %d MiB, "
                 "daemon RSS +%d kB" % (in_flight >> 20, grown))
            assert in_flight < 128 << 20, in_flight >> 20
            # Under ASan freed chunks wait in the allocator's quarantine,
            # so RSS grows with the bytes that crossed the daemon's heap
            # (each in several copies) even when buffering is bounded:
            # measured +8-9 MB here, +22-24 MB for the deaf target below.
            # 48 MB is twice that; a daemon buffering without bound would
            # hold what it reads (30-60 MB/s under ASan, so 90 MB or more
            # in 3 s) plus the quarantined copies, and still fail.
            assert grown < mem_limit(64 * 1024, 48 * 1024), grown
            stream = first + recv_exact(s, (32 << 20) - 1000)
            for off in range(0, len(stream), len(block)):
                chunk = stream[off:off + len(block)]
                assert chunk == block[:len(chunk)], off

        # Growth from here on: under ASan the quarantine still holds the
        # 32 MiB read above.
        base = proc_rss_kb(d.pid)
        with connect(("127.0.0.1", p2), timeout=20) as s:
            s.setblocking(False)
            pushed = 0
            t_end = time.monotonic() + 3
            while time.monotonic() < t_end:
                try:
                    pushed += s.send(block)
                except BlockingIOError:
                    time.sleep(0.01)
            grown = proc_rss_kb(d.pid) - base
            note("remote far client->deaf target: pushed %d MiB, daemon "
                 "RSS +%d kB" % (pushed >> 20, grown))
            assert pushed < 128 << 20, pushed >> 20
            assert grown < mem_limit(64 * 1024, 48 * 1024), grown  # see above
    finally:
        stop.set()
    assert d.tunctl("status")[0] == 0


@pytest.mark.limit(60)
def test_remote_dynamic_garbage_and_half_request(sshd, env, servers):
    """The far-side SOCKS server (bytes arrive through the channel):
    garbage gets a failure or a close, half requests are closed after the
    handshake bound (10 s), an IPv6 target works, and the tunnel serves
    on."""
    import threading
    from e2elib import socks5_handshake
    echo6 = servers(echo_handler, ("::1", 0))
    p = free_port()
    d = start_up(env, sshd, [remote_dynamic("rsocks", tcp_listen(p))])
    closed = free_port().to_bytes(2, "big")
    lo = socket.inet_aton("127.0.0.1")
    rnd = bytearray(os.urandom(32 << 10))
    if rnd[0] in (4, 5):
        rnd[0] = 0x47
    cases = {
        "random": bytes(rnd),
        "socks4 endless userid": b"\x04\x01" + closed + lo +
        os.urandom(4000).replace(b"\x00", b"\x01"),
        "bind": b"\x05\x01\x00\x05\x02\x00\x01" + lo + closed,
        "half greeting": b"\x05\x02\x00",
        "half request": b"\x05\x01\x00\x05\x01\x00\x01\x7f",
    }
    done = {}

    def run(name, data):
        t0 = time.monotonic()
        try:
            with connect(("127.0.0.1", p), timeout=25) as s:
                try:
                    s.sendall(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                try:
                    got = recv_all(s, limit=1 << 16)
                except ConnectionResetError:
                    got = b""
            done[name] = (time.monotonic() - t0, got)
        except Exception as e:
            done[name] = (time.monotonic() - t0, repr(e))

    ts = [threading.Thread(target=run, args=kv, daemon=True)
          for kv in cases.items()]
    for t in ts:
        t.start()
    # Meanwhile: an IPv6 target through the far-side SOCKS server.
    with connect(("127.0.0.1", p), timeout=15) as s:
        assert socks5_handshake(s, "::1", echo6.port) == 0
        payload = os.urandom(200000)
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        assert recv_all(s) == payload
    for t in ts:
        t.join(30)
    note("remote-dynamic: " + ", ".join(
        "%s closed after %.2fs" % (k, v[0]) for k, v in sorted(done.items())))
    for name in cases:
        dt, got = done[name]
        assert isinstance(got, bytes), (name, got)
        assert dt <= 10 + SLACK, (name, dt)
        if name.startswith("half"):
            assert dt >= 8.5, (name, dt)
            assert got in (b"", b"\x05\x00"), (name, got)
    assert done["bind"][1][:4] == b"\x05\x00\x05\x07", done["bind"]
    assert d.alive()
    d.wait_for(lambda: d.tunnel("rsocks")["connections"]["active"] == 0, 5,
               what="no active connections")
    with connect(("127.0.0.1", p), timeout=15) as s:
        assert socks5_handshake(s, "::1", echo6.port) == 0
        s.sendall(b"still serving")
        s.shutdown(socket.SHUT_WR)
        assert recv_all(s) == b"still serving"
    assert d.link("srv")["state"] == "up"


@pytest.mark.limit(90)
def test_remote_dynamic_50_concurrent(sshd, env, servers):
    """50 SOCKS5 clients at once through the far-side SOCKS server, each
    with its own bytes, all intact."""
    import threading
    from e2elib import socks5_handshake
    echo = servers(echo_handler, backlog=1024)
    p = free_port()
    d = start_up(env, sshd, [remote_dynamic("rsocks", tcp_listen(p))])
    n = 50
    payloads = [os.urandom(64 << 10) for _ in range(n)]
    results = [None] * n
    go = threading.Barrier(n, timeout=30)

    def client(i):
        try:
            with connect(("127.0.0.1", p), timeout=40) as s:
                go.wait()
                rep = socks5_handshake(s, "127.0.0.1", echo.port)
                if rep != 0:
                    results[i] = "reply %d" % rep
                    return
                w = threading.Thread(target=lambda: (
                    s.sendall(payloads[i]), s.shutdown(socket.SHUT_WR)))
                w.start()
                got = recv_all(s)
                w.join(30)
                results[i] = got == payloads[i] or "got %d bytes" % len(got)
        except Exception as e:
            results[i] = repr(e)

    ts = [threading.Thread(target=client, args=(i,), daemon=True)
          for i in range(n)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    dt = time.monotonic() - t0
    bad = [(i, r) for i, r in enumerate(results) if r is not True]
    note("remote-dynamic: 50 concurrent SOCKS5 clients x 64 KiB in %.2fs"
         % dt)
    assert not bad, "%d of %d failed, e.g. %r" % (len(bad), n, bad[:3])
    d.wait_for(lambda: d.tunnel("rsocks")["connections"]["active"] == 0, 10,
               what="no active connections")
    st = d.tunnel("rsocks")
    assert st["connections"]["failed"] == 0, st
    assert st["in"] == n * (64 << 10), st
