"""Multi-host topologies for the end-to-end tests, built from Linux network
namespaces (for the jump-host tests).

    # conftest.py imports the topo fixture for every test module:
    def test_x(topo, env):            # topo first: it is torn down last
        h1, h2 = topo.host("h1"), topo.host("h2")
        l0 = topo.link(None, "h1")    # root <-> h1, dual stack, allocated
        l1 = topo.link("h1", "h2")    # h1 <-> h2
        topo.sshd("h1"); topo.sshd("h2")
        topo.echo_server("h2", l1.b4, 7)

Every host is a namespace named <prefix>-<name>, prefix "tdj<pid%10000><a-z>"
unique per topology of a run; only lo is up until a link is made.  A link is
a veth pair whose ends get addresses in 198.18.0.0/15 (IPv4 benchmarking
range) and fd00:7d::/32 (ULA): nothing else is accepted.  Namespaces have no
routes but their connected ones and forward nothing, so a host is reachable
only from its neighbours; topo.route() and topo.forwarding() change that
when a test asks.  The root namespace gets, per topology, an "unreachable"
route for both whole ranges (distinct metric), so nothing of ours ever
leaves by the default route: root reaches its neighbours (longer prefix)
and gets EHOSTUNREACH at once for anything further.

Everything started here (sshd, servers, commands, tunneld in a namespace)
is stopped by PID at teardown; the namespaces, the root ends of links, the
root routes and /etc/netns/<ns> are removed, even after a failure.
"""

import ctypes
import errno
import fcntl
import ipaddress
import itertools
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import e2elib
from e2elib import SSHD_BIN, Server, Sshd, Tunneld, tail

V4_RANGE = ipaddress.ip_network("198.18.0.0/15")
V6_RANGE = ipaddress.ip_network("fd00:7d::/32")
IP = "/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else "ip"
NETNS_RUN = "/run/netns"
NETNS_ETC = "/etc/netns"
# Per-topology root routes: metric ROUTE_METRIC + block.  The block (0..31)
# also picks the topology's allocated subnets, so topologies of parallel
# runs never share an address in the root namespace.
ROUTE_METRIC = 0x7d000
BLOCKS = 32
SUBNETS = 16                    # allocated subnets per topology
CLONE_NEWNET = 0x40000000
SERVER_LIFE = 600.0             # a helper server exits by itself after this

_libc = ctypes.CDLL(None, use_errno=True)
_tops = itertools.count(0)


def _logs_append(title, path):
    """Attach a log to a failed test's report (conftest's list), if any."""
    c = sys.modules.get("conftest")
    if c is not None and hasattr(c, "_logs"):
        c._logs.append((title, path))


def sh(*cmd, timeout=10, check=True):
    """Run a command bounded in time; return its stdout (text)."""
    p = subprocess.run([str(c) for c in cmd], capture_output=True,
                       text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(map(str, cmd)),
                                                p.returncode,
                                                p.stderr.strip()))
    return p.stdout


def family_of(addr):
    return 6 if ":" in addr else 4


def check_addr(addr, prefix):
    """Refuse any address outside 198.18.0.0/15 and fd00:7d::/32."""
    net = ipaddress.ip_interface("%s/%d" % (addr, prefix)).network
    rng = V6_RANGE if net.version == 6 else V4_RANGE
    if not net.subnet_of(rng):
        raise ValueError("%s/%d is outside %s: the topology uses only the "
                         "benchmarking range and its ULA" % (addr, prefix,
                                                             rng))
    return net


def known_hosts_for(addr, port, pub):
    """A known_hosts line for addr:port as OpenSSH and tunneld look it up:
    the bare address on port 22, "[addr]:port" otherwise (an IPv6 address
    is written bare too, never "[fd00:7d::2]:22": that would not match)."""
    kt, blob = pub.split()[:2]
    host = addr if int(port) == 22 else "[%s]:%d" % (addr, int(port))
    return "%s %s %s\n" % (host, kt, blob)


# ---------------------------------------------------------------------------
# Running code inside a namespace


