"""The namespace harness itself (netns.py): a root -> h1 -> h2 chain where
each hop is reachable only from the previous one, OpenSSH's ssh -J through
it, black holes, private hosts files, and a teardown that leaves nothing.

If these fail, the jump-host tests' failures say nothing about tunneld.
"""

import hashlib
import os
import re
import socket
import subprocess
import time

from e2elib import (SLACK, echo_handler, echo_roundtrip, free_port, note,
                    transfer_both_ways, wait_port)
from netns import Topology, known_hosts_for, write_ssh_config


def banner(t, host, addr, port=22, timeout=1.0):
    """The first bytes an sshd sends from host's view, or None if silent."""
    try:
        s = t.connect(host, (addr, port), timeout=timeout)
    except OSError:
        return None
    try:
        s.settimeout(timeout)
        return s.recv(64)
    except socket.timeout:
        return None
    finally:
        s.close()


def chain(topo):
    """root -> h1 -> h2, dual stack, an sshd on each host."""
    topo.host("h1")
    topo.host("h2")
    l0 = topo.link(None, "h1")
    l1 = topo.link("h1", "h2")
    s1 = topo.sshd("h1")
    s2 = topo.sshd("h2")
    return l0, l1, s1, s2


def test_chain_reachability(topo):
    l0, l1, s1, s2 = chain(topo)
    assert s1.addrs == [l0.b4, l0.b6, l1.a4, l1.a6]
    # root reaches h1's sshd on both families.
    for a in (l0.b4, l0.b6):
        r, dt = topo.probe(None, a, 22)
        assert r == "connected", (a, r)
        assert banner(topo, None, a).startswith(b"SSH-2.0-")
    # ... but nothing beyond h1: not h2, not h1's far side.
    for a in (l1.b4, l1.b6, l1.a4, l1.a6):
        r, dt = topo.probe(None, a, 22, timeout=1.0)
        assert r in ("unreachable", "timeout"), (a, r)
        assert dt <= 1.0 + SLACK
        note("netns: root -> %s: %s in %.4fs" % (a, r, dt))
    # h1 reaches h2; h2 has no way back to root (no route, no forwarding).
    for a in (l1.b4, l1.b6):
        assert topo.probe("h1", a, 22)[0] == "connected"
    for a in (l0.a4, l0.a6):
        assert topo.probe("h2", a, 22)[0] == "unreachable"
    # A namespace's own loopback is its own.
    assert topo.probe("h2", "127.0.0.1", 22)[0] == "refused"


