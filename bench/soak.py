#!/usr/bin/env python3
"""make soak: tunneld under connection churn and link faults for N minutes.

Three private sshds: hosts a and b on 127.0.0.1 (the e2e tests' Sshd), host
c in a network namespace behind a veth pair (tests/e2e/netns.py), and one
tunneld (the -O2 build) with a tunnel of every kind via each: local,
remote, dynamic (SOCKS5 here) and remote-dynamic (SOCKS5 on the far side),
all to a build/loadgen echo server (one here, one in c's namespace for what
c's sshd connects to). One client thread per tunnel opens a connection,
moves a random amount of data (1 B to 1 MiB, log-uniform), checks that the
echo is the same bytes, closes, and again, at a bounded total rate. Every
20 s a link fault, the host in turn (a, b, c) and the kind in turn per
host: sshd killed and restarted, sshd frozen (SIGSTOP) past the keepalive
bound then thawed, the link's TCP connection reset (ss -K), and for c a
black hole (the root namespace's route to c into an ifb device) as long
as the freeze.

Every second: tunneld's RSS (VmRSS), its open descriptors (/proc/PID/fd),
its CPU (utime + stime), the connections finished that second and the link
states, into OUT/samples.csv; every connection into OUT/connections.csv,
every fault into OUT/faults.csv; OUT/soak.png charts them; OUT/summary.json
holds the figures and the verdict (docs/soak.md explains the rule).

Exit status 1 when RSS or descriptors trend upward, when a connection fails
outside a fault window of its host, when an echo comes back with other
bytes, when a link does not recover, or when tunneld dies or does not exit
0 on SIGTERM. Every process started here is stopped here, by PID, and the
namespace removed; nothing connects anywhere but 127.0.0.1 and c's
namespace.
"""

import argparse
import csv
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench as B  # noqa: E402  (its process registry, /proc helpers)
from bench import e2elib  # noqa: E402
import netns  # noqa: E402  (tests/e2e, on the path bench.py set)
from e2elib import (Pump, Sshd, Tunneld, known_hosts_line,  # noqa
                    render_conf, socks5_handshake, ssh_keygen, tail)

KINDS = ("local", "remote", "dynamic", "remote-dynamic")
SHORT = {"local": "l", "remote": "r", "dynamic": "d", "remote-dynamic": "rd"}
HOSTS = ("a", "b", "c")
NS_HOST = "c"           # in a namespace of its own, behind a veth pair
FAULTS = ("restart", "freeze", "reset", "blackhole")
# The faults of each host, in turn (hosts in turn: a, b, c, a, ...).
FAULTS_OF = {"a": ("restart", "freeze", "reset"),
             "b": ("freeze", "reset", "restart"),
             "c": ("blackhole", "restart", "reset", "freeze")}

KEEPALIVE = 1           # keepalive_interval (s)
KEEPALIVE_COUNT = 3     # keepalive_count_max: dead after 1 x (3 + 1) = 4 s
FREEZE = KEEPALIVE * (KEEPALIVE_COUNT + 1) + 2      # SIGSTOP this long
RESTART_GAP = 1.0       # sshd down this long on a restart
RECOVER_LIMIT = 15.0    # a link must be back, its tunnels up, within this
# c's sshd ends a session whose client is silent for 3 s, as a server
# should: a session stranded by the black hole would keep its remote
# listeners, and the new session's forward requests would find them taken.
NS_SSHD = "ClientAliveInterval 1\nClientAliveCountMax 3\n"
GRACE = 1.0             # a fault window ends this long after recovery
CONN_TIMEOUT = 15.0     # one connection, connect to last echoed byte
MAX_SIZE = 1 << 20      # the largest amount one connection echoes

# The verdict (docs/soak.md): medians of a baseline window after the
# warm-up and of the last window; RSS may grow by RSS_MARGIN_KB or
# RSS_MARGIN_PCT of the baseline, whichever is larger, descriptors by
# FD_MARGIN; the same bounds apply to the least-squares growth over the
# second half, fitted to one median per fault period.
RSS_MARGIN_KB = 2048
RSS_MARGIN_PCT = 5.0
FD_MARGIN = 5


