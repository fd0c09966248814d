"""Network-change awareness (netwatch.c, resolvwatch.c), on namespaces: a
route back, an address changed, a name added to the hosts file, a new
nameserver in resolv.conf: each is acted on at once, not after a backoff or
keepalive_interval x keepalive_count_max; and a burst of changes costs at
most one probe round a second.

Times are the daemon's own log stamps (millisecond), measured from just
before the command that changes the network.  Margins: the reaction itself
is immediate (the next loop turn, plus a 100 ms settle for files); what
the bound allows beyond it is an SSH handshake and login over a veth pair
(some 50 ms on -O2, 300 ms under ASan) and the scheduling of a loaded
machine: SLACK / 2 (0.5 s on -O2, 1 s under ASan).
"""

import ipaddress
import os
import re
import sys
import threading
import time

from e2elib import SLACK, free_port, log_event, log_events, note
from netns import IP, known_hosts_for, sh

MARGIN = SLACK / 2.0


def local_t(port, via="srv"):
    return {"name": "t", "type": "local", "via": via,
            "listen": "127.0.0.1:%d" % port, "target": "127.0.0.1:22"}


def v4_only(topo, host):
    """No IPv6 in host: its links' link-local addresses (and their
    duplicate address detection, a second later) would be changes of
    their own in the middle of a test."""
    sh(IP, "netns", "exec", topo.ns(host), "sysctl", "-q", "-w",
       "net.ipv6.conf.all.disable_ipv6=1",
       "net.ipv6.conf.default.disable_ipv6=1")


def pair(topo):
    """c (tunneld) <-> s (sshd), IPv4."""
    topo.host("c")
    topo.host("s")
    v4_only(topo, "c")
    lk = topo.link("c", "s", family=4)
    topo.sshd("s", addrs=[lk.b4])
    return lk


def long_backoff(d):
    """Wait for the link in backoff with at least 5 s to go; return it."""
    quiet(d)
    d.wait_for(lambda: d.link("srv")["state"] == "backoff" and
               (d.link("srv")["next_retry_seconds"] or 0) >= 5, 15,
               what="link srv in a long backoff")
    return d.link("srv")


def quiet(d, timeout=10.0):
    """Wait until the daemon's last network change round is a second old
    (a new veth's IPv6 link-local addresses come a moment after it), so
    the change a test makes gets a round at once, not a second later."""
    deadline = time.monotonic() + timeout
    while True:
        rounds = log_events(d.log, r"^network change ")
        if not rounds or time.time() - rounds[-1] >= 1.05:
            return
        assert time.monotonic() < deadline, "network never quiet"
        time.sleep(0.1)


def up_at(d, after, host="srv", timeout=10.0):
    return log_event(d.log, r"^link %s: up \(" % host, after=after,
                     timeout=timeout)


