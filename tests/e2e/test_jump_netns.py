"""Jump chains on real topologies: network namespaces joined by veth pairs,
an sshd in each, every hop reachable only from the one before it (netns.py).
"""

import hashlib
import os
import signal
import socket
import time
import types

import pytest

from e2elib import (log_event, note, recv_all, remote, socks5_connect,
                    transfer_both_ways)
from netns import known_hosts_for


def local_t(name, port, target, via):
    return {"name": name, "type": "local", "via": via,
            "listen": "127.0.0.1:%d" % port, "target": target}


def three_hops(topo, keys, wrong_key_at=None):
    """root -> h1 -> h2 -> h3, an sshd on each (h2's with another host key
    when wrong_key_at == "h2"); returns the hosts block for tunnels.conf,
    known_hosts text and the links."""
    for h in ("h1", "h2", "h3"):
        topo.host(h)
    l0 = topo.link(None, "h1", family=4)
    l1 = topo.link("h1", "h2", family=4)
    l2 = topo.link("h2", "h3", family=4)
    sshds = {}
    for h, addr in (("h1", l0.b4), ("h2", l1.b4), ("h3", l2.b4)):
        k = keys
        if h == wrong_key_at:
            k = types.SimpleNamespace(host_key=keys.other_key,
                                      host_pub=keys.other_pub,
                                      authorized_keys=keys.authorized_keys)
        sshds[h] = topo.sshd(h, addrs=[addr], keys=k)
    kh = "".join(known_hosts_for(a, 22, keys.host_pub)
                 for a in (l0.b4, l1.b4, l2.b4))
    hosts = {"h1": {"address": l0.b4, "port": 22},
             "h2": {"address": l1.b4, "port": 22, "jump": "h1"},
             "h3": {"address": l2.b4, "port": 22, "jump": "h2"}}
    return hosts, kh, (l0, l1, l2), sshds


FAST = {"keepalive_interval": 1, "keepalive_count_max": 2,
        "backoff_initial": 0.2, "backoff_max": 2.0, "connect_timeout": 5}


@pytest.mark.limit(240)
def test_three_hop_chain_64mib(topo, env, keys):
    """A tunnel via h3 (root -> h1 -> h2 -> h3) carries 64 MiB each way to
    services only h3 can reach; links show three links up and the chain."""
    hosts, kh, (l0, l1, l2), _ = three_hops(topo, keys)
    # h3 cannot be reached from root at all.
    r, _ = topo.probe(None, l2.b4, 22)
    assert r in ("unreachable", "timeout"), r
    data = os.urandom(64 << 20)
    path = env.path("blob")
    with open(path, "wb") as f:
        f.write(data)
    sink = topo.sink_server("h3", l2.b4, 9000)
    src = topo.source_server("h3", l2.b4, 9001, path)
    from e2elib import free_port
    pu, pd = free_port(), free_port()
    with open(env.known_hosts, "w") as f:
        f.write(kh)
    d = env.start([local_t("up", pu, sink.target, "h3"),
                   local_t("down", pd, src.target, "h3")], hosts=hosts,
                  known_hosts=False)
    assert d.tunctl("wait", "up", "down", "--timeout", "30")[0] == 0
    up, down, _ = transfer_both_ways(pu, pd, data)
    note("3-hop chain, 64 MiB: up %.2fs (%.0f MB/s), down %.2fs (%.0f MB/s)"
         % (up, 64 * 1.048576 / up, down, 64 * 1.048576 / down))
    lk = d.links()
    assert {h: lk[h]["state"] for h in ("h1", "h2", "h3")} == {
        "h1": "up", "h2": "up", "h3": "up"}, lk
    assert lk["h3"]["chain"] == ["h1", "h2", "h3"], lk["h3"]
    assert lk["h3"]["jump"] == "h2" and lk["h2"]["jump"] == "h1"
    code, out, _ = d.tunctl("links")
    assert "root@%s:22 via h1,h2" % l2.b4 in out, out
    # The connections to the services came from h3's sshd (its address).
    assert sink.peers() and set(sink.peers()) == {l2.b4}, sink.peers()


