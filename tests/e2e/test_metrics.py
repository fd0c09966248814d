"""Metrics (issue 15, item 3): `tunctl metrics` and daemon.metrics_listen.

- promtool (Debian's prometheus package) passes `tunctl metrics` and GET
  /metrics of a live daemon with a tunnel of each kind up and traffic
  through each, with no lint message;
- the values are the daemon's: bytes in and out exactly what the test
  sent and got back, connections counted, a failed connection counted,
  states one-hot; a stopped sshd flips the link's and tunnels' state
  series, and its return counts one reconnect; keepalives fill the RTT
  histogram;
- the HTTP responder: GET and HEAD /metrics 200 (HTTP/1.0 and 1.1),
  another method 405 with Allow, another path 404, HTTP/2.0 505, an
  oversized head 431, garbage 400, each answer closing the connection;
  a request that never ends is closed at the deadline; 500 idle
  connections held open do not delay a new GET or tunctl status, and
  the daemon's memory comes back when they close;
- a reload moves, closes and reopens the listener; a bad metrics_listen
  is a configuration error (tunneld -t).
"""

import random
import re
import resource
import socket
import subprocess
import threading
import time

import pytest

from e2elib import (FAST, SLACK, TUNNELD_BIN, Tunneld, connect, dynamic,
                    free_port, local, log_event, mem_limit, note,
                    port_refuses, proc_rss_kb, recv_all, remote,
                    remote_dynamic, sink_handler, socks5_connect, tcp_listen,
                    wait_port)