def in_netns(ns, fn, *args, timeout=30.0):
    """Call fn(*args) in a fresh thread that joined namespace ns (None: the
    root namespace, called directly).  setns(CLONE_NEWNET) is per thread:
    sockets that fn creates belong to ns for their whole life, whatever
    thread uses them later.  fn must be bounded in time."""
    if ns is None:
        return fn(*args)
    out = {}

    def run():
        try:
            fd = os.open(os.path.join(NETNS_RUN, ns),
                         os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    e = ctypes.get_errno()
                    raise OSError(e, "setns %s: %s" % (ns, os.strerror(e)))
            finally:
                os.close(fd)
            out["v"] = fn(*args)
        except BaseException as e:     # handed to the caller
            out["e"] = e
    t = threading.Thread(target=run, daemon=True, name="netns-" + ns)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise TimeoutError("in_netns(%s, %s) still running after %.0fs" %
                           (ns, getattr(fn, "__name__", fn), timeout))
    if "e" in out:
        raise out["e"]
    return out["v"]


def ns_connect(ns, addr, timeout=10.0):
    """A TCP socket connected to addr (host, port) from namespace ns."""
    return in_netns(ns, e2elib.connect, addr, timeout,
                    timeout=timeout + 5)


def probe(ns, host, port, timeout=1.0):
    """Try a TCP connect from ns; return (outcome, seconds), outcome one of
    "connected", "refused", "timeout", "unreachable" or "error: ...".
    "unreachable" is EHOSTUNREACH/ENETUNREACH (a route says no at once),
    "timeout" is silence (a black hole, or a frozen peer's full backlog)."""
    def attempt():
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(timeout)
        t0 = time.monotonic()
        try:
            s.connect((host, port))
            r = "connected"
        except socket.timeout:
            r = "timeout"
        except ConnectionRefusedError:
            r = "refused"
        except OSError as e:
            if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
                r = "unreachable"
            else:
                r = "error: %s" % e
        finally:
            s.close()
        return r, time.monotonic() - t0
    return in_netns(ns, attempt, timeout=timeout + 10)


# ---------------------------------------------------------------------------
# Helper servers in a namespace, as subprocesses

_SERVER_SCRIPT = r'''
import hashlib, os, socket, sys, threading, time
mode, host, port, life = sys.argv[1], sys.argv[2], int(sys.argv[3]), \
    float(sys.argv[4])
path = sys.argv[5] if len(sys.argv) > 5 else None
data = open(path, "rb").read() if mode == "source" else b""
threading.Timer(life, os._exit, (0,)).start()
fam = socket.AF_INET6 if ":" in host else socket.AF_INET
ls = socket.socket(fam, socket.SOCK_STREAM)
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind((host, port))
ls.listen(128)
print("READY %d" % ls.getsockname()[1], flush=True)

def handle(c, peer):
    try:
        if mode == "echo":
            while True:
                b = c.recv(1 << 16)
                if not b:
                    break
                c.sendall(b)
            c.shutdown(socket.SHUT_WR)
        elif mode == "sink":
            h, n = hashlib.sha256(), 0
            while True:
                b = c.recv(1 << 20)
                if not b:
                    break
                h.update(b)
                n += len(b)
            c.sendall(("%d %s\n" % (n, h.hexdigest())).encode())
            c.shutdown(socket.SHUT_WR)
        elif mode == "source":
            c.sendall(data)
            c.shutdown(socket.SHUT_WR)
            while c.recv(1 << 16):
                pass
        sys.stderr.write("done %s\n" % (peer,))
    except Exception as e:
        sys.stderr.write("error %s %r\n" % (peer, e))
    finally:
        sys.stderr.flush()
        c.close()

while True:
    c, peer = ls.accept()
    c.settimeout(60)
    sys.stderr.write("accept %s\n" % (peer[0],))
    sys.stderr.flush()
    threading.Thread(target=handle, args=(c, peer[0]), daemon=True).start()
'''


class NsProc:
    """A subprocess run in a namespace (ip netns exec execs in place, so
    proc.pid is the command's own PID).  stop() signals that PID only."""

    def __init__(self, ns, cmd, log, **kw):
        self.ns = ns
        self.log = log
        pre = [IP, "netns", "exec", ns] if ns else []
        lf = open(log, "a")
        self.proc = subprocess.Popen(pre + [str(c) for c in cmd],
                                     stdin=subprocess.DEVNULL,
                                     stderr=lf, **kw)
        lf.close()

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=5.0):
        """SIGTERM (then SIGKILL) the command, then SIGKILL whatever of
        its descendants (seen before the signal) outlived it."""
        kids = []
        if self.proc.poll() is None:
            kids = e2elib.proc_descendants(self.proc.pid)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for k in kids:
            if e2elib._state(k) not in ("Z", "X"):
                try:
                    os.kill(k, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()
        return self.proc.returncode


class NsServer(NsProc):
    """An echo, sink or source server (python3) on addr:port in ns.  Its log
    has a line "accept PEER_ADDRESS" per connection (see .peers())."""

    def __init__(self, ns, mode, addr, port, log, path=None,
                 life=SERVER_LIFE, timeout=10.0):
        cmd = [sys.executable, "-c", _SERVER_SCRIPT, mode, addr, port, life]
        if path:
            cmd.append(path)
        super().__init__(ns, cmd, log, stdout=subprocess.PIPE)
        self.mode = mode
        self.addr = addr
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        line = b""
        deadline = time.monotonic() + timeout
        while not line.endswith(b"\n") and time.monotonic() < deadline:
            if not sel.select(0.1):
                if self.proc.poll() is not None:
                    break
                continue
            b = os.read(self.proc.stdout.fileno(), 100)
            if not b:
                break
            line += b
        sel.close()
        m = re.match(rb"READY (\d+)\n", line)
        if not m:
            self.stop()
            raise RuntimeError("%s server on %s:%s in %s did not start: "
                               "%r\n%s" % (mode, addr, port, ns, line,
                                           tail(log)))
        self.port = int(m.group(1))

    @property
    def target(self):
        """The address as tunnels.conf writes it."""
        return e2elib.tcp_listen(self.port, self.addr)

    def peers(self):
        """Source addresses of the connections accepted so far."""
        with open(self.log, errors="replace") as f:
            return [l.split()[1] for l in f if l.startswith("accept ")]

    def errors(self):
        with open(self.log, errors="replace") as f:
            return [l for l in f if l.startswith("error ") or
                    l.startswith("Traceback")]


# ---------------------------------------------------------------------------
# sshd and tunneld in a namespace


class NsSshd(Sshd):
    """e2elib.Sshd run with ip netns exec in ns, listening on addrs (one
    ListenAddress each) at port (22 by default: each namespace has its own
    ports).  stop/start/restart/freeze/thaw/sessions as in Sshd, by PID."""

    def __init__(self, ns, addrs, workdir, host_key, authorized_keys,
                 port=22):
        super().__init__(workdir, host_key, authorized_keys, port=port)
        self.ns = ns
        self.addrs = list(addrs)
        self.pub = None         # the host key's public line, if known
        assert self.addrs, "NsSshd needs at least one address"
        with open(self.cfg) as f:
            text = f.read()
        listen = "".join("ListenAddress %s\n" % a for a in self.addrs)
        assert "ListenAddress 127.0.0.1\n" in text
        text = text.replace("ListenAddress 127.0.0.1\n", listen)
        with open(self.cfg, "w") as f:
            f.write(text)

    def start(self, timeout=10.0):
        assert self.proc is None, "sshd already running"
        try:
            offset = os.path.getsize(self.log)
        except OSError:
            offset = 0
        logf = open(self.log, "a")
        logf.write("=== sshd start %s in %s\n" % (time.strftime("%T"),
                                                   self.ns))
        logf.flush()
        self.proc = subprocess.Popen(
            [IP, "netns", "exec", self.ns, SSHD_BIN, "-D", "-e", "-f",
             self.cfg], stdin=subprocess.DEVNULL, stdout=logf, stderr=logf)
        logf.close()
        want = {"Server listening on %s port %d." % (a, self.port)
                for a in self.addrs}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self.proc = None
                raise RuntimeError("sshd in %s exited %s:\n%s" %
                                   (self.ns, rc, tail(self.log)))
            with open(self.log, errors="replace") as f:
                f.seek(offset)
                seen = {l.strip() for l in f}
            if want <= seen:
                return self
            time.sleep(0.05)
        raise RuntimeError("sshd in %s did not listen on %s:\n%s" %
                           (self.ns, sorted(want - seen), tail(self.log)))

    def known_hosts(self, pub=None):
        """known_hosts lines for every address of this sshd."""
        pub = pub or self.pub
        assert pub, "known_hosts(pub): which public key?"
        return "".join(known_hosts_for(a, self.port, pub)
                       for a in self.addrs)


class NsTunneld(Tunneld):
    """e2elib.Tunneld started with ip netns exec ns (same PID: ip execs in
    place).  Its control socket is a path, reachable from the root
    namespace: tunctl and every helper of Tunneld work as usual."""

    def __init__(self, ns, *a, **kw):
        super().__init__(*a, **kw)
        self.ns = ns
        self.where = " in %s" % ns

    def command(self):
        return [IP, "netns", "exec", self.ns,
                os.path.abspath(e2elib.TUNNELD_BIN), "-d", "-f",
                self.conf] + self.extra_args


# ---------------------------------------------------------------------------
# OpenSSH's client through the topology (reference behaviour)


def write_ssh_config(path, hosts, key, known_hosts, extra=None):
    """An ssh_config for OpenSSH's ssh: hosts is {alias: (addr, port,
    jump_alias_or_None)}.  ProxyJump hops read the same file (ssh passes
    -F on to them), so every hop gets the same key and strict checking."""
    out = []
    for alias, (addr, port, jump) in hosts.items():
        out += ["Host %s" % alias, "  HostName %s" % addr,
                "  Port %d" % port]
        if jump:
            out.append("  ProxyJump %s" % jump)
    out += ["Host *", "  User root", "  IdentityFile %s" % key,
            "  IdentitiesOnly yes", "  UserKnownHostsFile %s" % known_hosts,
            "  GlobalKnownHostsFile /dev/null",
            "  StrictHostKeyChecking yes", "  BatchMode yes",
            "  CheckHostIP no", "  ConnectTimeout 5",
            "  ExitOnForwardFailure yes", "  LogLevel ERROR"]
    for k, v in (extra or {}).items():
        out.append("  %s %s" % (k, v))
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    return path


# ---------------------------------------------------------------------------
# The topology


class Host:
    def __init__(self, name, ns):
        self.name = name
        self.ns = ns            # namespace name, None for the root
        self.addrs = []         # in the order the links gave them

    def addr(self, family=4):
        for a in self.addrs:
            if family_of(a) == family:
                return a
        raise KeyError("%s has no IPv%d address" % (self.name, family))

    @property
    def v4(self):
        return self.addr(4)

    @property
    def v6(self):
        return self.addr(6)


class Link:
    """One veth pair.  a/b: host names (None: root); a_if/b_if: interface
    names (each in its own namespace); a4/b4/a6/b6: addresses (or None)."""

    def __init__(self, idx, a, b, a_if, b_if):
        self.idx = idx
        self.a, self.b = a, b
        self.a_if, self.b_if = a_if, b_if
        self.a4 = self.b4 = self.a6 = self.b6 = None
        self.prefix4 = self.prefix6 = None

    def end(self, name):
        """(interface, v4, v6) of the end in host name (None: root)."""
        if name == self.a:
            return self.a_if, self.a4, self.a6
        if name == self.b:
            return self.b_if, self.b4, self.b6
        raise KeyError(name)

    def __repr__(self):
        return "Link(%s %s/%s <-> %s %s/%s)" % (
            self.a or "root", self.a4, self.a6, self.b or "root", self.b4,
            self.b6)


class Topology:
    """Hosts (namespaces), links (veth pairs) and what runs in them.  Use
    the topo fixture; a test that builds one itself must call close()."""

    def __init__(self, workdir, keys=None):
        self.dir = workdir
        self.keys = keys
        os.makedirs(workdir, exist_ok=True)
        self.prefix = "tdj%d%s" % (os.getpid() % 10000,
                                   "abcdefghijklmnopqrstuvwxyz"[
                                       next(_tops) % 26])
        self.hosts = {}         # name -> Host
        self.links = []
        self.procs = []         # NsProc / NsServer
        self.sshds = []
        self.servers = []       # in-process e2elib.Server
        self.daemons = []       # NsTunneld
        self.etc_dirs = []
        self.root_ifs = []      # interfaces we made in the root namespace
        self.blackholes = {}    # ns (or None) -> ifb interface name
        self.block = None
        self.closed = False
        self._subnet = 0
        self._alloc_block()

    # -- names and addresses ------------------------------------------------

    def ns(self, name):
        """Namespace name of host name (None for None: the root)."""
        if name is None:
            return None
        return self.hosts[name].ns

    def _alloc_block(self):
        """Claim a block number not used by a live topology (the root
        routes carry it in their metric), under a lock on /run/netns, and
        add the root's unreachable routes for both ranges."""
        os.makedirs(NETNS_RUN, exist_ok=True)
        fd = os.open(NETNS_RUN, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            used = set()
            for fam in ("-4", "-6"):
                rng = V4_RANGE if fam == "-4" else V6_RANGE
                for line in sh(IP, fam, "route", "show", "exact",
                               str(rng)).splitlines():
                    m = re.search(r"\bmetric (\d+)", line)
                    if m and ROUTE_METRIC <= int(m.group(1)) < \
                            ROUTE_METRIC + BLOCKS:
                        used.add(int(m.group(1)) - ROUTE_METRIC)
            free = [b for b in range(BLOCKS) if b not in used]
            if not free:
                raise RuntimeError("all %d topology blocks in use: stale "
                                   "routes? ip route show exact %s" %
                                   (BLOCKS, V4_RANGE))
            self.block = free[0]
            for fam, rng in (("-4", V4_RANGE), ("-6", V6_RANGE)):
                sh(IP, fam, "route", "add", "unreachable", str(rng),
                   "metric", ROUTE_METRIC + self.block)
        finally:
            os.close(fd)

    def subnet(self, i=None):
        """Allocated subnet i (0..15, the next one if None) of this
        topology: ((v4 net, 24), (v6 net, 64)) as ipaddress networks."""
        if i is None:
            i = self._subnet
            self._subnet += 1
        assert 0 <= i < SUBNETS, "subnet index %d out of 0..%d" % (
            i, SUBNETS - 1)
        n = self.block * SUBNETS + i
        v4 = ipaddress.ip_network("198.%d.%d.0/24" % (18 + n // 256,
                                                      n % 256))
        v6 = ipaddress.ip_network("fd00:7d:%x:%x::/64" % (self.block, i))
        return v4, v6

    # -- building -----------------------------------------------------------

    def host(self, name):
        """Create host name: a namespace with lo up, forwarding off."""
        assert re.match(r"^[a-z0-9]{1,6}$", name), \
            "host names: 1-6 lower-case letters or digits (%r)" % name
        assert name not in self.hosts, "host %s exists" % name
        ns = "%s-%s" % (self.prefix, name)
        sh(IP, "netns", "add", ns)
        self.hosts[name] = Host(name, ns)
        sh(IP, "-n", ns, "link", "set", "lo", "up")
        sh(IP, "netns", "exec", ns, "sysctl", "-q", "-w",
           "net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0",
           "net.ipv6.conf.default.accept_ra=0",
           "net.ipv6.conf.all.accept_ra=0")
        return self.hosts[name]

    def link(self, a, b, a_addr=None, b_addr=None, prefix=24, prefix6=64,
             family="dual"):
        """A veth pair between hosts a and b (a None: the root namespace).
        With no addresses, the next allocated subnet gives a .1/::1 and
        b .2/::2 (family "dual", 4 or 6).  Otherwise a_addr and b_addr are
        an address or a list of them (IPv4 with prefix, IPv6 with prefix6;
        "addr/len" overrides), in the ranges only.  Returns a Link."""
        if b is None:
            a, b, a_addr, b_addr = b, a, b_addr, a_addr
        assert b is not None, "a link needs at least one namespace"
        idx = len(self.links) + 1
        a_if = ("%sv%d" % (self.prefix, idx)) if a is None else "v%da" % idx
        b_if = "v%db" % idx
        assert len(a_if) <= 15 and len(b_if) <= 15
        if a_addr is None and b_addr is None:
            v4, v6 = self.subnet()
            a_addr, b_addr = [], []
            if family in ("dual", 4):
                a_addr.append(str(v4[1]))
                b_addr.append(str(v4[2]))
            if family in ("dual", 6):
                a_addr.append(str(v6[1]))
                b_addr.append(str(v6[2]))
            prefix, prefix6 = 24, 64
        a_addrs = [a_addr] if isinstance(a_addr, str) else list(a_addr or [])
        b_addrs = [b_addr] if isinstance(b_addr, str) else list(b_addr or [])
        plan = []               # (ns, ifname, addr, plen)
        for host, ifn, addrs in ((a, a_if, a_addrs), (b, b_if, b_addrs)):
            for x in addrs:
                if "/" in x:
                    x, plen = x.split("/")
                    plen = int(plen)
                else:
                    plen = prefix6 if family_of(x) == 6 else prefix
                check_addr(x, plen)
                if host is None and sh(IP, "-o", "addr", "show", "to",
                                       x).strip():
                    raise ValueError("%s is already in use in the root "
                                     "namespace" % x)
                plan.append((host, ifn, x, plen))
        cmd = [IP]
        if a is not None:
            cmd += ["-n", self.ns(a)]
        cmd += ["link", "add", a_if, "type", "veth", "peer", "name", b_if,
                "netns", self.ns(b)]
        sh(*cmd)
        if a is None:
            self.root_ifs.append(a_if)
        lk = Link(idx, a, b, a_if, b_if)
        lk.prefix4, lk.prefix6 = prefix, prefix6
        self.links.append(lk)
        for host, ifn, x, plen in plan:
            nsargs = ["-n", self.ns(host)] if host is not None else []
            extra = ["nodad"] if family_of(x) == 6 else []
            sh(IP, *nsargs, "addr", "add", "%s/%d" % (x, plen), "dev", ifn,
               *extra)
            side = "a" if (host, ifn) == (a, a_if) else "b"
            setattr(lk, "%s%d" % (side, family_of(x)),
                    getattr(lk, "%s%d" % (side, family_of(x))) or x)
            if host is not None:
                self.hosts[host].addrs.append(x)
        for host, ifn in ((a, a_if), (b, b_if)):
            nsargs = ["-n", self.ns(host)] if host is not None else []
            sh(IP, *nsargs, "link", "set", ifn, "up")
        self._wait_up(lk)
        return lk

    def _wait_up(self, lk, timeout=5.0):
        """Wait until both ends have carrier (operstate UP)."""
        deadline = time.monotonic() + timeout
        for host, ifn in ((lk.a, lk.a_if), (lk.b, lk.b_if)):
            nsargs = ["-n", self.ns(host)] if host is not None else []
            while "state UP" not in sh(IP, *nsargs, "-o", "link", "show",
                                       ifn):
                if time.monotonic() > deadline:
                    raise RuntimeError("%s did not come up" % ifn)
                time.sleep(0.02)

    def set_link(self, lk, up):
        """Take a link down (both ends) or up again."""
        for host, ifn in ((lk.a, lk.a_if), (lk.b, lk.b_if)):
            nsargs = ["-n", self.ns(host)] if host is not None else []
            sh(IP, *nsargs, "link", "set", ifn, "up" if up else "down")
        if up:
            self._wait_up(lk)

    def route(self, host, dest, via):
        """Add a route in host (None: root) to dest via a neighbour."""
        net = ipaddress.ip_network(dest, strict=False)
        check_addr(str(net.network_address), net.prefixlen)
        nsargs = ["-n", self.ns(host)] if host is not None else []
        sh(IP, *nsargs, "-%d" % net.version, "route", "add", str(net),
           "via", via)

    def forwarding(self, host, on=True):
        """Let host (a namespace) forward IPv4 and IPv6 between its links."""
        v = "1" if on else "0"
        sh(IP, "netns", "exec", self.ns(host), "sysctl", "-q", "-w",
           "net.ipv4.ip_forward=" + v, "net.ipv6.conf.all.forwarding=" + v)

    @staticmethod
    def _bh_nets(prefix):
        """The routes of a black hole for prefix: the prefix itself as two
        halves (one bit longer: they win over a connected route of the
        same length, which the kernel would not let us add twice), or the
        single address."""
        if "/" not in prefix:
            prefix += "/%d" % (128 if family_of(prefix) == 6 else 32)
        net = ipaddress.ip_network(prefix, strict=False)
        check_addr(str(net.network_address), net.prefixlen)
        if net.prefixlen == net.max_prefixlen:
            return [net]
        return list(net.subnets(prefixlen_diff=1))

    def blackhole(self, host, prefix):
        """Silently drop what host (None: root) sends to prefix ("addr" or
        "addr/len"): routes into an ifb device, which discards every packet
        it is given, so a connect() sees no answer at all (no RST, no ICMP)
        and hangs until its own timeout.  They are more specific than the
        connected route, so they win over it; unblackhole() heals."""
        ns = self.ns(host)
        nsargs = ["-n", ns] if ns is not None else []
        if ns not in self.blackholes:
            ifn = "bh0" if ns is not None else self.prefix + "bh"
            sh(IP, *nsargs, "link", "add", ifn, "type", "ifb")
            if ns is None:
                self.root_ifs.append(ifn)
            sh(IP, *nsargs, "link", "set", ifn, "up")
            self.blackholes[ns] = ifn
        for net in self._bh_nets(prefix):
            sh(IP, *nsargs, "-%d" % net.version, "route", "add", str(net),
               "dev", self.blackholes[ns])

    def unblackhole(self, host, prefix):
        """Remove a blackhole() again."""
        ns = self.ns(host)
        nsargs = ["-n", ns] if ns is not None else []
        for net in self._bh_nets(prefix):
            sh(IP, *nsargs, "-%d" % net.version, "route", "del", str(net),
               "dev", self.blackholes[ns])

    def drop(self, host, ifname, permille=1000, table="tddrop"):
        """Drop packets both ways on host's interface ifname (nftables,
        input and output hooks, in host's namespace only): every packet
        with permille 1000 (a black hole that also cuts what is already
        connected, unlike blackhole()), else permille / 1000 of the TCP
        packets at random; 0 removes the table again.  One table per
        name and host; it goes with the namespace at teardown anyway.
        The veth keeps its segmentation offloads, so a dropped TCP
        packet may be a burst of up to 64 KiB."""
        assert host is not None, "nftables rules only in our namespaces"
        self.run(host, "nft", "delete", "table", "inet", table)
        if not permille:
            return
        match = "" if permille >= 1000 else \
            " meta l4proto tcp numgen random mod 1000 < %d" % permille
        rules = ("table inet %s {\n"
                 " chain in { type filter hook input priority 0;"
                 " iifname \"%s\"%s drop; }\n"
                 " chain out { type filter hook output priority 0;"
                 " oifname \"%s\"%s drop; }\n}\n" % (
                     table, ifname, match, ifname, match))
        path = os.path.join(self.dir, "%s-%s.nft" % (table, host))
        with open(path, "w") as f:
            f.write(rules)
        self.run(host, "nft", "-f", path, check=True)

    def hosts_file(self, host, names, prefer_order=True):
        """Names for processes started in host with ip netns exec (which
        bind-mounts /etc/netns/<ns>/* over /etc/*): names is {name: [addr,
        ...]}, written one line per address in the given order, after the
        localhost lines.  Also a resolv.conf pointing at 127.0.0.1 (no
        lookup leaves the namespace; an unknown name fails fast) and, with
        prefer_order, a gai.conf giving every address the same precedence,
        so glibc's getaddrinfo keeps the file order (RFC 6724 would put
        IPv4 before ULA IPv6).  libevent's evdns reads /etc/hosts itself and
        keeps the file order anyway.  The root namespace cannot have one:
        start the process in a namespace."""
        if host is None:
            raise ValueError("no private hosts file for the root namespace:"
                             " start the process in a namespace")
        ns = self.ns(host)
        d = os.path.join(NETNS_ETC, ns)
        for _ in range(5):     # a parallel run may rmdir /etc/netns
            try:
                os.makedirs(d, exist_ok=True)
                break
            except FileNotFoundError:
                time.sleep(0.01)
        if d not in self.etc_dirs:
            self.etc_dirs.append(d)
        lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost"]
        for name, addrs in names.items():
            for a in ([addrs] if isinstance(addrs, str) else addrs):
                ipaddress.ip_address(a)
                lines.append("%s %s" % (a, name))
        with open(os.path.join(d, "hosts"), "w") as f:
            f.write("\n".join(lines) + "\n")
        with open(os.path.join(d, "resolv.conf"), "w") as f:
            f.write("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        if prefer_order:
            with open(os.path.join(d, "gai.conf"), "w") as f:
                f.write("precedence ::/0 40\nprecedence ::ffff:0:0/96 40\n")
        return os.path.join(d, "hosts")

    # -- running things -----------------------------------------------------

    def run(self, host, *cmd, timeout=30, check=False):
        """Run a command in host; return (exit code, stdout, stderr)."""
        ns = self.ns(host)
        pre = [IP, "netns", "exec", ns] if ns else []
        p = subprocess.run(pre + [str(c) for c in cmd], capture_output=True,
                           text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        if check and p.returncode:
            raise RuntimeError("%s in %s: exit %d: %s" % (cmd, host,
                                                           p.returncode,
                                                           p.stderr))
        return p.returncode, p.stdout, p.stderr

    def popen(self, host, cmd, name="proc", **kw):
        """Start a command in host; it is stopped (by PID) at teardown."""
        log = os.path.join(self.dir, "%s%d.log" % (name, len(self.procs)))
        p = NsProc(self.ns(host), cmd, log, **kw)
        self.procs.append(p)
        return p

    def _server(self, host, mode, addr, port, path=None):
        log = os.path.join(self.dir, "%s-%s-%d.log" % (
            mode, host or "root", len(self.procs)))
        s = NsServer(self.ns(host), mode, addr, port, log, path)
        self.procs.append(s)
        _logs_append("%s server in %s" % (mode, host or "root"), log)
        return s

    def echo_server(self, host, addr, port=0):
        """Echo server (half-closes after the peer's EOF) in host."""
        return self._server(host, "echo", addr, port)

    def sink_server(self, host, addr, port=0):
        """Reads until EOF, answers "<len> <sha256hex>\\n" and closes."""
        return self._server(host, "sink", addr, port)

    def source_server(self, host, addr, port, path):
        """Sends the file's bytes, half-closes, drains until EOF."""
        return self._server(host, "source", addr, port, path)

    def server(self, host, handler, addr, **kw):
        """An in-process e2elib.Server (any handler, .accepted, .errors)
        whose listening socket lives in host's namespace."""
        s = in_netns(self.ns(host), lambda: Server(handler, addr, **kw))
        self.servers.append(s)
        return s

    def connect(self, host, addr, timeout=10.0):
        """A socket connected to addr from host's namespace."""
        return ns_connect(self.ns(host), addr, timeout)

    def probe(self, host, addr, port, timeout=1.0):
        return probe(self.ns(host), addr, port, timeout)

    def sshd(self, host, addrs=None, port=22, keys=None):
        """Start an sshd in host on addrs (default: every address host has
        now) with the session's host key and authorized_keys."""
        keys = keys or self.keys
        h = self.hosts[host]
        d = os.path.join(self.dir, "sshd-%s-%d" % (host, len(self.sshds)))
        s = NsSshd(h.ns, addrs or list(h.addrs), d, keys.host_key,
                   keys.authorized_keys, port=port)
        s.pub = keys.host_pub
        self.sshds.append(s)
        _logs_append("sshd log (%s)" % host, s.log)
        s.start()
        return s

    def start_tunneld(self, env, host, tunnels, hosts, defaults=None,
                      known_hosts=None, extra_args=(),
                      conf_name="tunnels.conf", sock=None, daemon_env=None):
        """Env.start for a tunneld run in host's namespace: writes the conf
        (hosts as for Env.conf_text), known_hosts text if given, and
        registers the daemon with env (its teardown checks exit 0 and the
        socket removal) and with this topology (stopped, with the same
        checks, if still running when the namespaces go)."""
        sock = sock or env.sock
        if known_hosts is not None:
            with open(env.known_hosts, "w") as f:
                f.write(known_hosts)
        conf = env.write_conf(tunnels, name=conf_name, hosts=hosts,
                              defaults=defaults, sock=sock)
        log = env.path("tunneld%d.log" % (len(env.daemons) + 1))
        _logs_append("tunneld log (in %s)" % host, log)
        with open(conf) as f:
            with open(log, "w") as lf:
                lf.write("=== %s (in %s)\n%s\n=== log\n" % (conf, host,
                                                           f.read()))
        d = NsTunneld(self.ns(host), conf, sock, log, extra_args,
                      env=daemon_env)
        env.daemons.append(d)
        self.daemons.append(d)
        d.start()
        return d

    # -- teardown -----------------------------------------------------------

    def leftovers(self):
        """What of this topology exists in the system now (see close())."""
        return leftovers(self.prefix, self.block)

    def ns_pids(self, host):
        """PIDs in host's namespace (any process, ours or not)."""
        out = sh(IP, "netns", "pids", self.ns(host), check=False)
        return [int(x) for x in out.split()]

    def close(self):
        """Stop everything, remove everything; raise if something was
        wrong (after the cleanup is complete)."""
        if self.closed:
            return
        self.closed = True
        rem = 0
        if threading.current_thread() is threading.main_thread():
            rem = signal.alarm(0)   # conftest's test limit: not mid-cleanup
        t0 = time.monotonic()
        problems = []

        def step(what, fn, *a):
            try:
                fn(*a)
            except Exception as e:
                problems.append("%s: %r" % (what, e))

        for d in self.daemons:
            if d.proc is None:
                continue
            def stop_daemon(d=d):
                crashed = d.proc.poll()
                rc = d.stop()
                if crashed is not None:
                    problems.append("tunneld in %s died during the test "
                                    "(status %s)" % (d.ns, crashed))
                elif rc != 0:
                    problems.append("tunneld in %s exited %s on SIGTERM" %
                                    (d.ns, rc))
                if os.path.exists(d.sock):
                    problems.append("control socket %s left behind" %
                                    d.sock)
            step("tunneld", stop_daemon)
        for s in self.sshds:
            step("sshd", s.stop)
        for p in self.procs:
            step("process %d" % p.pid, p.stop)
        for s in self.servers:
            step("server", s.stop)
        for name in self.hosts:
            deadline = time.monotonic() + 5
            pids = self.ns_pids(name)
            while pids and time.monotonic() < deadline:
                time.sleep(0.05)
                pids = self.ns_pids(name)
            if pids:
                problems.append("processes left in %s: %s" % (
                    self.ns(name), pids))
        for ifn in self.root_ifs:
            step("ip link del " + ifn, sh, IP, "link", "del", ifn)
        for h in self.hosts.values():
            step("ip netns del " + h.ns, sh, IP, "netns", "del", h.ns)
        for fam, rng in (("-4", V4_RANGE), ("-6", V6_RANGE)):
            step("root route", sh, IP, fam, "route", "del", "unreachable",
                 str(rng), "metric", ROUTE_METRIC + self.block)
        for d in self.etc_dirs:
            step("rm " + d, shutil.rmtree, d)
        try:
            os.rmdir(NETNS_ETC)         # only if empty (other runs)
        except OSError:
            pass
        if rem:
            signal.alarm(max(1, rem - int(time.monotonic() - t0)))
        if problems:
            raise AssertionError("topology teardown: " + "; ".join(problems))


def leftovers(prefix="tdj", block=None):
    """What namespaces, root interfaces, root routes (of topology block, or
    of any) and /etc/netns entries of this module (names starting with
    prefix) exist now."""
    out = []
    out += ["netns " + l.split()[0] for l in
            sh(IP, "netns", "list").splitlines()
            if l.startswith(prefix)]
    out += ["link " + l.split(":")[1].strip().split("@")[0] for l in
            sh(IP, "-o", "link", "show").splitlines()
            if l.split(":")[1].strip().startswith(prefix)]
    blocks = range(BLOCKS) if block is None else [block]
    for fam, rng in (("-4", V4_RANGE), ("-6", V6_RANGE)):
        for l in sh(IP, fam, "route", "show", "exact", str(rng)).splitlines():
            m = re.search(r"\bmetric (\d+)", l)
            if m and int(m.group(1)) - ROUTE_METRIC in blocks:
                out.append("route " + l.strip())
    if os.path.isdir(NETNS_ETC):
        out += ["/etc/netns/" + n for n in os.listdir(NETNS_ETC)
                if n.startswith(prefix)]
    return out


@pytest.fixture
def topo(tdir, keys):
    """A Topology for one test, always torn down (even on failure).  Ask for
    it before env (def test_x(topo, env)) so that env's teardown checks a
    namespaced tunneld before the namespaces go."""
    t = Topology(os.path.join(tdir, "topo"), keys)
    try:
        yield t
    finally:
        t.close()