def test_ssh_jump_forward_and_transfer(topo, keys, tdir):
    l0, l1, s1, s2 = chain(topo)
    data = os.urandom(1 << 20)
    src = os.path.join(tdir, "blob.bin")
    with open(src, "wb") as f:
        f.write(data)
    echo = topo.echo_server("h2", l1.b4, 7)
    sink = topo.sink_server("h2", l1.b4, 9)
    source = topo.source_server("h2", l1.b4, 19, src)
    inproc = topo.server("h2", echo_handler, (l1.b6, 0))

    kh = os.path.join(tdir, "known_hosts")
    with open(kh, "w") as f:
        f.write(known_hosts_for(l0.b4, 22, keys.host_pub))
        f.write(known_hosts_for(l1.b4, 22, keys.host_pub))
    cfg = write_ssh_config(os.path.join(tdir, "ssh_config"), {
        "hop1": (l0.b4, 22, None),
        "hop2": (l1.b4, 22, "hop1"),
    }, keys.client_key, kh)
    pe, pu, pd, pi = (free_port() for _ in range(4))
    cmd = ["ssh", "-F", cfg, "-N",
           "-L", "127.0.0.1:%d:%s:7" % (pe, l1.b4),
           "-L", "127.0.0.1:%d:%s:9" % (pu, l1.b4),
           "-L", "127.0.0.1:%d:%s:19" % (pd, l1.b4),
           "-L", "127.0.0.1:%d:[%s]:%d" % (pi, l1.b6, inproc.port),
           "hop2"]
    t0 = time.monotonic()
    p = topo.popen(None, cmd, name="ssh-J", stdout=subprocess.DEVNULL)
    assert wait_port(pe, timeout=10 + SLACK), open(p.log).read()
    note("netns: ssh -J root->h1->h2 forwarding after %.2fs" %
         (time.monotonic() - t0))
    assert echo_roundtrip(("127.0.0.1", pe), b"x" * 1000) == b"x" * 1000
    # h1's sshd opened the TCP connection to h2's sshd; h2's sshd (the
    # last hop) opened the one to the echo server, from its own address.
    with open(s2.log) as f:
        assert "Accepted publickey for root from %s " % l1.a4 in f.read()
    assert set(echo.peers()) == {l1.b4}, "h2's echo saw %s" % echo.peers()
    assert echo_roundtrip(("127.0.0.1", pi), b"v6" * 500) == b"v6" * 500
    assert inproc.accepted == 1 and not inproc.errors
    dt_up, dt_down, reply = transfer_both_ways(pu, pd, data)
    assert reply.split() == [str(len(data)), hashlib.sha256(data).hexdigest()]
    note("netns: 1 MiB through ssh -J: up %.3fs, down %.3fs" %
         (dt_up, dt_down))
    assert not (echo.errors() + sink.errors() + source.errors())
    # One session on each hop, both ours.
    assert len(s1.sessions()) == 1 and len(s2.sessions()) == 1

    # Freezing the jump host stalls the path; thawing resumes it.
    s1.freeze()
    s = socket.create_connection(("127.0.0.1", pe), timeout=5)
    s.sendall(b"frozen?")
    s.settimeout(1.0)
    try:
        got = s.recv(16)
    except socket.timeout:
        got = None
    assert got is None, "answer through a frozen jump host: %r" % got
    s1.thaw()
    s.settimeout(10 + SLACK)
    assert s.recv(16) == b"frozen?"
    s.close()
    p.stop()
    assert not p.alive()


def test_sshd_stop_start_freeze(topo):
    topo.host("h1")
    l0 = topo.link(None, "h1")
    s1 = topo.sshd("h1", addrs=[l0.b4])
    assert s1.addrs == [l0.b4]
    assert banner(topo, None, l0.b4).startswith(b"SSH-2.0-")
    # Only the address asked for.
    assert topo.probe(None, l0.b6, 22)[0] == "refused"
    pids = s1.freeze()
    assert pids and pids[0] == s1.pid
    # The kernel still completes the handshake; sshd says nothing.
    assert banner(topo, None, l0.b4, timeout=1.0) is None
    s1.thaw()
    assert banner(topo, None, l0.b4, timeout=5.0).startswith(b"SSH-2.0-")
    s1.stop()
    assert topo.probe(None, l0.b4, 22)[0] == "refused"
    s1.start()
    assert banner(topo, None, l0.b4, timeout=5.0).startswith(b"SSH-2.0-")


def test_blackhole_one_family(topo):
    topo.host("c")
    topo.host("h1")
    l0 = topo.link(None, "h1")
    l1 = topo.link("c", "h1")
    topo.sshd("h1")
    # In the root namespace and in a host's namespace.
    for host, lk in ((None, l0), ("c", l1)):
        topo.blackhole(host, lk.b6)
        r6, dt6 = topo.probe(host, lk.b6, 22, timeout=1.0)
        r4, dt4 = topo.probe(host, lk.b4, 22, timeout=1.0)
        assert r6 == "timeout" and dt6 >= 1.0, (r6, dt6)
        assert r4 == "connected" and dt4 < 0.5, (r4, dt4)
        note("netns: %s: black-holed %s: %s after %.3fs; %s: %s in %.4fs" %
             (host or "root", lk.b6, r6, dt6, lk.b4, r4, dt4))
        topo.unblackhole(host, lk.b6)
        assert topo.probe(host, lk.b6, 22)[0] == "connected"
    # A whole prefix, here IPv4.
    topo.blackhole("c", "%s/24" % l1.b4)
    assert topo.probe("c", l1.b4, 22, timeout=0.5)[0] == "timeout"
    assert topo.probe("c", l1.b6, 22)[0] == "connected"
    topo.unblackhole("c", "%s/24" % l1.b4)
    assert topo.probe("c", l1.b4, 22)[0] == "connected"


