"""make bench: the patched tunneld beside the stock one (issue 16).

`make bench` also builds tunneld against the patched libssh (make
LIBSSH=patched, build-patched/tunneld) and names it to bench.py
(--patched, or TUNNELD_PATCHED_BIN; TUNNELD_PATCHED_WHY says why there is
none when its build failed). The throughput and WAN sections then run
three clients, alternated: tunneld stock, tunneld patched, ssh -L. A row
keeps its keys (tunneld = stock, openssh, ratio, target, pass: the stock
build against ssh, "no regression") and gains patched, patched_ratio
(patched / ssh), patched_target and patched_pass. The other sections run
the stock build only.

Targets of the patched build (issue 16, shown, never asserted): loopback
MB/s >= 1.10x ssh -L, CPU s/GiB <= ssh's; WAN: the stock targets (what
limits a long link is the windows, not the receive path).
"""

import os
import shutil

import e2elib

WHO = "patched"
KEYS = ("patched", "patched_ratio", "patched_target", "patched_pass")
TPUT_TARGET = (">= 1.10x", lambda v, o: v / o >= 1.10)
CPU_TARGET = ("<= 1.0x", lambda v, o: v / o <= 1.0)


def setup(bench):
    """A private copy of the patched tunneld in the work directory, as
    bench.patched; None (and a note saying why) when there is none."""
    bench.patched = None
    src = getattr(bench.args, "patched", None)
    why = os.environ.get("TUNNELD_PATCHED_WHY")
    if not src:
        if why:
            bench.notes.append("no patched tunneld: %s; stock only" % why)
        return
    if not os.access(src, os.X_OK):
        bench.notes.append("no patched tunneld: %s is not built; stock "
                           "only" % src)
        return
    dst = bench.path("tunneld-patched")
    shutil.copy2(src, dst)
    bench.patched = dst


def tunneld(bench, name, *args, **kw):
    """bench.tunneld() with the patched binary; None without one."""
    if not bench.patched:
        return None
    saved = e2elib.TUNNELD_BIN
    e2elib.TUNNELD_BIN = bench.patched
    try:
        return bench.tunneld(name + "-patched", *args, **kw)
    finally:
        e2elib.TUNNELD_BIN = saved


def attach(bench, value, openssh, target, pred, n=None, runs=None):
    """Add the patched build's value to the row just made: its ratio to
    openssh and, with target, PASS or MISS by pred(patched, openssh); n
    (its runs) goes between the stock's and OpenSSH's in the row's n."""
    r = bench.rows[-1]
    ratio = value / openssh if value is not None and openssh else None
    passed = None
    if target and value is not None and openssh:
        passed = bool(pred(value, openssh))
    r.update(patched=value, patched_ratio=ratio, patched_target=target,
             patched_pass=passed)
    if n is not None and "+" in str(r["n"]):
        stock, rest = str(r["n"]).split("+", 1)
        r["n"] = "%s+%s+%s" % (stock, n, rest)
    if runs is not None:
        r["note"] = ((r["note"] + "; ") if r["note"] else "") + \
            "patched runs: " + " ".join(bench_fmt(x) for x in runs)
    bench.log("  %-46s %12s %12s %7s patched%s" % (
        "", bench_fmt(value), "",
        "-" if ratio is None else "%.3fx" % ratio,
        "" if passed is None else (" PASS" if passed else " MISS")))


def stream(bench, res, direction, key, openssh):
    """attach() for a stream_runs() result: key "mbs" or "cpu"."""
    p = res.get((direction, WHO))
    if p is None:
        return
    from bench import median
    target, pred = TPUT_TARGET if key == "mbs" else CPU_TARGET
    attach(bench, median(p[key]), openssh, target, pred, n=len(p[key]))
    if p["fail"]:
        bench.rows[-1]["note"] = ((bench.rows[-1]["note"] or "") +
                                  "; patched failed runs: %d (%s)" % (
                                      p["fail"], p.get("err")))


def bench_fmt(v):
    from bench import fmt
    return fmt(v)


def json_row(r, keys):
    """A row of results.json: the old keys, then the patched ones when
    the run had a patched build."""
    out = {k: r[k] for k in keys}
    if "patched" in r:
        out.update({k: r[k] for k in KEYS})
    return out


def header(bench):
    """The report's line about the patched build, if any."""
    if not getattr(bench, "patched", None):
        return []
    return ["patched: tunneld linked with build-libssh's libssh (the "
            "series of third_party/libssh/patches), measured in throughput "
            "and wan;", "  there stock = tunneld on the system libssh-4, "
            "n = stock+patched+openssh, s/ssh = stock/openssh, p/ssh = "
            "patched/openssh"]


def table(rows, fmt):
    """The report's table; with the patched columns when a row has them."""
    three = any("patched" in r for r in rows)
    hdr = ["figure", "stock" if three else "tunneld"]
    w = [46, 10]
    if three:
        hdr.append("patched")
        w.append(10)
    hdr += ["openssh", "s/ssh" if three else "ratio"]
    w += [10, 7]
    if three:
        hdr.append("p/ssh")
        w.append(7)
    hdr += ["unit", "n", "target", "result"]
    w += [9, 9, 9, 6]
    if three:
        hdr += ["p target", "p result"]
        w += [9, 8]
    res = {True: "PASS", False: "MISS", None: ""}
    table = [hdr]
    for r in rows:
        t = [r["figure"], fmt(r["tunneld"])]
        if three:
            t.append(fmt(r["patched"]) if "patched" in r else "")
        t += [fmt(r["openssh"]),
              "-" if r["ratio"] is None else "%.3fx" % r["ratio"]]
        if three:
            pr = r.get("patched_ratio")
            t.append("" if "patched" not in r else
                     "-" if pr is None else "%.3fx" % pr)
        t += [r["unit"], str(r["n"]), r["target"] or "-", res[r["pass"]]]
        if three:
            t += [r.get("patched_target") or "",
                  res[r.get("patched_pass")]]
        table.append(t)
    # Left-aligned: the figure and the text columns after the numbers.
    first_text = hdr.index("unit")
    lines = []
    for t in table:
        lines.append("  ".join(
            ("%-*s" if i == 0 or i >= first_text else "%*s") % (w[i], t[i])
            for i in range(len(t))).rstrip())
    return lines