def test_route_back_ends_long_backoff(topo, env, keys):
    """c -> r -> s. The route to s's subnet is deleted: the up link's probe
    goes unanswered and it fails within 2 s; it then waits a long backoff
    (backoff_initial 20, backoff_max 60). The route is restored: the link
    is up within 1 s (+ MARGIN), not after the backoff."""
    for h in ("c", "r", "s"):
        topo.host(h)
    v4_only(topo, "c")
    l0 = topo.link("c", "r", family=4)
    l1 = topo.link("r", "s", family=4)
    topo.forwarding("r")
    net1 = "%s/%d" % (ipaddress.ip_interface("%s/24" % l1.b4).network
                      .network_address, 24)
    topo.route("c", net1, l0.b4)
    topo.route("s", "%s/24" % l0.a4, l1.a4)
    topo.sshd("s", addrs=[l1.b4])
    d = topo.start_tunneld(
        env, "c", [local_t(free_port())],
        hosts={"srv": {"address": l1.b4, "port": 22}},
        defaults={"backoff_initial": 20.0, "backoff_max": 60.0,
                  "keepalive_interval": 30, "keepalive_count_max": 3},
        known_hosts=known_hosts_for(l1.b4, 22, keys.host_pub))
    d.wait_link("srv", "up", timeout=15)
    quiet(d)

    t_del = time.time()
    sh(IP, "-n", topo.ns("c"), "route", "del", net1, "via", l0.b4)
    t_dead = log_event(d.log, r"^link srv: no answer to a probe 2\.0 s "
                       r"after a network change", after=t_del,
                       timeout=5 + SLACK)
    note("netwatch: route deleted: up link failed its probe %.2fs later" %
         (t_dead - t_del))
    assert 1.9 <= t_dead - t_del <= 2.0 + MARGIN, t_dead - t_del
    d.wait_link("srv", "backoff", timeout=5)
    lk = d.link("srv")
    # Retried at once after the failure (round of the route's deletion
    # is over): in a backoff of 10-20 s now.
    assert lk["next_retry_seconds"] is not None and \
        lk["next_retry_seconds"] >= 5, lk
    time.sleep(0.5)

    t_add = time.time()
    sh(IP, "-n", topo.ns("c"), "route", "add", net1, "via", l0.b4)
    t_up = up_at(d, t_add, timeout=5 + SLACK)
    note("netwatch: route restored: link up %.3fs later (backoff had "
         "%ds left)" % (t_up - t_add, lk["next_retry_seconds"]))
    assert t_up - t_add < 1.0 + MARGIN, t_up - t_add


def test_address_change_noticed(topo, env, keys):
    """Two idle up links to s: srv with keepalives at 30 s x 3, srv0 with
    none (keepalive_interval 0). c's address changes (DHCP gave another):
    both are declared dead within 2 s (the probe's deadline), not after
    90 s or never, and come back from the new address."""
    lk = pair(topo)
    d = topo.start_tunneld(
        env, "c", [local_t(free_port()),
                   dict(local_t(free_port(), via="srv0"), name="t0")],
        hosts={"srv": {"address": lk.b4, "port": 22},
               "srv0": {"address": lk.b4, "port": 22,
                        "keepalive_interval": 0}},
        defaults={"keepalive_interval": 30, "keepalive_count_max": 3,
                  "backoff_initial": 0.2, "backoff_max": 2.0},
        known_hosts=known_hosts_for(lk.b4, 22, keys.host_pub))
    d.wait_link("srv", "up", timeout=15)
    d.wait_link("srv0", "up", timeout=15)
    quiet(d)
    new = str(ipaddress.ip_address(lk.a4) + 2)
    ns = topo.ns("c")
    t0 = time.time()
    sh(IP, "-n", ns, "addr", "del", "%s/24" % lk.a4, "dev", lk.a_if)
    sh(IP, "-n", ns, "addr", "add", "%s/24" % new, "dev", lk.a_if)
    t_round = log_event(d.log, r"^network change \d+ \(.*address",
                        after=t0, timeout=5)
    t_dead = {h: log_event(d.log, r"^link %s: no answer to a probe" % h,
                           after=t0, timeout=5 + SLACK)
              for h in ("srv", "srv0")}
    t_up = {h: up_at(d, t0, host=h, timeout=10) for h in ("srv", "srv0")}
    note("netwatch: address changed: round after %.3fs; declared dead "
         "after %.2fs (keepalives 30 s x 3) and %.2fs (keepalives off), "
         "up again after %.2fs and %.2fs" % (
             t_round - t0, t_dead["srv"] - t0, t_dead["srv0"] - t0,
             t_up["srv"] - t0, t_up["srv0"] - t0))
    assert t_round - t0 < 0.5 + MARGIN
    for h in ("srv", "srv0"):
        assert t_dead[h] - t0 <= 2.0 + MARGIN, (h, t_dead[h] - t0)
    sshd = topo.sshds[0]
    with open(sshd.log) as f:
        assert f.read().count("Accepted publickey for root from %s " %
                              new) == 2