SERIES = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """{(name, ((label, value), ...)): float} of an exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SERIES.match(line)
        assert m, "not a sample line: %r" % line
        labels = tuple(sorted(LABEL.findall(m.group(2) or "")))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def val(samples, name, **labels):
    return samples[(name, tuple(sorted(labels.items())))]


def promtool(text, what):
    """promtool check metrics on text: exit 0 and nothing to say."""
    p = subprocess.run(["promtool", "check", "metrics"], input=text,
                       capture_output=True, text=True, timeout=30)
    print("promtool check metrics (%s): exit %d, %d lines checked%s%s" %
          (what, p.returncode, len(text.splitlines()),
           ("\n" + p.stdout) if p.stdout else "",
           ("\n" + p.stderr) if p.stderr else ""))
    assert p.returncode == 0 and p.stdout == "" and p.stderr == "", \
        (p.returncode, p.stdout, p.stderr)


def http(port, request, timeout=10.0):
    """Send raw request bytes; return (status, headers, body, seconds) of
    the answer, read until the daemon closes."""
    t0 = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        data = recv_all(s)
    dt = time.monotonic() - t0
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines[0].startswith("HTTP/") \
        else None
    headers = {}
    for h in lines[1:]:
        k, _, v = h.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body, dt


def get_metrics(port):
    status, headers, body, _ = http(
        port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200, (status, headers, body[:200])
    assert headers["content-type"] == \
        "text/plain; version=0.0.4; charset=utf-8", headers
    assert int(headers["content-length"]) == len(body)
    assert headers["connection"] == "close"
    return body.decode()


def with_metrics(text, listen):
    return text.replace("daemon: {\n", 'daemon: {\n  metrics_listen = "%s";\n'
                        % listen, 1)


def start(env, tunnels, mport, sshd=None, hosts=None, defaults=None):
    """tunneld with metrics_listen = 127.0.0.1:mport."""
    if sshd is not None:
        env.write_known_hosts(sshd.port)
    path = env.path("tunnels.conf")
    with open(path, "w") as f:
        f.write(with_metrics(env.conf_text(tunnels, sshd=sshd, hosts=hosts,
                                           defaults=defaults),
                             tcp_listen(mport)))
    d = Tunneld(path, env.sock, env.path("tunneld%d.log" %
                                         (len(env.daemons) + 1)))
    env.daemons.append(d)
    d.start()
    wait_port(mport)
    return d, path


def nowhere():
    return {"nowhere": {"address": "127.0.0.1", "port": free_port()}}


def send_through(addr, n, sock=None):
    """Send n bytes to a sink through addr (or an open SOCKS socket);
    return the length of its answer."""
    s = sock or connect(addr)
    with s:
        s.sendall(b"x" * n)
        s.shutdown(socket.SHUT_WR)
        reply = recv_all(s)
    assert reply.split()[0] == str(n).encode(), reply
    return len(reply)


@pytest.mark.limit(120)
def test_exposition(env, own_sshd, servers):
    """promtool passes both outputs of a daemon with every kind of tunnel
    and traffic; the counters are exactly the bytes and connections the
    test made; an sshd stop flips the state series, its return counts a
    reconnect; keepalives fill the RTT histogram."""
    sink = servers(sink_handler)
    mport = free_port()
    ports = {k: free_port() for k in ("l", "r", "d", "rd", "bad")}
    tunnels = [
        local("l", tcp_listen(ports["l"]), sink.target),
        remote("r", tcp_listen(ports["r"]), sink.target),
        dynamic("d", tcp_listen(ports["d"])),
        remote_dynamic("rd", tcp_listen(ports["rd"])),
        local("bad", tcp_listen(ports["bad"]),
              tcp_listen(free_port())),        # nothing listens there
    ]
    d, _ = start(env, tunnels, mport, sshd=own_sshd, defaults=FAST)
    code, out, err = d.tunctl("wait", "l", "r", "d", "rd", "bad",
                              "--timeout", "15")
    assert code == 0, (code, out, err)

    sent = {"l": 100000, "r": 70001, "d": 50002, "rd": 30003}
    got = {"l": send_through(("127.0.0.1", ports["l"]), sent["l"]),
           "r": send_through(("127.0.0.1", ports["r"]), sent["r"])}
    host, port = sink.target.rsplit(":", 1)
    for k in ("d", "rd"):
        s, rep = socks5_connect(("127.0.0.1", ports[k]), host, int(port))
        assert rep == 0, rep
        got[k] = send_through(None, sent[k], sock=s)
    with connect(("127.0.0.1", ports["bad"])) as s:
        assert recv_all(s) == b""               # refused at the target

    def settled():
        st = d.status()
        return all(t["connections"]["active"] == 0 for t in st.values()) \
            and st["bad"]["connections"]["failed"] == 1
    d.wait_for(settled, 10, what="connections closed")

    text = d.tunctl("metrics")[1]
    body = get_metrics(mport)
    promtool(text, "tunctl metrics")
    promtool(body, "GET /metrics")
    m = parse(text)
    assert parse(body).keys() == m.keys()
    status = d.status()
    # remote-dynamic counts the SOCKS5 replies it writes into the channel
    # (2 + 10 bytes) as OUT, not the request it reads from it as IN;
    # dynamic counts neither (chan.c's counting, as tunctl status shows).
    got["rd"] += 2 + 10
    for k in sent:
        bi = val(m, "tunneld_tunnel_bytes_total", tunnel=k, direction="in")
        bo = val(m, "tunneld_tunnel_bytes_total", tunnel=k, direction="out")
        assert (bi, bo) == (sent[k], got[k]), (k, bi, bo, sent[k], got[k])
        assert (bi, bo) == (status[k]["in"], status[k]["out"])
        assert val(m, "tunneld_tunnel_connections_total", tunnel=k) == 1
        assert val(m, "tunneld_tunnel_connections_active", tunnel=k) == 0
        assert val(m, "tunneld_tunnel_connections_failed_total",
                   tunnel=k) == 0
    assert val(m, "tunneld_tunnel_connections_total", tunnel="bad") == 1
    assert val(m, "tunneld_tunnel_connections_failed_total",
               tunnel="bad") == 1
    for k in ports:
        states = {s: val(m, "tunneld_tunnel_state", tunnel=k, state=s)
                  for s in ("down", "starting", "waiting", "up", "failed")}
        assert states == {"down": 0, "starting": 0, "waiting": 0, "up": 1,
                          "failed": 0}, (k, states)
    assert val(m, "tunneld_tunnel_info", tunnel="rd", type="remote-dynamic",
               via="srv") == 1
    assert val(m, "tunneld_link_state", host="srv", state="up") == 1
    up_since = val(m, "tunneld_link_up_since_seconds", host="srv")
    assert abs(up_since - time.time()) < 60, up_since
    assert val(m, "tunneld_link_reconnects_total", host="srv") == 0
    assert val(m, "tunneld_build_info", version=d.tunctl("version")[1]
               .split()[-1], libssh=next(
                   dict(k[1])["libssh"] for k in m
                   if k[0] == "tunneld_build_info"),
               libevent=next(dict(k[1])["libevent"] for k in m
                             if k[0] == "tunneld_build_info")) == 1
    assert val(m, "process_open_fds") > 5

    # Keepalives (every second) fill the histogram.
    def rtt_count():
        return val(parse(d.tunctl("metrics")[1]),
                   "tunneld_link_keepalive_rtt_seconds_count", host="srv")
    d.wait_for(lambda: rtt_count() >= 2, 5 + 2 * SLACK, what="keepalives")
    m = parse(get_metrics(mport))
    n = val(m, "tunneld_link_keepalive_rtt_seconds_count", host="srv")
    assert val(m, "tunneld_link_keepalive_rtt_seconds_bucket", host="srv",
               le="+Inf") == n
    assert val(m, "tunneld_link_keepalive_rtt_seconds_bucket", host="srv",
               le="1") == n                     # loopback: well under 1 s
    assert 0 < val(m, "tunneld_link_keepalive_rtt_seconds_sum",
                   host="srv") < n

    # sshd stops: the link leaves up, the tunnels wait; back: a reconnect.
    own_sshd.stop()
    d.wait_link("srv", ("backoff", "connecting"), timeout=10 + SLACK)
    m = parse(get_metrics(mport))
    assert val(m, "tunneld_link_state", host="srv", state="up") == 0
    assert val(m, "tunneld_link_state", host="srv", state="backoff") + \
        val(m, "tunneld_link_state", host="srv", state="connecting") == 1
    assert val(m, "tunneld_link_up_since_seconds", host="srv") == 0
    assert val(m, "tunneld_link_failures_total", host="srv") >= 1
    assert val(m, "tunneld_tunnel_state", tunnel="l", state="up") == 0
    assert val(m, "tunneld_tunnel_state", tunnel="l", state="waiting") == 1
    promtool(d.tunctl("metrics")[1], "tunctl metrics, link down")
    own_sshd.restart()
    d.wait_link("srv", ("up",), timeout=10 + SLACK)
    m = parse(get_metrics(mport))
    assert val(m, "tunneld_link_reconnects_total", host="srv") == 1
    assert val(m, "tunneld_link_state", host="srv", state="up") == 1
    # The counters of the tunnels survived the outage.
    assert val(m, "tunneld_tunnel_bytes_total", tunnel="l",
               direction="in") == sent["l"]


def slowloris(port, result):
    """Send a request head that never ends, a byte a second; record when
    the daemon closed the connection."""
    t0 = time.monotonic()
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        s.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
        s.settimeout(1.0)
        while time.monotonic() - t0 < 30:
            try:
                if s.recv(100) == b"":
                    break
            except socket.timeout:
                s.sendall(b"a")
            except OSError:
                break
    finally:
        s.close()
    result.append(time.monotonic() - t0)


@pytest.mark.limit(120)
def test_http_responder(env):
    """Only GET /metrics is answered 200; everything else gets its status
    and a close; a slow request is closed at the deadline; 500 idle
    connections harm nothing."""
    mport = free_port()
    d, _ = start(env, [local("t", tcp_listen(free_port()), "127.0.0.1:9",
                             via="nowhere")], mport, hosts=nowhere())
    slow = []
    th = threading.Thread(target=slowloris, args=(mport, slow), daemon=True)
    th.start()

    get_metrics(mport)
    st, h, body, _ = http(mport, b"GET /metrics HTTP/1.0\r\n\r\n")
    assert st == 200 and b"tunneld_build_info" in body, (st, h)
    st, h, body, _ = http(mport, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert st == 200 and body == b"" and int(h["content-length"]) > 1000
    st, h, body, _ = http(mport, b"POST /metrics HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Length: 5\r\n\r\nhello")
    assert st == 405 and h["allow"] == "GET, HEAD", (st, h)
    for path in (b"/", b"/other", b"/metricsx", b"/metrics/"):
        st, h, body, _ = http(mport, b"GET " + path + b" HTTP/1.1\r\n\r\n")
        assert st == 404, (path, st)
    st, h, body, _ = http(mport, b"GET /metrics HTTP/2.0\r\n\r\n")
    assert st == 505, st
    st, h, body, _ = http(mport, b"GET /metrics HTTP/1.1\r\nX-Big: " +
                          b"a" * 9000 + b"\r\n\r\n")
    assert st == 431, st
    st, h, body, _ = http(mport, b"GET /metrics HTTP/1.1\r\nno colon\r\n\r\n")
    assert st == 400, st
    rnd = random.Random(15)
    for i in range(50):
        junk = bytes([rnd.choice(range(0, 65))]) + rnd.randbytes(
            rnd.randrange(0, 3000))
        st, h, body, dt = http(mport, junk)
        assert st == 400 and dt < 5, (i, junk[:40], st, dt)
    get_metrics(mport)

    # The never-ending request: closed at the 10 s deadline.
    th.join(30)
    assert slow and 9 < slow[0] < 10 + 3 * SLACK, slow
    note("metrics: a request that never ends closed after %.1f s" % slow[0])

    # 500 idle connections, held open.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(2048, hard), hard))
    rss0 = proc_rss_kb(d.pid)
    idle = []
    try:
        for _ in range(500):
            s = socket.socket()
            s.settimeout(10)
            s.connect(("127.0.0.1", mport))
            idle.append(s)
        t0 = time.monotonic()
        body = get_metrics(mport)
        dt_get = time.monotonic() - t0
        t0 = time.monotonic()
        code, out, err = d.tunctl("status")
        dt_status = time.monotonic() - t0
        assert code == 0, (code, out, err)
        m = parse(body)
        note("metrics: with 500 idle connections GET /metrics took %.0f ms, "
             "tunctl status %.0f ms; %d held, %d evicted" %
             (dt_get * 1000, dt_status * 1000,
              val(m, "tunneld_metrics_http_clients"),
              val(m, "tunneld_metrics_http_closed_total",
                  reason="evicted")))
        assert dt_get < 1.0 * SLACK and dt_status < 1.0 * SLACK, \
            (dt_get, dt_status)
        assert val(m, "tunneld_metrics_http_clients") <= 256
        assert val(m, "tunneld_metrics_http_closed_total",
                   reason="evicted") >= 500 - 256
        rss1 = proc_rss_kb(d.pid)
    finally:
        for s in idle:
            s.close()
    d.wait_for(lambda: val(parse(d.tunctl("metrics")[1]),
                           "tunneld_metrics_http_clients") == 0,
               5, what="idle connections closed")
    rss2 = proc_rss_kb(d.pid)
    note("metrics: RSS %d kB before 500 idle connections, %d kB with them, "
         "%d kB after" % (rss0, rss1, rss2))
    assert rss2 - rss0 < mem_limit(4096, 16384), (rss0, rss1, rss2)
    m = parse(get_metrics(mport))
    assert val(m, "tunneld_metrics_http_responses_total", code="400") >= 51
    assert val(m, "tunneld_metrics_http_closed_total", reason="timeout") >= 1
    promtool(d.tunctl("metrics")[1], "tunctl metrics, after the abuse")


def test_reload_and_check(env, tdir):
    """A reload moves the listener, closes it ("") and opens it again; a
    port held by someone else leaves it where it was, said in the
    summary; tunneld -t refuses a bad metrics_listen with file and line."""
    p1, p2 = free_port(), free_port()
    d, path = start(env, [local("t", tcp_listen(free_port()), "127.0.0.1:9",
                                via="nowhere")], p1, hosts=nowhere())
    with open(path) as f:
        text = f.read()

    def reload_to(listen):
        with open(path, "w") as f:
            f.write(text.replace('"%s"' % tcp_listen(p1), '"%s"' % listen))
        code, out, err = d.tunctl("reload")
        assert code == 0, (code, out, err)
        return out

    out = reload_to(tcp_listen(p2))
    assert "metrics on 127.0.0.1:%d" % p2 in out, out
    get_metrics(p2)
    assert port_refuses(p1)
    out = reload_to("")
    assert "metrics listener closed" in out, out
    assert port_refuses(p2)
    out = reload_to(tcp_listen(p2))
    get_metrics(p2)
    out = reload_to(tcp_listen(p2))
    assert "metrics" not in out, out        # unchanged: nothing said
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", p1))
        busy.listen(1)
        out = reload_to(tcp_listen(p1))
        assert "metrics_listen: listen 127.0.0.1:%d: bind: Address already " \
            "in use" % p1 in out, out
        assert "still listening on the old address" in out, out
        get_metrics(p2)

    for bad, why in (("localhost.example:80", "not a valid listen address"),
                     ("/tmp/m.sock", "UNIX socket paths are not allowed"),
                     ("127.0.0.1:0", "port 0 is out of range"),
                     ("127.0.0.1", "has no port")):
        p = "%s/bad.conf" % tdir
        with open(p, "w") as f:
            f.write(text.replace('"%s"' % tcp_listen(p1), '"%s"' % bad))
        r = subprocess.run([TUNNELD_BIN, "-t", "-f", p], capture_output=True,
                           text=True, timeout=30)
        line = [i + 1 for i, s in enumerate(text.splitlines())
                if "metrics_listen" in s][0]
        assert r.returncode == 1, (bad, r.returncode, r.stderr)
        assert "%s:%d: daemon: metrics_listen: " % (p, line) in r.stderr \
            and why in r.stderr, (bad, r.stderr)
    log_event(d.log, r"^reload: metrics", timeout=5)


def test_busy_port_and_big_exposition(env):
    """A metrics port held by someone else does not stop the daemon: it is
    bound once free (tried every 10 s). 2,000 tunnels make an exposition
    past the control socket's 1 MiB reply limit: tunctl metrics is refused
    with a message that says where to look, GET /metrics serves it and
    promtool passes it."""
    mport = free_port()
    tunnels = [local("t%04d" % i, tcp_listen(20000 + i), "127.0.0.1:9",
                     via="nowhere", enabled=False) for i in range(2000)]
    with socket.socket() as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("127.0.0.1", mport))
        busy.listen(1)
        path = env.path("tunnels.conf")
        with open(path, "w") as f:
            f.write(with_metrics(env.conf_text(tunnels, hosts=nowhere()),
                                 tcp_listen(mport)))
        d = Tunneld(path, env.sock, env.path("tunneld1.log"))
        env.daemons.append(d)
        t0 = time.time()
        d.start()
        log_event(d.log, r"^metrics: listen 127.0.0.1:%d: bind: Address already "
                  r"in use; trying again every 10 s" % mport, after=t0 - 1,
                  timeout=5)
        assert d.tunctl("status", "t0000")[0] == 4     # running, down
    t1 = time.time()
    log_event(d.log, r"^metrics: listening on 127.0.0.1:%d" % mport,
              after=t1 - 1, timeout=10 + 2 * SLACK)
    note("metrics: a busy port was bound %.1f s after it was freed" %
         (time.time() - t1))

    code, out, err = d.tunctl("metrics")
    assert code == 1 and out == "", (code, out[:200], err)
    assert re.search(r"the metrics are \d+ bytes, more than a control reply "
                     r"may hold \(1048576\); use GET /metrics "
                     r"\(daemon.metrics_listen\)", err), err
    body = get_metrics(mport)
    assert len(body) > 1 << 20, len(body)
    m = parse(body)
    assert val(m, "tunneld_tunnel_state", tunnel="t1999", state="down") == 1
    promtool(body, "GET /metrics, 2,000 tunnels")
    note("metrics: 2,000 tunnels: %d bytes" % len(body))


def test_docs_promql():
    """Every PromQL expression of docs/metrics.md and of the Grafana
    dashboard parses (promtool check rules) and names only series the
    daemon has."""
    import json
    import os
    docs = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "..", "..", "docs")
    with open(os.path.join(docs, "grafana-tunneld.json")) as f:
        dash = json.load(f)
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    infence, block = False, []
    with open(os.path.join(docs, "metrics.md")) as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("```"):
                if infence and block:
                    cur = ""
                    for b in block:
                        if b.startswith("#") or not b.strip():
                            continue
                        b = b.split("   for:")[0]
                        if b.startswith("  "):
                            cur += " " + b.strip()
                            continue
                        if cur:
                            exprs.append(cur)
                        cur = b
                    if cur:
                        exprs.append(cur)
                infence, block = not infence, []
                continue
            if infence:
                block.append(line)
    exprs = [e for e in exprs if "tunneld_" in e or e.startswith("up{")]
    assert len(exprs) >= 25, exprs
    rules = ["groups:", "- name: docs", "  rules:"]
    for i, e in enumerate(exprs):
        e = e.replace("$instance", ".*").replace("$__rate_interval", "5m")
        rules += ["  - record: docs_%d" % i, "    expr: %s" % json.dumps(e)]
        for name in re.findall(r"\b(tunneld_[a-z_]+)", e):
            base = re.sub(r"_(bucket|sum|count)$", "", name) \
                if "rtt_seconds_" in name else name
            assert base in KNOWN, (name, e)
    p = subprocess.run(["promtool", "check", "rules", "/dev/stdin"],
                       input="\n".join(rules) + "\n", capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, (p.stdout, p.stderr)


# Every series name the daemon writes (checked against the docs above).
KNOWN = {
    "tunneld_tunnel_info", "tunneld_tunnel_state",
    "tunneld_tunnel_state_since_seconds", "tunneld_tunnel_bytes_total",
    "tunneld_tunnel_connections_active", "tunneld_tunnel_connections_total",
    "tunneld_tunnel_connections_failed_total", "tunneld_link_info",
    "tunneld_link_state", "tunneld_link_state_since_seconds",
    "tunneld_link_up_since_seconds", "tunneld_link_retries",
    "tunneld_link_reconnects_total", "tunneld_link_failures_total",
    "tunneld_link_keepalive_rtt_seconds", "tunneld_build_info",
    "tunneld_metrics_http_responses_total", "tunneld_metrics_http_clients",
    "tunneld_metrics_http_closed_total",
}