def mono():
    return time.monotonic()


class Soak:

    def __init__(self, args):
        self.args = args
        self.out = os.path.abspath(args.out)
        os.makedirs(self.out, exist_ok=True)
        self.wd = tempfile.mkdtemp(prefix="tdsoak.", dir="/tmp")
        os.chmod(self.wd, 0o755)
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.conns = []         # one dict per finished connection
        self.counts = {"ok": 0, "failed": 0}
        self.faults = []        # one dict per fault
        self.current = ""       # the fault under way, "a:restart"
        self.problems = []      # what fails the run
        self.t0 = None          # wall clock of the start (time.time())
        self.samples = []       # one dict per second

    def path(self, name):
        return os.path.join(self.wd, name)

    def now(self):
        return time.time() - self.t0

    def problem(self, text):
        with self.lock:
            self.problems.append(text)
        print("soak: PROBLEM: %s" % text, flush=True)

    # -- set-up -----------------------------------------------------------

    def setup(self):
        for b in (e2elib.TUNNELD_BIN, e2elib.TUNCTL_BIN, B.LOADGEN_BIN):
            if not os.access(b, os.X_OK):
                raise RuntimeError("%s is not built (make all)" % b)
        kd = self.path("keys")
        os.makedirs(kd)
        host_key = os.path.join(kd, "ssh_host_ed25519_key")
        host_pub = ssh_keygen(host_key, "soak-host")
        key = os.path.join(kd, "id_ed25519")
        pub = ssh_keygen(key, "soak-client")
        ak = os.path.join(kd, "authorized_keys")
        with open(ak, "w") as f:
            f.write(pub + "\n")
        self.sshd = {}
        self.addr = {}          # host -> the address tunneld dials
        self.ns = {}            # host -> its namespace, None for the root
        kh_text = ""
        for h in HOSTS:
            if h == NS_HOST:
                continue
            s = Sshd(self.path("sshd-" + h), host_key, ak)
            B.SSHDS.append(s)
            s.start()
            self.sshd[h], self.addr[h], self.ns[h] = s, "127.0.0.1", None
            kh_text += known_hosts_line(s.port, host_pub)
        self.topo = netns.Topology(self.path("topo"), keys=argparse.Namespace(
            host_key=host_key, host_pub=host_pub, authorized_keys=ak))
        self.topo.host(NS_HOST)
        lk = self.topo.link(None, NS_HOST, family=4)
        s = self.topo.sshd(NS_HOST, addrs=[lk.b4])
        with open(s.cfg, "a") as f:
            f.write(NS_SSHD)
        s.restart()
        self.sshd[NS_HOST], self.addr[NS_HOST] = s, lk.b4
        self.ns[NS_HOST] = self.topo.ns(NS_HOST)
        kh_text += s.known_hosts()
        kh = self.path("known_hosts")
        with open(kh, "w") as f:
            f.write(kh_text)

        # Echo servers: here, and in c's namespace (what c's sshd dials
        # for its local and dynamic tunnels is c's own 127.0.0.1).
        self.echo = {None: self.loadgen_echo([])}
        self.echo[self.ns[NS_HOST]] = self.loadgen_echo(
            [netns.IP, "netns", "exec", self.ns[NS_HOST]])
        self.ports = {h: {k: B.alloc_port() for k in KINDS} for h in HOSTS}
        tunnels = []
        for h in HOSTS:
            for k in KINDS:
                t = {"name": "%s-%s" % (h, SHORT[k]), "type": k, "via": h,
                     "listen": "127.0.0.1:%d" % self.ports[h][k]}
                if k in ("local", "remote"):
                    t["target"] = "127.0.0.1:%d" % self.echo_port(h, k)
                tunnels.append(t)
        defaults = {"user": "root", "identity": key, "known_hosts": kh,
                    "host_key_policy": "strict", "connect_timeout": 3,
                    "keepalive_interval": KEEPALIVE,
                    "keepalive_count_max": KEEPALIVE_COUNT,
                    "backoff_initial": 0.2, "backoff_max": 2.0,
                    "connect_wait": 10}
        hosts = {h: {"address": self.addr[h], "port": self.sshd[h].port}
                 for h in HOSTS}
        conf = self.path("tunnels.conf")
        sock = self.path("ctl.sock")
        with open(conf, "w") as f:
            # notice: link up and link lost, not a line per connection.
            f.write(render_conf(sock, defaults, hosts, tunnels,
                                log_level="notice"))
        self.log = os.path.join(self.out, "tunneld.log")
        open(self.log, "w").close()
        self.d = Tunneld(conf, sock, self.log)
        B.DAEMONS.append(self.d)
        self.d.start()
        code, out, err = self.d.tunctl("wait", "--timeout", "30",
                                       *[t["name"] for t in tunnels])
        if code != 0:
            raise RuntimeError("tunnels not up: %s %s\n%s" % (
                out, err, tail(self.log)))

    def loadgen_echo(self, prefix):
        """Start loadgen serve (after prefix: ip netns exec NS); its echo
        port."""
        budget = self.args.minutes * 60 + 600
        p = B.spawn(prefix + [B.LOADGEN_BIN, "serve", "--max-time",
                              str(int(budget))], stdout=subprocess.PIPE)
        line = B.read_line(p, 10)
        if not line or not line.startswith("ports "):
            raise RuntimeError("loadgen serve did not start: %r" % line)
        return int(dict(kv.split("=") for kv in line.split()[1:])["echo"])

    def echo_port(self, host, kind):
        """The echo server a connection through host's tunnel of this kind
        reaches: the far side's for local and dynamic, ours for the remote
        kinds."""
        if kind in ("local", "dynamic"):
            return self.echo[self.ns[host]]
        return self.echo[None]

    def client_ns(self, host, kind):
        """Where a client of this tunnel runs: here for local and dynamic,
        on the far side (its sshd's namespace) for the remote kinds."""
        return None if kind in ("local", "dynamic") else self.ns[host]

    # -- clients ----------------------------------------------------------

    def one(self, host, kind):
        """One connection through host's tunnel of this kind: a dict."""
        size = int(2 ** random.uniform(0, math.log2(MAX_SIZE)))
        payload = random.randbytes(size)
        c = {"t0": self.now(), "host": host, "kind": kind, "bytes": size,
             "outcome": "ok", "error": ""}
        try:
            s = netns.ns_connect(self.client_ns(host, kind),
                                 ("127.0.0.1", self.ports[host][kind]),
                                 timeout=CONN_TIMEOUT)
            try:
                if kind in ("dynamic", "remote-dynamic"):
                    rep = socks5_handshake(s, "127.0.0.1",
                                           self.echo_port(host, kind))
                    if rep != 0:
                        raise ConnectionRefusedError("SOCKS5 reply %d" % rep)
            except BaseException:
                s.close()
                raise
            p = Pump()
            p.add(s, payload)
            r = p.run(CONN_TIMEOUT)[0]
            got = bytes(r["in"])
            if got != payload:
                c["outcome"] = "cut" if payload.startswith(got) \
                    else "corrupt"
                c["error"] = "%s after %d of %d bytes" % (
                    repr(r["err"]) if r["err"] else "EOF", len(got), size)
        except ConnectionRefusedError as e:
            c["outcome"], c["error"] = "refused", repr(e)
        except (OSError, EOFError, AssertionError) as e:
            c["outcome"], c["error"] = "cut", repr(e)
        c["t1"] = self.now()
        return c

    def client(self, host, kind, rate):
        nxt = mono() + random.uniform(0, 1.0 / rate)
        while not self.stop.is_set():
            w = nxt - mono()
            if w > 0 and self.stop.wait(w):
                break
            nxt = max(nxt + 1.0 / rate, mono() - 1.0)
            c = self.one(host, kind)
            with self.lock:
                self.conns.append(c)
                self.counts["ok" if c["outcome"] == "ok" else "failed"] += 1

    # -- faults -----------------------------------------------------------

    def tunnels_up(self, host):
        try:
            st = self.d.status()
        except Exception:
            return False
        return all(st["%s-%s" % (host, SHORT[k])]["state"] == "up"
                   for k in KINDS)

    def fault(self, host, kind):
        s = self.sshd[host]
        f = {"host": host, "kind": kind, "start": self.now()}
        # When the fault is in place: a kill or a reset acts while its
        # command runs, a freeze or a black hole once it is complete.
        f["injected"] = f["start"]
        wall = time.time()
        self.current = "%s:%s" % (host, kind)
        print("soak: %6.1f s  fault %s" % (f["start"], self.current),
              flush=True)
        try:
            if kind == "restart":
                s.stop()
                time.sleep(RESTART_GAP)
                s.start()
            elif kind == "freeze":
                s.freeze()
                f["injected"] = self.now()
                time.sleep(FREEZE)
                s.thaw()
            elif kind == "blackhole":
                self.topo.blackhole(None, self.addr[host])
                f["injected"] = self.now()
                try:
                    time.sleep(FREEZE)
                finally:
                    self.topo.unblackhole(None, self.addr[host])
            else:
                r = subprocess.run(["ss", "-K", "-tnH", "dst",
                                    self.addr[host], "dport", "=",
                                    ":%d" % s.port],
                                   capture_output=True, text=True,
                                   timeout=10)
                f["killed"] = len(r.stdout.splitlines())
                if r.returncode != 0 or not f["killed"]:
                    self.problem("ss -K found no link socket to :%d: %s" %
                                 (s.port, r.stderr.strip()))
        finally:
            s.thaw()
            if s.proc is None:
                s.start()
        f["restored"] = self.now()
        # When the daemon saw the link go (its log stamps), and when the
        # link and all four tunnels of the host were up again.
        lost = e2elib.log_events(self.log, r"^link %s: (?!up \()" % host,
                                 wall)
        f["detected"] = lost[0] - self.t0 if lost else None
        deadline = mono() + RECOVER_LIMIT
        up = []
        while mono() < deadline:
            up = e2elib.log_events(self.log, r"^link %s: up \(" % host, wall)
            if up and self.tunnels_up(host):
                break
            time.sleep(0.1)
        else:
            up = []
        f["up"] = self.now() if up else None
        f["end"] = (f["up"] if up else self.now()) + GRACE
        if not up:
            self.problem("link %s not back with its tunnels %.0f s after "
                         "the %s fault" % (host, RECOVER_LIMIT, kind))
        self.current = ""
        with self.lock:
            self.faults.append(f)

    def faulter(self):
        i = 0
        period = self.args.fault_period
        while not self.stop.wait(max(0.0, (i + 1) * period - self.now())):
            if self.now() > self.args.minutes * 60 - period / 2:
                break
            h = HOSTS[i % len(HOSTS)]
            kinds = FAULTS_OF[h]
            self.fault(h, kinds[(i // len(HOSTS)) % len(kinds)])
            i += 1

    # -- samples ----------------------------------------------------------

    def links(self):
        try:
            return {h: l["state"] for h, l in self.d.links().items()}
        except Exception:
            return {}

    def sampler(self, writer, fh):
        pid = self.d.pid
        t_next = mono()
        cpu0, w0 = B.proc_cpu(pid), mono()
        done0 = dict(self.counts)
        while not self.stop.is_set():
            t_next += 1.0
            if self.stop.wait(max(0.0, t_next - mono())):
                break
            if not self.d.alive():
                self.problem("tunneld died (status %s)" %
                             self.d.proc.returncode)
                self.stop.set()
                break
            try:
                rss = B.rss_kb(pid)
                fds = len(os.listdir("/proc/%d/fd" % pid))
                cpu1, w1 = B.proc_cpu(pid), mono()
            except OSError:
                continue
            with self.lock:
                done = dict(self.counts)
            lk = self.links()
            row = {"t": round(self.now(), 2),
                   "utc": time.strftime("%H:%M:%S", time.gmtime()),
                   "rss_kb": rss, "fds": fds,
                   "cpu_pct": round(100.0 * (cpu1 - cpu0) / (w1 - w0), 1),
                   "conns_ok": done["ok"] - done0["ok"],
                   "conns_failed": done["failed"] - done0["failed"],
                   "fault": self.current}
            for h in HOSTS:
                row["link_" + h] = lk.get(h, "?")
            cpu0, w0, done0 = cpu1, w1, done
            writer.writerow(row)
            fh.flush()
            self.samples.append(row)

    # -- the run ----------------------------------------------------------

    def run(self):
        self.setup()
        secs = self.args.minutes * 60
        rate = self.args.rate / float(len(HOSTS) * len(KINDS))
        print("soak: %g min, %g connections/s over %d tunnels, a fault "
              "every %g s; tunneld pid %d; out %s" % (
                  self.args.minutes, self.args.rate, len(HOSTS) * len(KINDS),
                  self.args.fault_period, self.d.pid, self.out), flush=True)
        self.t0 = time.time()
        fh = open(os.path.join(self.out, "samples.csv"), "w", newline="")
        w = csv.DictWriter(fh, ["t", "utc", "rss_kb", "fds", "cpu_pct",
                                "conns_ok", "conns_failed", "fault"] +
                           ["link_" + h for h in HOSTS])
        w.writeheader()
        threads = [threading.Thread(target=self.sampler, args=(w, fh),
                                    daemon=True),
                   threading.Thread(target=self.faulter, daemon=True)]
        threads += [threading.Thread(target=self.client, args=(h, k, rate),
                                     daemon=True)
                    for h in HOSTS for k in KINDS]
        for t in threads:
            t.start()
        last = 0
        while not self.stop.wait(1.0):
            if self.now() >= secs:
                break
            if self.now() - last >= 60:
                last = self.now()
                s = self.samples[-1] if self.samples else {}
                print("soak: %4.0f s  rss %s kB  fds %s  ok %d  failed %d" % (
                    last, s.get("rss_kb"), s.get("fds"), self.counts["ok"],
                    self.counts["failed"]), flush=True)
        self.stop.set()
        for t in threads:
            t.join(CONN_TIMEOUT + RECOVER_LIMIT + FREEZE + 10)
        fh.close()
        try:            # the daemon's own counts, beside ours
            with open(os.path.join(self.out, "status.json"), "w") as f:
                json.dump({"tunnels": self.d.status(),
                           "links": self.d.links()}, f, indent=1)
        except Exception as e:
            self.problem("tunctl status at the end: %r" % e)
        rc = self.d.stop(timeout=10)
        if rc != 0:
            self.problem("tunneld exited %s on SIGTERM, not 0" % rc)
        self.write()
        return self.verdict()

    def write(self):
        with open(os.path.join(self.out, "connections.csv"), "w",
                  newline="") as f:
            w = csv.DictWriter(f, ["t0", "t1", "host", "kind", "bytes",
                                   "outcome", "in_fault", "error"])
            w.writeheader()
            for c in self.conns:
                c["in_fault"] = int(self.in_fault(c))
                w.writerow(dict(c, t0=round(c["t0"], 3),
                                t1=round(c["t1"], 3)))
        with open(os.path.join(self.out, "faults.csv"), "w",
                  newline="") as f:
            w = csv.DictWriter(f, ["host", "kind", "start", "injected",
                                   "restored", "detected", "up", "end",
                                   "killed"])
            w.writeheader()
            for x in self.faults:
                w.writerow({k: (round(v, 3) if isinstance(v, float) else v)
                            for k, v in x.items()})

    def in_fault(self, c):
        return any(f["host"] == c["host"] and c["t0"] <= f["end"] and
                   c["t1"] >= f["start"] for f in self.faults)

    # -- the verdict ------------------------------------------------------

    def verdict(self):
        s = self.samples
        T = s[-1]["t"] if s else 0
        period = self.args.fault_period
        warm = min(60.0, 0.2 * T)
        win = max(30.0, 0.15 * T)
        base = [r for r in s if warm <= r["t"] < warm + win]
        end = [r for r in s if r["t"] > T - win]
        sm = {}
        for key in ("rss_kb", "fds", "cpu_pct"):
            allv = [r[key] for r in s]
            sm[key] = {
                "first": allv[0] if allv else None,
                "last": allv[-1] if allv else None,
                "base": B.median([r[key] for r in base]),
                "end": B.median([r[key] for r in end]),
                "median": B.median(allv), "p95": B.pct(allv, 95),
                "max": max(allv) if allv else None}
            # One median per fault period over the second half: the
            # sawtooth of the faults does not tilt the fit.
            pts = []
            for k in range(int(T / 2 // period), int(T // period) + 1):
                xs = [r[key] for r in s if k * period <= r["t"] <
                      (k + 1) * period and r["t"] >= T / 2]
                if xs:
                    pts.append(((k + 0.5) * period, B.median(xs)))
            sm[key]["half_growth"] = growth(pts, T / 2)
        rss_margin = max(RSS_MARGIN_KB,
                         (sm["rss_kb"]["base"] or 0) * RSS_MARGIN_PCT / 100)
        checks = [
            ("rss_kb", "RSS", rss_margin, "kB"),
            ("fds", "descriptors", FD_MARGIN, ""),
        ]
        if not base or not end:
            self.problem("too few samples for a verdict (%d s)" % T)
        for key, name, margin, unit in checks:
            x = sm[key]
            if base and end and x["end"] - x["base"] > margin:
                self.problem("%s grew from %.0f to %.0f%s (median of the "
                             "first and last windows), more than %.0f%s" % (
                                 name, x["base"], x["end"], unit, margin,
                                 unit))
            if x["half_growth"] is not None and x["half_growth"] > margin:
                self.problem("%s trends upward over the second half: "
                             "+%.0f%s fitted, more than %.0f%s" % (
                                 name, x["half_growth"], unit, margin, unit))

        by = {}
        for c in self.conns:
            by.setdefault(c["outcome"], 0)
            by[c["outcome"]] += 1
        errors = [c for c in self.conns if c["outcome"] == "corrupt" or
                  (c["outcome"] != "ok" and not c["in_fault"])]
        for c in errors[:20]:
            self.problem("connection %s/%s at %.1f-%.1f s: %s %s" % (
                c["host"], c["kind"], c["t0"], c["t1"], c["outcome"],
                c["error"]))
        if len(errors) > 20:
            self.problem("... %d more failed connections" % (
                len(errors) - 20))
        per = {}
        for h in HOSTS:
            for k in KINDS:
                n = per["%s-%s" % (h, SHORT[k])] = sum(
                    1 for c in self.conns if c["host"] == h and
                    c["kind"] == k and c["outcome"] == "ok")
                if not n:
                    self.problem("no good connection through %s/%s" % (h, k))

        rec = [f["up"] - f["start"] for f in self.faults if f["up"]]
        per_kind = {}
        for k in FAULTS:
            fs = [f for f in self.faults if f["kind"] == k]
            if fs:
                per_kind[k] = {
                    "n": len(fs),
                    # from when the fault was in place (after the ip or
                    # ss command, the signals) to the daemon's log stamp
                    "lost_s": spread([f["detected"] - f["injected"]
                                      for f in fs if f["detected"]]),
                    "up_s": spread([f["up"] - f["start"] for f in fs
                                    if f["up"]]),
                    "up_after_undo_s": spread([f["up"] - f["restored"]
                                               for f in fs if f["up"]])}
        summary = {
            "seconds": T, "samples": len(s),
            "windows": {"warmup": warm, "base": [warm, warm + win],
                        "end": [T - win, T]},
            "rss_kb": sm["rss_kb"], "fds": sm["fds"], "cpu_pct":
            sm["cpu_pct"],
            "margins": {"rss_kb": rss_margin, "fds": FD_MARGIN},
            "connections": {"total": len(self.conns), "outcomes": by,
                            "failed_in_faults": sum(
                                1 for c in self.conns
                                if c["outcome"] != "ok" and c["in_fault"]),
                            "errors": len(errors),
                            "ok_per_tunnel": per,
                            "bytes": sum(c["bytes"] for c in self.conns
                                         if c["outcome"] == "ok")},
            "faults": {"total": len(self.faults),
                       "by_kind": {k: sum(1 for f in self.faults
                                          if f["kind"] == k) for k in FAULTS},
                       "recovery_s_median": B.median(rec),
                       "recovery_s_max": max(rec) if rec else None,
                       "per_kind": per_kind},
            "problems": self.problems,
            "pass": not self.problems,
        }
        with open(os.path.join(self.out, "summary.json"), "w") as f:
            json.dump(summary, f, indent=1)
        report(summary)
        try:
            plot(self.out)
        except ImportError as e:
            print("soak: no chart (%s): apt-get install python3-matplotlib"
                  % e, file=sys.stderr)
        return 0 if summary["pass"] else 1


def growth(pts, span):
    """The least-squares slope of pts [(x, y)] times span: how much y
    grows over span at the fitted rate; None with fewer than 3 points."""
    if len(pts) < 3:
        return None
    n = len(pts)
    mx = sum(x for x, _ in pts) / n
    my = sum(y for _, y in pts) / n
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    sxy = sum((x - mx) * (y - my) for x, y in pts)
    return sxy / sxx * span if sxx else None


def spread(xs):
    """[median, max] of xs, [None, None] when empty."""
    return [B.median(xs), max(xs)] if xs else [None, None]


def report(m):
    r, fd, cpu, c, f = (m["rss_kb"], m["fds"], m["cpu_pct"],
                        m["connections"], m["faults"])
    print("\nsoak: %.0f s, %d samples" % (m["seconds"], m["samples"]))
    print("  RSS          first %s kB, baseline median %s kB, end median %s "
          "kB, last %s kB, max %s kB; second-half growth %s kB "
          "(margin %.0f kB)" % (r["first"], r["base"], r["end"], r["last"],
                                r["max"], fmt(r["half_growth"]),
                                m["margins"]["rss_kb"]))
    print("  descriptors  first %s, baseline median %s, end median %s, "
          "last %s, max %s; second-half growth %s (margin %d)" % (
              fd["first"], fd["base"], fd["end"], fd["last"], fd["max"],
              fmt(fd["half_growth"]), m["margins"]["fds"]))
    print("  CPU          median %s %%, p95 %s %%, max %s %% of one core" % (
        cpu["median"], cpu["p95"], cpu["max"]))
    print("  connections  %d (%s), %.1f MiB echoed; failed in fault "
          "windows %d; errors %d" % (
              c["total"], ", ".join("%s %d" % kv for kv in
                                    sorted(c["outcomes"].items())),
              c["bytes"] / 1048576.0, c["failed_in_faults"], c["errors"]))
    print("  faults       %d (%s); back up after median %s s, max %s s" % (
        f["total"], ", ".join("%s %d" % kv for kv in f["by_kind"].items()),
        fmt(f["recovery_s_median"]), fmt(f["recovery_s_max"])))
    for k, x in f["per_kind"].items():
        print("    %-10s %2d: link lost after %s s, all up after %s s, "
              "%s s after undone (median/max)" % (
                  k, x["n"], "/".join(map(fmt, x["lost_s"])),
                  "/".join(map(fmt, x["up_s"])),
                  "/".join(map(fmt, x["up_after_undo_s"]))))
    print("soak: %s" % ("PASS" if m["pass"] else "FAIL"))
    for p in m["problems"]:
        print("  - %s" % p)


def fmt(v):
    return "-" if v is None else "%.2f" % v


def plot(out, png=None):
    """OUT/soak.png from OUT/samples.csv, faults.csv and summary.json."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(os.path.join(out, "samples.csv")) as f:
        s = list(csv.DictReader(f))
    with open(os.path.join(out, "faults.csv")) as f:
        faults = list(csv.DictReader(f))
    with open(os.path.join(out, "summary.json")) as f:
        m = json.load(f)
    t = [float(r["t"]) / 60 for r in s]
    fig, ax = plt.subplots(4, 1, sharex=True, figsize=(10, 8.5))
    series = ((0, [int(r["rss_kb"]) / 1024.0 for r in s], "RSS (MiB)",
               "rss_kb", 1024.0),
              (1, [int(r["fds"]) for r in s], "open fds", "fds", 1),
              (2, [float(r["cpu_pct"]) for r in s], "CPU (% of a core)",
               None, 1))
    for i, y, label, key, div in series:
        ax[i].plot(t, y, lw=0.6, color="C0")
        ax[i].set_ylabel(label)
        if key:
            for w in ("base", "end"):
                a, b = m["windows"][w]
                ax[i].hlines(m[key][w] / div, a / 60, b / 60, colors="k",
                             lw=2, label="median, %s window" % w
                             if i == 0 and w == "base" else None)
    ok = [int(r["conns_ok"]) for r in s]
    bad = [int(r["conns_failed"]) for r in s]
    ax[3].plot(t, ok, lw=0.6, color="C2", label="ok")
    ax[3].plot(t, bad, lw=0.8, color="C3", label="failed")
    ax[3].set_ylabel("connections/s")
    ax[3].set_xlabel("minutes")
    ax[3].legend(loc="upper right", fontsize=8)
    colors = {"restart": "C1", "freeze": "C4", "reset": "C5",
              "blackhole": "C7"}
    for f in faults:
        for a in ax:
            a.axvspan(float(f["start"]) / 60, float(f["end"]) / 60,
                      color=colors[f["kind"]], alpha=0.25, lw=0)
    from matplotlib.patches import Patch
    ax[0].legend(handles=[Patch(color=c, alpha=0.4, label="fault: " + k)
                          for k, c in colors.items()],
                 loc="upper left", fontsize=8, ncol=3)
    fig.suptitle("tunneld soak: %.0f min, %d connections, %d faults; %s" % (
        m["seconds"] / 60, m["connections"]["total"], m["faults"]["total"],
        "PASS" if m["pass"] else "FAIL"))
    fig.tight_layout()
    png = png or os.path.join(out, "soak.png")
    fig.savefig(png, dpi=72)
    plt.close(fig)
    print("soak: chart %s" % png)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--out", default="build/soak")
    ap.add_argument("--rate", type=float, default=36,
                    help="connections per second, all tunnels together")
    ap.add_argument("--fault-period", type=float, default=20)
    ap.add_argument("--plot", metavar="DIR",
                    help="only draw DIR/soak.png from a run's files")
    args = ap.parse_args()
    if args.plot:
        plot(args.plot)
        return 0
    signal.signal(signal.SIGTERM, B._sigterm)
    signal.signal(signal.SIGALRM, B._sigalrm)
    signal.alarm(int(args.minutes * 60 + 600))
    soak = Soak(args)
    try:
        return soak.run()
    except (Exception, SystemExit, KeyboardInterrupt) as e:
        soak.stop.set()
        print("soak: aborted: %r" % e, file=sys.stderr)
        if getattr(soak, "log", None):
            print(tail(soak.log, 40), file=sys.stderr)
        return 1
    finally:
        signal.alarm(0)
        soak.stop.set()
        B.cleanup()
        if getattr(soak, "topo", None):
            try:
                soak.topo.close()
            except AssertionError as e:
                print("soak: %s" % e, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