def test_burst_of_route_changes(topo, env, keys):
    """50 route changes over ~2.5 s: at most one probe round a second (a
    round at once, then one at the end of each second with changes), and
    the healthy link answers every probe and stays up."""
    lk = pair(topo)
    d = topo.start_tunneld(
        env, "c", [local_t(free_port())],
        hosts={"srv": {"address": lk.b4, "port": 22}},
        defaults={"keepalive_interval": 30, "keepalive_count_max": 3},
        known_hosts=known_hosts_for(lk.b4, 22, keys.host_pub))
    d.wait_link("srv", "up", timeout=15)
    up_since = d.link("srv")["since"]
    quiet(d)
    base = ipaddress.ip_network("%s/24" % lk.a4, strict=False)
    # Host routes inside c's own subnet via s: in range, harmless.
    dests = [str(base.network_address + 100 + i) for i in range(25)]
    ns = topo.ns("c")
    t0 = time.time()
    for i in range(50):
        verb = "add" if i < 25 else "del"
        sh(IP, "-n", ns, "route", verb, dests[i % 25], "via", lk.b4)
        time.sleep(0.04)
    t1 = time.time()
    time.sleep(1.5)             # the last round, at most 1 s after
    rounds = log_events(d.log, r"^network change \d+ \(.*route", after=t0)
    gaps = [b - a for a, b in zip(rounds, rounds[1:])]
    note("netwatch: 50 route changes in %.2fs: %d probe rounds, gaps %s" %
         (t1 - t0, len(rounds), ", ".join("%.3f" % g for g in gaps)))
    assert 2 <= len(rounds) <= int(t1 - t0) + 2, rounds
    assert all(g >= 0.95 for g in gaps), gaps
    assert not log_events(d.log, r"no answer to a probe", after=t0)
    assert log_events(d.log, r"^link srv: probe answered in", after=t0)
    lkj = d.link("srv")
    assert lkj["state"] == "up" and lkj["since"] == up_since, lkj


def test_name_added_to_hosts_file(topo, env, keys):
    """The host's name does not resolve (a hosts file without it, no
    nameserver): the link waits a long backoff. The name is added to the
    namespace's hosts file (a bind mount over /etc/hosts: only the inode
    watch sees it): the link is up within 1 s (+ MARGIN)."""
    lk = pair(topo)
    hosts = topo.hosts_file("c", {})
    d = topo.start_tunneld(
        env, "c", [local_t(free_port())],
        hosts={"srv": {"address": "srvname", "port": 22}},
        defaults={"backoff_initial": 20.0, "backoff_max": 60.0},
        known_hosts=known_hosts_for("srvname", 22, keys.host_pub))
    lkj = long_backoff(d)
    assert "cannot resolve srvname" in lkj["last_error"], lkj
    time.sleep(0.3)
    t0 = time.time()
    with open(hosts, "a") as f:
        f.write("%s srvname\n" % lk.b4)
    t_up = up_at(d, t0, timeout=5 + SLACK)
    note("netwatch: name added to the hosts file: link up %.3fs later "
         "(backoff had %ss left)" % (t_up - t0, lkj["next_retry_seconds"]))
    assert t_up - t0 < 1.0 + MARGIN, t_up - t0
    log_event(d.log, r"^resolver: %s changed" % re.escape("/etc/hosts"),
              after=t0, timeout=1)


