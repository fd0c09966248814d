#!/usr/bin/env python3
"""libssh receive path: stock vs patched tunneld vs ssh -L, and profiles.

  libssh_bench.py tput NAME=TUNNELD... [--bytes MiB] [--rounds N]
      Loopback throughput and client CPU per GiB, one stream through one
      local tunnel each way, per cipher (aes128-gcm, chacha20-poly1305):
      every tunneld given and `ssh -N -L`, runs alternated, medians.
  libssh_bench.py profile NAME=TUNNELD... [--bytes MiB] [--up]
      One transfer target -> client (--up: client -> target; aes128-gcm)
      per tunneld, under
      `strace -c -f` attached for the transfer only, and with
      bench/copycount.so preloaded: syscalls and bytes copied per GiB.

Built on bench/bench.py's pieces (its private sshd per cipher, loadgen
serve/up/down, process bookkeeping); docs/benchmarks.md ("libssh receive
path") has the figures. Run as root, after make LIBSSH=patched and make
build/loadgen (LOADGEN_BIN may name another).
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench as B  # noqa: E402
import e2elib  # noqa: E402

GiB = B.GiB
MiB = B.MiB


def bench_args(nbytes):
    return argparse.Namespace(quick=False, bytes=nbytes, only=None,
                              out=None, keep=False, label=None,
                              verbose=False)


def copy_bins(bn, bins):
    """Private copies of each tunneld: {name: path}."""
    out = {}
    for name, src in bins:
        dst = bn.path("tunneld-" + name)
        shutil.copy2(src, dst)
        out[name] = dst
    return out


def start_tunneld(bn, name, path, sshd, tunnels, env=None):
    """Bench.tunneld with this binary (and environment)."""
    e2elib.TUNNELD_BIN = path
    saved = B.Tunneld
    if env:
        B.Tunneld = lambda *a, **k: e2elib.Tunneld(*a, env=env, **k)
    try:
        return bn.tunneld(name, sshd, tunnels)
    finally:
        B.Tunneld = saved


def tput(bn, bins, rounds):
    rows = []
    for cipher in B.CIPHERS:
        short = B.SHORT[cipher]
        sshd = bn.sshd[cipher]
        clients = []
        daemons = []
        for name, path in bins.items():
            tp = [(B.alloc_port(), bn.sink), (B.alloc_port(), bn.source)]
            d = start_tunneld(bn, "tput-%s-%s" % (name, short), path, sshd,
                              tp)
            daemons.append(d)
            clients.append((name, [d.pid], (tp[0][0], tp[1][0])))
        sp = [(B.alloc_port(), bn.sink), (B.alloc_port(), bn.source)]
        s = bn.ssh("ssh-tput-" + short, sshd, cipher, sp)
        clients.append(("openssh", [s.pid], (sp[0][0], sp[1][0])))
        bn.mode["rounds"] = rounds
        res = bn.stream_runs(short, clients, bn.mode["bytes"])
        for d in daemons:
            bn.check_alive(d, "tput %s" % short)
            B.stop_daemon(d)
        B.kill_proc(s)
        for direction in ("client->target", "target->client"):
            o = res[(direction, "openssh")]
            om, oc = B.median(o["mbs"]), B.median(o["cpu"])
            for who, _, _ in clients:
                r = res[(direction, who)]
                m, c = B.median(r["mbs"]), B.median(r["cpu"])
                rows.append((short, direction, who, m, c,
                             m / om if m and om else None,
                             c / oc if c and oc else None,
                             len(r["mbs"]), r["fail"], r["mbs"]))
    print("\n%-18s %-15s %-9s %8s %7s %9s %8s %3s %4s  runs MB/s" % (
        "cipher", "direction", "client", "MB/s", "xssh", "CPU s/GiB",
        "xssh", "n", "fail"))
    for (short, direction, who, m, c, rm, rc, n, fail, runs) in rows:
        print("%-18s %-15s %-9s %8s %7s %9s %8s %3d %4d  %s" % (
            short, direction, who, B.fmt(m),
            "-" if rm is None else "%.2f" % rm, B.fmt(c),
            "-" if rc is None else "%.2f" % rc, n, fail,
            " ".join("%.0f" % x for x in runs)))
    return rows


def profile(bn, bins, nbytes, copycount, up=False):
    cipher = B.CIPHERS[0]
    sshd = bn.sshd[cipher]
    print("\n%-10s %10s %10s %10s %10s %10s %10s %8s" % (
        "tunneld", "syscalls", "recv*", "poll", "send*", "copied",
        "memmove", "calls"))
    print("%-10s %10s %10s %10s %10s %10s %10s %8s" % (
        "(per GiB)", "", "", "", "", "GiB", "GiB", "1000s"))
    for name, path in bins.items():
        cc = bn.path("copies-%s.txt" % name)
        st = bn.path("strace-%s.txt" % name)
        env = {"LD_PRELOAD": copycount, "COPYCOUNT_OUT": cc}
        tp = [(B.alloc_port(), bn.sink if up else bn.source)]
        d = start_tunneld(bn, "prof-" + name, path, sshd, tp, env=env)
        tr = subprocess.Popen(["strace", "-c", "-f", "-q", "-o", st, "-p",
                               str(d.pid)], stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        B.PROCS.append(tr)
        time.sleep(1.0)
        B.run_loadgen(["up" if up else "down", "--port", tp[0][0],
                       "--bytes", nbytes,
                       "--timeout", 600], 620)
        tr.send_signal(signal.SIGINT)
        tr.wait(30)
        B.PROCS.remove(tr)
        B.stop_daemon(d)
        gib = nbytes / GiB
        calls = {}
        with open(st) as f:
            for line in f:
                p = line.split()
                if len(p) >= 5 and p[-1] not in ("total", "syscall") and \
                        p[0][0].isdigit():
                    try:
                        n = int(p[3])
                    except ValueError:
                        continue
                    calls[p[-1]] = n
        total = sum(calls.values())
        with open(cc) as f:
            c = f.read().split()
        cpy_n, cpy_b, mov_n, mov_b = int(c[1]), int(c[2]), int(c[4]), \
            int(c[5])
        recv = sum(v for k, v in calls.items()
                   if k in ("recvfrom", "recvmsg", "read", "recv"))
        send = sum(v for k, v in calls.items()
                   if k in ("sendto", "sendmsg", "write", "writev"))
        poll = sum(v for k, v in calls.items()
                   if k in ("poll", "ppoll", "epoll_wait", "epoll_pwait"))
        print("%-10s %10.0f %10.0f %10.0f %10.0f %10.2f %10.2f %8.0f" % (
            name, total / gib, recv / gib, poll / gib, send / gib,
            (cpy_b + mov_b) / GiB / gib, mov_b / GiB / gib,
            (cpy_n + mov_n) / 1000 / gib))
        print("           strace: %s" % ", ".join(
            "%s %d" % kv for kv in sorted(calls.items(),
                                           key=lambda kv: -kv[1])[:8]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=("tput", "profile"))
    ap.add_argument("bins", nargs="+", help="NAME=path/to/tunneld")
    ap.add_argument("--bytes", type=int, default=1024, help="MiB per run")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--up", action="store_true", help="profile client -> "
                    "target instead of target -> client")
    ap.add_argument("--copycount", default=os.path.join(
        B.ROOT, "build-patched", "copycount.so"))
    args = ap.parse_args()
    bins = [b.split("=", 1) for b in args.bins]
    signal.signal(signal.SIGTERM, B._sigterm)
    bn = B.Bench(bench_args(args.bytes))
    e2elib.TUNNELD_BIN = os.path.abspath(bins[0][1])
    status = 0
    try:
        bn.setup()
        paths = copy_bins(bn, bins)
        if args.what == "tput":
            tput(bn, paths, args.rounds)
        else:
            profile(bn, paths, args.bytes * MiB, args.copycount,
                    args.up)
    except (KeyboardInterrupt, SystemExit, Exception) as e:
        print("libssh_bench: %r (logs in %s)" % (e, bn.wd), file=sys.stderr)
        status = 1
    finally:
        B.cleanup()
        if not status and not B.FAILURES:
            shutil.rmtree(bn.wd, ignore_errors=True)
        else:
            print("libssh_bench: logs kept in %s" % bn.wd)
    return status


if __name__ == "__main__":
    sys.exit(main())