def test_hosts_file_dual_stack_name(topo, env, keys):
    """A name with two addresses (IPv6 first, black-holed; then IPv4) for
    processes in namespace c: glibc and tunneld (evdns, which reads the
    bind-mounted /etc/hosts itself) both see the file's order."""
    topo.host("c")
    topo.host("h1")
    lk = topo.link("c", "h1")
    topo.sshd("h1")
    topo.blackhole("c", lk.b6)
    topo.hosts_file("c", {"dual": [lk.b6, lk.b4]})
    code, out, err = topo.run("c", "getent", "ahosts", "dual")
    assert code == 0, err
    order = [l.split()[0] for l in out.splitlines() if "STREAM" in l]
    assert order == [lk.b6, lk.b4], out
    # The root namespace's /etc/hosts is untouched.
    assert subprocess.run(["getent", "ahosts", "dual"],
                          capture_output=True, timeout=10).returncode != 0

    d = topo.start_tunneld(
        env, "c",
        [{"name": "t1", "type": "local", "via": "dual",
          "listen": "127.0.0.1:%d" % free_port(), "target": "127.0.0.1:7"}],
        hosts={"dual": {"address": "dual", "port": 22}},
        defaults={"connect_timeout": 2},
        known_hosts=known_hosts_for("dual", 22, keys.host_pub))
    def tries():
        """The addresses of the daemon's connect attempts, in order (any
        log line about connecting that names one of the two)."""
        rx = re.compile(r"(%s|%s)\]?:22\b" % (re.escape(lk.b6),
                                                re.escape(lk.b4)))
        with open(d.log, errors="replace") as f:
            text = f.read().split("=== log", 1)[-1]
        return [m.group(1) for l in text.splitlines() if "connect" in l
                for m in rx.finditer(l)]
    d.wait_for(tries, timeout=5 + SLACK, what="a connect attempt")
    assert tries()[0] == lk.b6, tries()
    # Informational: what the daemon does after the black hole (the jump
    # tests decide what it must do).
    try:
        dt = d.wait_link("dual", "up", timeout=6 + SLACK)
        note("netns: tunneld in c: link dual up %.2fs after start" % dt)
    except AssertionError:
        note("netns: tunneld in c: link dual not up within 6s")
    note("netns: tunneld in c: connect attempts %s" % tries())


def test_teardown_leaves_nothing(tdir, keys):
    t = Topology(os.path.join(tdir, "topo"), keys)
    try:
        t.host("h1")
        t.host("h2")
        l0 = t.link(None, "h1")
        l1 = t.link("h1", "h2")
        s1 = t.sshd("h1")
        t.sshd("h2")
        echo = t.echo_server("h2", l1.b4, 7)
        t.server("h2", echo_handler, (l1.b4, 8))
        sleeper = t.popen("h1", ["sleep", "300"])
        t.blackhole(None, l0.b6)
        t.blackhole("h1", l1.b6)
        t.hosts_file("h1", {"h2": [l1.b4]})
        # A session that is still open at teardown.
        c = t.connect("h1", (l1.b4, 7))
        pids = [s1.pid, echo.pid, sleeper.pid] + s1.sessions()
        mine = t.leftovers()
        assert len(mine) >= 5, mine     # 2 netns, 2 root ifs, routes, etc
    finally:
        t.close()
    c.close()
    assert t.leftovers() == []
    assert not any(os.path.exists("/proc/%d" % p) for p in pids), pids
    out = subprocess.run(["ip", "netns", "list"], capture_output=True,
                         text=True, timeout=10).stdout
    assert t.prefix not in out
    assert not os.path.exists("/etc/netns/%s-h1" % t.prefix)