DNS_SCRIPT = r'''
import socket, struct, sys, threading, os
addr, name, answer, life = sys.argv[1], sys.argv[2], sys.argv[3], \
    float(sys.argv[4])
threading.Timer(life, os._exit, (0,)).start()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((addr, 53))
sys.stderr.write("READY\n"); sys.stderr.flush()
while True:
    q, peer = s.recvfrom(512)
    if len(q) < 17:
        continue
    qid, flags, qd = struct.unpack("!HHH", q[:6])
    i, labels = 12, []
    while i < len(q) and q[i] != 0 and len(labels) < 64:
        labels.append(q[i + 1:i + 1 + q[i]].decode("ascii", "replace"))
        i += 1 + q[i]
    qtype, qclass = struct.unpack("!HH", q[i + 1:i + 5])
    qname = ".".join(labels).lower()
    question = q[12:i + 5]
    sys.stderr.write("query %s %d\n" % (qname, qtype)); sys.stderr.flush()
    rcode, ans = 3, b""
    if qname == name:
        rcode = 0
        if qtype == 1:
            ans = struct.pack("!HHHIH", 0xc00c, 1, 1, 60, 4) + \
                socket.inet_aton(answer)
    hdr = struct.pack("!HHHHHH", qid, 0x8180 | rcode, 1,
                      1 if ans else 0, 0, 0)
    s.sendto(hdr + question + ans, peer)
'''