@pytest.mark.limit(180)
def test_first_hop_frozen_then_restarted(topo, env, keys):
    """h1's sshd frozen (sessions too): once h1's link is declared dead the
    links behind it leave `up` within 1 s; killed and started again, the
    tunnel via h3 works within 2 s of h1's sshd being back."""
    hosts, kh, (l0, l1, l2), sshds = three_hops(topo, keys)
    echo = topo.echo_server("h3", l2.b4, 7000)
    from e2elib import echo_roundtrip, free_port
    p = free_port()
    with open(env.known_hosts, "w") as f:
        f.write(kh)
    d = env.start([local_t("t", p, echo.target, "h3")], hosts=hosts,
                  known_hosts=False, defaults=FAST)
    assert d.tunctl("wait", "t", "--timeout", "30")[0] == 0
    assert echo_roundtrip(("127.0.0.1", p), b"before") == b"before"
    s1 = sshds["h1"]
    t0 = time.time()
    s1.freeze()
    try:
        t_dead = log_event(d.log, r"^link h1: .*declared dead", after=t0,
                           timeout=10)
        t_h2 = log_event(d.log, r"^link h2: up -> waiting", after=t0,
                         timeout=10)
        t_h3 = log_event(d.log, r"^link h3: up -> waiting", after=t0,
                         timeout=10)
        note("h1 frozen: declared dead after %.2fs; h2 left up %.3fs and "
             "h3 %.3fs after that" % (t_dead - t0, t_h2 - t_dead,
                                       t_h3 - t_dead))
        assert t_h2 - t_dead < 1.0 and t_h3 - t_dead < 1.0
        st = d.tunnel("t")
        assert st["state"] == "waiting", st
        assert "jump host h2" in (st["link_error"] or ""), st
    finally:
        # Killed while still frozen: a thaw first would let the listener
        # accept the daemon's queued reconnect and fork a session that
        # outlives the stop.
        for pid in s1.frozen:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        s1.proc.wait(5)
        s1.proc, s1.frozen = None, []
    d.wait_for(lambda: d.link("h1")["state"] != "up", 5,
               what="h1's link down once its sshd is gone")
    time.sleep(0.5)
    t1 = time.time()
    s1.start()
    t_back = time.time()
    d.wait_for(lambda: d.tunnel("t")["state"] == "up", 10,
               what="tunnel via h3 up again")
    assert echo_roundtrip(("127.0.0.1", p), b"after") == b"after"
    t_up = log_event(d.log, r"^link h3: up ", after=t1, timeout=5)
    note("h1's sshd back: the link via h3 up %.2fs later" % (t_up - t_back))
    assert t_up - t_back < 2.0, (t_up, t_back)


def test_wrong_host_key_at_second_hop(topo, env, keys):
    """h2 presents another key: its link fails with both fingerprints,
    h1's link is unaffected, and nothing behind h2 gets through."""
    hosts, kh, (l0, l1, l2), _ = three_hops(topo, keys, wrong_key_at="h2")
    echo = topo.echo_server("h3", l2.b4, 7000)
    from e2elib import free_port
    p = free_port()
    with open(env.known_hosts, "w") as f:
        f.write(kh)
    d = env.start([local_t("t", p, echo.target, "h3")], hosts=hosts,
                  known_hosts=False, defaults=FAST)
    d.wait_for(lambda: d.link("h2")["state"] == "failed", 15,
               what="h2 refused")
    lk = d.links()
    assert lk["h1"]["state"] == "up", lk["h1"]
    err = lk["h2"]["last_error"]
    assert keys.host_fp in err and keys.other_fp in err, err
    assert lk["h3"]["state"] in ("waiting", "idle", "connecting"), lk["h3"]
    assert d.tunnel("t")["state"] != "up"