def test_resolv_conf_replaced(topo, env, keys, tdir):
    """resolv.conf is a symlink (as systemd-resolved's is) to a file that
    is replaced by rename: from a nameserver that does not answer to one
    that does (a small responder in c). The link, in a long backoff after
    its failed lookup, is up within 1 s (+ MARGIN) of the rename, and the
    daemon was not restarted. (The file names come from TUNNELD_RESOLV_CONF
    and TUNNELD_HOSTS: /etc's own files are the machine's.)"""
    lk = pair(topo)
    etc, run = os.path.join(tdir, "etc"), os.path.join(tdir, "run")
    os.makedirs(etc)
    os.makedirs(run)
    stub = os.path.join(run, "stub-resolv.conf")
    with open(stub, "w") as f:
        f.write("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    resolv = os.path.join(etc, "resolv.conf")
    os.symlink("../run/stub-resolv.conf", resolv)
    hosts = os.path.join(etc, "hosts")
    with open(hosts, "w") as f:
        f.write("127.0.0.1 localhost\n")
    dns = topo.popen("c", [sys.executable, "-c", DNS_SCRIPT, "127.0.0.53",
                           "srv.example.test", lk.b4, "120"], name="dns")
    deadline = time.monotonic() + 10
    while "READY" not in open(dns.log).read():
        assert time.monotonic() < deadline and dns.alive(), \
            open(dns.log).read()
        time.sleep(0.05)
    d = topo.start_tunneld(
        env, "c", [local_t(free_port())],
        hosts={"srv": {"address": "srv.example.test", "port": 22}},
        defaults={"backoff_initial": 20.0, "backoff_max": 60.0},
        known_hosts=known_hosts_for("srv.example.test", 22, keys.host_pub),
        daemon_env={"TUNNELD_RESOLV_CONF": resolv,
                    "TUNNELD_HOSTS": hosts})
    lkj = long_backoff(d)
    assert "cannot resolve srv.example.test" in lkj["last_error"], lkj
    pid = d.pid
    time.sleep(0.3)
    tmp = os.path.join(run, ".stub-resolv.conf.new")
    with open(tmp, "w") as f:
        f.write("nameserver 127.0.0.53\noptions timeout:1 attempts:1\n")
    t0 = time.time()
    os.rename(tmp, stub)
    t_up = up_at(d, t0, timeout=5 + SLACK)
    t_note = log_event(d.log, r"^resolver: .*changed: nameservers now "
                       r"127\.0\.0\.53:53", after=t0, timeout=1)
    note("netwatch: resolv.conf replaced (symlink target renamed over): "
         "noticed after %.3fs, link up %.3fs later (backoff had %ss left)"
         % (t_note - t0, t_up - t0, lkj["next_retry_seconds"]))
    assert t_up - t0 < 1.0 + MARGIN, t_up - t0
    assert d.pid == pid and d.alive()
    assert "query srv.example.test 1" in open(dns.log).read()
    # A second replacement is seen too (the watch follows the new file),
    # and a rewrite with the same text reloads nothing.
    t1 = time.time()
    with open(tmp, "w") as f:
        f.write("nameserver 127.0.0.1\nnameserver 127.0.0.53\n")
    os.rename(tmp, stub)
    log_event(d.log, r"^resolver: .*nameservers now 127\.0\.0\.1:53, "
              r"127\.0\.0\.53:53", after=t1, timeout=2 + SLACK)
    time.sleep(0.5)
    t2 = time.time()
    with open(stub, "w") as f:
        f.write("nameserver 127.0.0.1\nnameserver 127.0.0.53\n")
    time.sleep(0.5)
    assert not log_events(d.log, r"^resolver: ", after=t2)


def test_probe_behind_bulk_upload(topo, env, keys):
    """A bulk upload over a slow path (c's side shaped to 512 kbit/s): the
    probe's keepalive waits behind 300 KB of queued data, far longer than
    2 s, and the server may send no SSH packet meanwhile (OpenSSH adjusts
    the window once per megabyte), but its TCP acknowledges our data: a
    harmless network change must not kill the busy link."""
    lk = pair(topo)
    sink = topo.sink_server("s", lk.b4, 9000)
    port = free_port()
    d = topo.start_tunneld(
        env, "c", [{"name": "up", "type": "local", "via": "srv",
                    "listen": "127.0.0.1:%d" % port,
                    "target": sink.target}],
        hosts={"srv": {"address": lk.b4, "port": 22}},
        defaults={"keepalive_interval": 30, "keepalive_count_max": 3},
        known_hosts=known_hosts_for(lk.b4, 22, keys.host_pub))
    d.wait_link("srv", "up", timeout=15)
    sh(IP, "netns", "exec", topo.ns("c"), "tc", "qdisc", "add", "dev",
       lk.a_if, "root", "tbf", "rate", "512kbit", "burst", "32kbit",
       "latency", "400ms")
    quiet(d)
    s = topo.connect("c", ("127.0.0.1", port))
    s.settimeout(1.0)
    stop = threading.Event()

    def upload():
        chunk = b"x" * 65536
        end = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < end:
            try:
                s.send(chunk)
            except OSError:
                pass            # a full buffer: 1 s timeout, try again
    th = threading.Thread(target=upload, daemon=True)
    th.start()
    try:
        # Wait until the session's socket holds 300 KB (4.7 s at 512
        # kbit/s) the kernel has not sent: a keepalive now waits behind it.
        deadline = time.monotonic() + 15
        while True:
            out = sh(IP, "netns", "exec", topo.ns("c"), "ss", "-tnH",
                     "dst", lk.b4)
            q = [int(l.split()[2]) for l in out.splitlines() if l.strip()]
            if q and max(q) >= 300000:
                break
            assert time.monotonic() < deadline, out
            time.sleep(0.1)
        t0 = time.time()
        dests = str(ipaddress.ip_address(lk.a4) + 100)
        sh(IP, "-n", topo.ns("c"), "route", "add", dests, "via", lk.b4)
        log_event(d.log, r"^network change \d+ \(route", after=t0,
                  timeout=2)
        time.sleep(2.5 + MARGIN)
        ok = log_events(d.log, r"^link srv: probe not answered yet, but",
                        after=t0)
        with open(d.log, errors="replace") as f:
            lines = [l for l in f if "probe" in l]
        note("netwatch: probe during a 512 kbit/s upload (%d KB unsent on "
             "the session's socket): %s" % (max(q) >> 10,
                                            lines[-1].split(": ", 1)[-1]
                                            .strip() if lines else "?"))
        assert ok, "".join(lines[-5:])
        assert not log_events(d.log, r"no answer to a probe", after=t0)
        assert d.link("srv")["state"] == "up"
    finally:
        stop.set()
        th.join(5)
        s.close()