@pytest.mark.limit(180)
def test_socks_into_lan_through_reverse_tunnel(topo, env, keys):
    """The seeds' scenario. A (namespace lan, its LAN behind it) pushes its
    sshd to B's loopback port 2201 with a remote tunnel; C (the root
    namespace) has host a = 127.0.0.1:2201 with jump b and a dynamic tunnel
    via a: SOCKS from C reaches a service on A's LAN, 16 MiB intact, and C
    cannot reach that address any other way."""
    topo.host("pub")            # B
    topo.host("lan")            # A
    topo.host("lanh")           # a machine on A's LAN
    lc = topo.link(None, "pub", family=4)      # C -> B
    la = topo.link("lan", "pub", family=4)     # A -> B
    ll = topo.link("lan", "lanh", family=4)    # A's LAN
    b_sshd = topo.sshd("pub", addrs=[lc.b4, la.b4])
    a_sshd = topo.sshd("lan", addrs=["127.0.0.1"])
    assert a_sshd and b_sshd
    sink = topo.sink_server("lanh", ll.b4, 9000)
    # C cannot reach the LAN, nor A.
    for addr in (ll.b4, ll.a4, la.a4):
        r, _ = topo.probe(None, addr, 9000)
        assert r in ("unreachable", "timeout"), (addr, r)

    # A: its tunneld in the lan namespace, a remote tunnel via B.
    a_env_sock = env.path("a.sock")
    da = topo.start_tunneld(
        env, "lan",
        [remote("a-ssh", "127.0.0.1:2201", "127.0.0.1:22", via="b")],
        hosts={"b": {"address": la.b4, "port": 22}},
        known_hosts=known_hosts_for(la.b4, 22, keys.host_pub),
        conf_name="a.conf", sock=a_env_sock)
    assert da.tunctl("wait", "a-ssh", "--timeout", "30")[0] == 0

    # C: host a through jump b, a dynamic tunnel via a.
    from e2elib import free_port
    ps = free_port()
    kh_c = env.path("known_hosts_c")
    with open(kh_c, "w") as f:
        f.write(known_hosts_for(lc.b4, 22, keys.host_pub))
        f.write(known_hosts_for("127.0.0.1", 2201, keys.host_pub))
    dc = env.start([{"name": "lan", "type": "dynamic", "via": "a",
                     "listen": "127.0.0.1:%d" % ps}],
                   hosts={"b": {"address": lc.b4, "port": 22},
                          "a": {"address": "127.0.0.1", "port": 2201,
                                "jump": "b"}},
                   defaults={"known_hosts": kh_c}, known_hosts=False,
                   conf_name="c.conf", sock=env.path("c.sock"))
    assert dc.tunctl("wait", "lan", "--timeout", "30")[0] == 0
    code, out, _ = dc.tunctl("links")
    assert "root@127.0.0.1:2201 via b" in out, out

    data = os.urandom(16 << 20)
    s, rep = socks5_connect(("127.0.0.1", ps), ll.b4, 9000, timeout=30)
    assert rep == 0, rep
    try:
        s.settimeout(60)
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        reply = recv_all(s).decode()
    finally:
        s.close()
    assert reply.split() == [str(len(data)),
                             hashlib.sha256(data).hexdigest()], reply
    # The LAN machine saw A's LAN address: A's sshd made the connection.
    assert sink.peers() == [ll.a4], sink.peers()
    note("SOCKS from C through B into A's LAN: 16 MiB intact")
    st = dc.tunnel("lan")
    assert st["in"] == len(data), st


def test_dual_stack_first_address_black_holed(topo, env, keys):
    """A host name with two addresses, IPv6 first, whose IPv6 path drops
    every packet: the link still comes up over IPv4 well within
    connect_timeout (each address has its own deadline, the next one starts
    after 250 ms), and says which address it uses."""
    topo.host("c")
    topo.host("t")
    lk = topo.link("c", "t")                # dual stack
    topo.sshd("t", addrs=[lk.b4, lk.b6])
    echo = topo.echo_server("t", lk.b4, 7000)
    topo.blackhole("c", lk.b6)
    r, dt = topo.probe("c", lk.b6, 22, timeout=1.0)
    assert r == "timeout", r                # silently dropped, no refusal
    topo.hosts_file("c", {"dual": [lk.b6, lk.b4]})
    from e2elib import free_port
    p = free_port()
    t0 = time.time()
    d = topo.start_tunneld(
        env, "c", [local_t("t", p, echo.target, "dual")],
        hosts={"dual": {"address": "dual", "port": 22}},
        defaults={"connect_timeout": 5},
        known_hosts=known_hosts_for("dual", 22, keys.host_pub))
    t_up = log_event(d.log, r"^link dual: up ", after=t0 - 1, timeout=10)
    note("dual stack, IPv6 black-holed: link up over IPv4 %.2fs after "
         "start (connect_timeout 5 s)" % (t_up - t0))
    assert t_up - t0 < 5, t_up - t0
    # The IPv6 address was tried first, then IPv4 won.
    with open(d.log) as f:
        text = f.read()
    assert "up (%s:22)" % lk.b4 in text, text[-2000:]
    assert d.tunctl("wait", "t", "--timeout", "5")[0] == 0
    s = topo.connect("c", ("127.0.0.1", p))
    try:
        s.sendall(b"dual")
        s.shutdown(socket.SHUT_WR)
        assert recv_all(s) == b"dual"
    finally:
        s.close()
