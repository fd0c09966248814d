"""tunctl: down/up/restart/wait, every exit code, and a control socket that
survives whatever a client sends it.
"""

import json
import os
import random
import signal
import socket
import subprocess
import threading
import time

import pytest

from e2elib import (SLACK, TUNCTL_BIN, TUNNELD_BIN, connect, echo_handler,
                    echo_roundtrip, free_port, local, log_event, mem_limit,
                    note, port_refuses, proc_rss_kb, recv_all, run_tunctl,
                    tail, tcp_listen)

# Resolution of the daemon's log stamps (milliseconds, truncated).
STAMP = 0.001


def timed_tunctl(d, *args, timeout=30):
    """Run tunctl against daemon d; return (exit code, stdout, stderr,
    seconds) where seconds is the daemon's own time from its log line of
    the connection to that of its close.  The connection is logged in an
    earlier loop turn than the one that reads the request, whose time the
    daemon's timers count from (the request's own log line may be later
    than that)."""
    t0 = time.time() - STAMP
    p = subprocess.Popen([TUNCTL_BIN, "-s", d.sock] + [str(a) for a in args],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise
    t_conn = log_event(d.log, r" pid %d: connected$" % p.pid, after=t0)
    t_end = log_event(d.log, r" pid %d: closed$" % p.pid, after=t0)
    return p.returncode, out, err, t_end - t_conn


def control_conns(path):
    """Connections to the control socket at path that the daemon has not
    closed yet: /proc/net/unix lists the daemon's end of each (accepted or
    still in the backlog) under the socket's path; the listener is not
    counted."""
    n = 0
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            fields = line.split()
            if len(fields) >= 8 and fields[7] == path and fields[5] != "01":
                n += 1
    return n


def two_tunnels(env, sshd, servers):
    """pg (works) and bad (its host's port is closed: never up)."""
    echo = servers(echo_handler)
    port = free_port()
    hosts = {"srv": {"address": "127.0.0.1", "port": sshd.port},
             "nowhere": {"address": "127.0.0.1", "port": free_port()}}
    d = env.start([local("pg", tcp_listen(port), echo.target),
                   local("bad", tcp_listen(free_port()), echo.target,
                         via="nowhere")],
                  sshd=sshd, hosts=hosts)
    return d, port


@pytest.mark.limit(60)
def test_down_up_restart_wait(sshd, env, servers):
    d, port = two_tunnels(env, sshd, servers)
    code, out, err = d.tunctl("wait", "pg", "--timeout", "10")
    assert code == 0, (code, out, err)
    assert echo_roundtrip(("127.0.0.1", port), b"one") == b"one"

    # A connection open across `down` is closed by it.
    live = connect(("127.0.0.1", port), timeout=10)
    live.sendall(b"ping")
    assert live.recv(4) == b"ping"

    code, out, err = d.tunctl("down", "pg")
    assert code == 0, (code, out, err)
    assert port_refuses(port)
    try:
        assert recv_all(live) == b""
    except ConnectionResetError:
        pass
    live.close()
    t = d.tunnel("pg")
    assert t["state"] == "down" and t["enabled"] is False, t
    code, out, err = d.tunctl("status", "pg")
    assert code == 4, (code, out, err)
    assert "down" in out
    # down again is harmless
    assert d.tunctl("down", "pg")[0] == 0

    code, out, err = d.tunctl("up", "pg")
    assert code == 0, (code, out, err)
    code, out, err = d.tunctl("wait", "pg", "--timeout", "10")
    assert code == 0, (code, out, err)
    assert d.tunnel("pg")["enabled"] is True
    assert echo_roundtrip(("127.0.0.1", port), b"two") == b"two"
    code, out, err = d.tunctl("status", "pg")
    assert code == 0, (code, out, err)

    code, out, err = d.tunctl("restart", "pg")
    assert code == 0, (code, out, err)
    code, out, err = d.tunctl("wait", "pg", "--timeout", "10")
    assert code == 0, (code, out, err)
    assert echo_roundtrip(("127.0.0.1", port), b"three") == b"three"

    # wait on a tunnel whose link cannot come up: 4 after 2 s (timed by
    # the daemon's log, from tunctl's connection to its close once tunctl
    # has the answer).
    for names in (["bad"], ["pg", "bad"]):
        code, out, err, dt = timed_tunctl(d, "wait", *names, "--timeout",
                                          "2")
        note("wait %s --timeout 2: answered 4 after %.3fs (daemon)" %
             (" ".join(names), dt))
        assert code == 4, (names, code, out, err)
        assert "timed out after 2 s" in err, (names, err)
        assert 2.0 - STAMP <= dt <= 2.0 + SLACK, (names, dt)
    assert d.tunnel("bad")["state"] in ("waiting", "starting", "failed")
    assert d.link("nowhere")["state"] in ("backoff", "connecting", "failed")

    # --all
    assert d.tunctl("down", "--all")[0] == 0
    st = d.status()
    assert {t["state"] for t in st.values()} == {"down"}, st
    assert port_refuses(port)
    assert d.link("srv")["state"] == "idle"
    assert d.tunctl("up", "--all")[0] == 0
    assert d.tunctl("wait", "pg", "--timeout", "10")[0] == 0
    assert echo_roundtrip(("127.0.0.1", port), b"four") == b"four"


@pytest.mark.limit(90)
def test_exit_codes(sshd, env, servers, tdir):
    d, port = two_tunnels(env, sshd, servers)
    assert d.tunctl("wait", "pg", "--timeout", "10")[0] == 0

    # 0
    for args in (["status"], ["links"], ["status", "pg"], ["version"],
                 ["--json", "status"], ["--json", "links"]):
        code, out, err = d.tunctl(*args)
        assert code == 0, (args, code, out, err)
        assert out.strip(), args
    assert "0.1.0" in d.tunctl("version")[1]
    code, out, _ = run_tunctl(None, "status", env={"TUNCTL_SOCKET": d.sock})
    assert code == 0 and "pg" in out

    # 1: the daemon refused (unknown tunnel)
    for args in (["up", "nosuch"], ["down", "nosuch"],
                 ["restart", "nosuch"], ["status", "nosuch"],
                 ["wait", "nosuch", "--timeout", "1"]):
        code, out, err = d.tunctl(*args)
        assert code == 1, (args, code, out, err)
        assert "nosuch" in err, (args, err)
    assert d.tunnel("pg")["state"] == "up"      # nothing else touched

    # 2: usage
    for args in ([], ["frobnicate"], ["up"], ["down"], ["wait"],
                 ["wait", "pg", "--timeout", "abc"], ["--bogus", "status"],
                 ["status", "--bogus"]):
        code, out, err = d.tunctl(*args)
        assert code == 2, (args, code, out, err)
        assert err.strip(), args

    # 3: no daemon there (the message says why)
    plain = os.path.join(tdir, "plain-file")
    open(plain, "w").close()
    stale = os.path.join(tdir, "stale.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(stale)
    s.close()                       # a socket file nobody listens on
    for path in (os.path.join(tdir, "nope.sock"), "/nonexistent/dir/x.sock",
                 plain, stale):
        code, out, err = run_tunctl(path, "status")
        assert code == 3, (path, code, out, err)
        assert err.strip(), path
    code, out, err = run_tunctl(None, "status",
                                env={"TUNCTL_SOCKET": plain})
    assert code == 3, (code, out, err)

    # 3: something that accepts and hangs up at once
    hup = os.path.join(tdir, "hup.sock")
    ls = socket.socket(socket.AF_UNIX)
    ls.bind(hup)
    ls.listen(8)
    stop = threading.Event()

    held = []
    mode = ["hangup"]

    def serve():
        ls.settimeout(0.2)
        while not stop.is_set():
            try:
                c, _ = ls.accept()
            except OSError:
                continue
            if mode[0] == "hangup":
                c.close()
            else:
                held.append(c)      # accepts, reads nothing, never answers
    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        code, out, err = run_tunctl(hup, "status", timeout=30)
        assert code == 3, (code, out, err)
        # 3: something that accepts and never answers ("no answer")
        mode[0] = "silent"
        t0 = time.monotonic()
        code, out, err = run_tunctl(hup, "status", timeout=40)
        dt = time.monotonic() - t0
        note("silent socket: tunctl gave up after %.1fs" % dt)
        assert code == 3, (code, out, err)
        assert "no answer" in err, err
        # tunctl waits 10 s for an answer (docs/control-protocol.md).
        assert 10.0 <= dt <= 10.0 + SLACK, dt
    finally:
        stop.set()
        th.join(2)
        ls.close()
        for c in held:
            c.close()

    # 4: named tunnel not up; wait timed out
    code, out, err = d.tunctl("status", "bad")
    assert code == 4, (code, out, err)
    code, out, err = d.tunctl("status", "pg", "bad")
    assert code == 4, (code, out, err)
    assert d.tunctl("down", "pg")[0] == 0
    code, out, err = d.tunctl("status", "pg")
    assert code == 4, (code, out, err)
    code, out, err = d.tunctl("wait", "pg", "--timeout", "1")
    assert code == 4, (code, out, err)
    # status of everything is not "a named tunnel": 0
    assert d.tunctl("status")[0] == 0


def test_check_needs_no_daemon(env, tdir, keys):
    good = env.write_conf([local("pg", "127.0.0.1:9000", "127.0.0.1:5432")],
                          hosts={"srv": {"address": "127.0.0.1",
                                         "port": 22}})
    code, out, err = run_tunctl(os.path.join(tdir, "no-daemon.sock"),
                                "check", good)
    assert code == 0, (code, out, err)


# ---------------------------------------------------------------------------
# Raw protocol abuse


def raw(sock_path, data, timeout=10.0, until_eof=False):
    """Send data on a fresh control connection (ignoring EPIPE), then read
    until EOF or (unless until_eof) until a %end line arrives; return
    (bytes, saw_eof)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(sock_path)
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        buf = b""
        eof = False
        while True:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                eof = True
                break
            except socket.timeout:
                break
            if not b:
                eof = True
                break
            buf += b
            if not until_eof and b"\n%end" in b"\n" + buf and \
                    buf.endswith(b"\n"):
                break
        return buf, eof
    finally:
        s.close()


def end_code(reply):
    """The CODE of the last %end line of a reply."""
    lines = [ln for ln in reply.split(b"\n") if ln.startswith(b"%end")]
    assert lines, "no %%end line in %r" % reply[:300]
    return int(lines[-1].split()[1])


@pytest.mark.limit(90)
def test_control_socket_abuse(sshd, env, servers):
    d, port = two_tunnels(env, sshd, servers)
    assert d.tunctl("wait", "pg", "--timeout", "10")[0] == 0

    def healthy():
        assert d.alive(), "tunneld died"
        code, out, err = d.tunctl("status")
        assert code == 0, (code, out, err)

    # The protocol speaks: a body, a final line, and the connection stays
    # open for a second request.
    reply, _ = raw(d.sock, b"tunneld/2 version\n")
    assert b"tunneld 0.1.0" in reply and end_code(reply) == 0, reply
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(d.sock)
    for _ in range(2):
        s.sendall(b"tunneld/2 status\n")
        buf = b""
        while not (b"\n" + buf).count(b"\n%end") or not buf.endswith(b"\n"):
            b = s.recv(65536)
            assert b, "connection closed after one request: %r" % buf
            buf += b
        assert end_code(buf) == 0 and b"pg" in buf
    s.close()

    # Bad requests: an error, this connection only.
    for req, want in ((b"tunneld/9 status\n", 2),
                      (b"hello world\n", 2),
                      (b"tunneld/2 frobnicate\n", 2),
                      (b"tunneld/2\n", 2),
                      (b"tunneld/2 up\n", 2),
                      (b"tunneld/2 status \x00\xff\xfe\n", None),
                      (b"tunneld/2 down nosuch\n", 1)):
        reply, _ = raw(d.sock, req)
        code = end_code(reply)
        if want is None:
            assert code in (1, 2), (req, reply)
        else:
            assert code == want, (req, reply)
        healthy()

    # Random garbage, with and without a newline at the end.
    rnd = random.Random(1234)
    for i in range(20):
        junk = bytes(rnd.getrandbits(8) for _ in range(rnd.randint(1, 3000)))
        if i % 2:
            junk = junk.replace(b"\n", b"") + b"\n"
            reply, _ = raw(d.sock, junk)
            assert end_code(reply) == 2, reply
        else:
            s = socket.socket(socket.AF_UNIX)
            s.connect(d.sock)
            try:
                s.sendall(junk)
            except OSError:
                pass
            s.close()
    healthy()

    # 100 KB without a newline: %end 2 and the connection is closed.
    reply, eof = raw(d.sock, b"A" * 100000, timeout=5, until_eof=True)
    assert end_code(reply) == 2, reply
    assert eof, "connection not closed after an oversized line"
    healthy()
    # The same after a valid prefix.
    reply, eof = raw(d.sock, b"tunneld/2 status " + b"x" * 5000 + b"\n",
                     timeout=5, until_eof=True)
    assert end_code(reply) == 2 and eof, reply
    healthy()

    # An idle half-written request does not block anybody.
    idle = socket.socket(socket.AF_UNIX)
    idle.connect(d.sock)
    idle.sendall(b"tunneld/2 sta")
    healthy()
    idle.close()

    # A client that floods requests and never reads: memory stays bounded.
    base = proc_rss_kb(d.pid)
    s = socket.socket(socket.AF_UNIX)
    s.connect(d.sock)
    s.setblocking(False)
    req = b"tunneld/2 status\n" * 1000
    t_end = time.monotonic() + 3
    pushed = 0
    while time.monotonic() < t_end:
        try:
            pushed += s.send(req)
        except BlockingIOError:
            time.sleep(0.01)
        except OSError:
            break       # the daemon may drop such a client
    grown = proc_rss_kb(d.pid) - base
    note("flood: %d kB of requests unread, daemon RSS +%d kB" %
          (pushed >> 10, grown))
    # The daemon stops reading while 64 KiB of replies are unread, so the
    # kernel takes only ~215 kB of requests and the -O2 build grows by
    # ~80 kB.  Under ASan RSS grows by a step of ~8.5 MB (measured 8432-8496
    # kB, the same after 1, 3 or 6 s of flooding: its allocator and shadow,
    # not buffering); 16 MB leaves margin for that and stays below what
    # unbounded buffering would take: an ASan daemon answers ~5 MB of
    # replies a second (measured), over 15 MB in these 3 s.
    assert grown < mem_limit(64 * 1024, 16 * 1024), grown
    s.close()
    healthy()

    # 500 simultaneous connections, some mid-request, then all closed.
    conns = []
    for i in range(500):
        c = socket.socket(socket.AF_UNIX)
        c.setblocking(False)
        t_end = time.monotonic() + 10
        while True:
            try:
                c.connect(d.sock)
                break
            except BlockingIOError:     # the backlog is full: retry
                assert time.monotonic() < t_end, "connect %d stuck" % i
                time.sleep(0.01)
        conns.append(c)
        if i % 3 == 0:
            try:
                c.send(b"tunneld/2 stat")
            except OSError:
                pass
    # They do not hold up anybody else: status answers at once (tunctl
    # itself would give up after 10 s).
    t0 = time.monotonic()
    code, out, err = d.tunctl("status", timeout=30)
    dt = time.monotonic() - t0
    note("status with 500 clients open: %d after %.2fs" % (code, dt))
    assert code == 0, (code, out, err)
    assert dt <= SLACK, dt
    assert control_conns(d.sock) >= 500
    for c in conns:
        c.close()
    d.wait_for(lambda: control_conns(d.sock) == 0, SLACK,
               what="the daemon to close the 500 control connections")
    healthy()
    assert d.tunnel("pg")["state"] == "up"
    assert echo_roundtrip(("127.0.0.1", port), b"still") == b"still"


def _listening(port, netns=None):
    """Local addresses (hex, as /proc/net/tcp{,6} shows them) listening
    on a TCP port, in this network namespace or in netns."""
    files = ("/proc/net/tcp", "/proc/net/tcp6")
    if netns is None:
        text = ""
        for f in files:
            with open(f) as fh:
                text += fh.read()
    else:
        text = subprocess.run(["ip", "netns", "exec", netns, "cat"] +
                              list(files), capture_output=True, text=True,
                              timeout=30, check=True).stdout
    out = []
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0] == "sl":
            continue
        addr, p = fields[1].split(":")
        if int(p, 16) == port and fields[3] == "0A":
            out.append(addr)
    return out


WILDCARD = {"00000000", "00000000000000000000000000000000"}


def test_listen_forms_and_enabled_false(sshd, env, servers):
    """listen = "PORT" binds loopback only, "*:PORT" every address (in a
    network namespace of the test's own); enabled = false starts down
    until `tunctl up`."""
    echo = servers(echo_handler)
    p1, p2, p3 = free_port(), free_port(), free_port()
    d = env.start([local("bare", str(p1), echo.target),
                   local("spare", tcp_listen(p3), echo.target,
                         enabled=False)], sshd=sshd)
    code, out, err = d.tunctl("wait", "bare", "--timeout", "15")
    assert code == 0, (code, out, err)
    assert _listening(p1) == ["0100007F"], _listening(p1)
    assert echo_roundtrip(("127.0.0.1", p1), b"form") == b"form"
    st = d.status()
    assert st["bare"]["listen"].endswith(":%d" % p1)
    assert st["spare"]["state"] == "down" and st["spare"]["enabled"] is False
    assert port_refuses(p3)
    assert d.tunctl("status", "spare")[0] == 4
    assert d.tunctl("up", "spare")[0] == 0
    assert d.tunctl("wait", "spare", "--timeout", "10")[0] == 0
    assert echo_roundtrip(("127.0.0.1", p3), b"spare") == b"spare"

    # "*:PORT" listens on every address: only in a namespace of our own,
    # with a tunneld there whose link cannot come up (nothing listens on
    # port 1 there); its listeners are bound all the same.
    ns = "tde2e-%08x" % random.getrandbits(32)
    sock = env.path("ns.sock")
    conf = env.path("ns.conf")
    log = env.path("tunneld-ns.log")
    with open(conf, "w") as f:
        f.write(env.conf_text([local("star", "*:%d" % p2, "127.0.0.1:9"),
                               local("bare", str(p1), "127.0.0.1:9")],
                              hosts={"srv": {"address": "127.0.0.1",
                                             "port": 1}}, sock=sock))
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=30)
    proc = None
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo",
                        "up"], check=True, timeout=30)
        with open(log, "w") as logf:
            proc = subprocess.Popen(["ip", "netns", "exec", ns, TUNNELD_BIN,
                                     "-d", "-f", conf],
                                    stdin=subprocess.DEVNULL, stdout=logf,
                                    stderr=logf)
        log_event(log, r"^started, 2 tunnels")
        assert set(_listening(p2, ns)) <= WILDCARD, _listening(p2, ns)
        assert _listening(p2, ns), tail(log)
        assert _listening(p1, ns) == ["0100007F"], _listening(p1, ns)
        code, out, err = run_tunctl(sock, "status", json_out=True)
        assert code == 0, (code, out, err)
        st = {t["name"]: t for t in json.loads(out)["tunnels"]}
        assert st["star"]["state"] in ("starting", "waiting"), st
        assert st["star"]["listen"].endswith(":%d" % p2), st
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, tail(log)
        assert not os.path.exists(sock)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        subprocess.run(["ip", "netns", "del", ns], timeout=30)


RFC3339 = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$"


def test_json_and_table_fields(sshd, env, servers):
    """--json has every field with the right type; the tables have the
    columns the contract lists."""
    import re
    d, port = two_tunnels(env, sshd, servers)
    assert d.tunctl("wait", "pg", "--timeout", "10")[0] == 0
    assert echo_roundtrip(("127.0.0.1", port), b"12345") == b"12345"

    def counted():
        pg = d.tunnel("pg")
        return (pg["in"] >= 5 and pg["out"] >= 5 and
                pg["connections"]["active"] == 0)
    d.wait_for(counted, SLACK, what="pg to count the 5 bytes each way")
    code, out, err = d.tunctl("status", json_out=True)
    assert code == 0, (code, out, err)
    doc = json.loads(out)
    num = (int, float)
    for t in doc["tunnels"]:
        assert set(t) >= {"name", "type", "via", "listen", "target", "state",
                          "since", "since_seconds", "connections",
                          "in", "out", "last_error", "enabled"}, t
        assert t["type"] == "local"
        assert t["state"] in ("up", "starting", "waiting", "failed", "down")
        assert re.match(RFC3339, t["since"]), t["since"]
        assert isinstance(t["since_seconds"], num) and t["since_seconds"] >= 0
        for k in ("active", "total", "failed"):
            assert isinstance(t["connections"][k], int), t
        assert isinstance(t["in"], int) and isinstance(
            t["out"], int)
        assert t["last_error"] is None or isinstance(t["last_error"], str)
        assert isinstance(t["enabled"], bool)
    pg = {t["name"]: t for t in doc["tunnels"]}["pg"]
    assert pg["via"] == "srv" and pg["listen"] == "127.0.0.1:%d" % port
    assert pg["in"] == 5 and pg["out"] == 5, pg
    assert pg["connections"]["total"] == 1, pg

    code, out, err = d.tunctl("links", json_out=True)
    assert code == 0, (code, out, err)
    links = {lk["host"]: lk for lk in json.loads(out)["links"]}
    for lk in links.values():
        assert set(lk) >= {"host", "address", "port", "user", "jump",
                           "state", "since", "since_seconds", "retries",
                           "next_retry_seconds", "rtt_ms", "last_error",
                           "tunnels"}, lk
        assert lk["state"] in ("connecting", "up", "backoff", "failed",
                               "idle")
        assert isinstance(lk["port"], int) and isinstance(lk["retries"], int)
        assert re.match(RFC3339, lk["since"]), lk["since"]
        assert lk["next_retry_seconds"] is None or isinstance(
            lk["next_retry_seconds"], num)
        assert lk["rtt_ms"] is None or isinstance(lk["rtt_ms"], num)
    assert links["srv"]["port"] == sshd.port and links["srv"]["user"] == "root"
    assert links["srv"]["state"] == "up" and links["srv"]["retries"] == 0
    assert links["nowhere"]["retries"] >= 1
    assert links["nowhere"]["last_error"]

    code, out, err = d.tunctl("status")
    header = out.splitlines()[0].split()
    want = ["NAME", "TYPE", "VIA", "LISTEN", "TARGET", "STATE", "SINCE",
            "CONNS", "IN", "OUT"]
    assert [h for h in header if h in want] == want, header
    assert any(ln.split()[0] == "pg" and "127.0.0.1:%d" % port in ln
               for ln in out.splitlines()[1:]), out
    code, out, err = d.tunctl("links")
    header = out.splitlines()[0]
    for col in ("HOST", "ADDRESS", "STATE", "SINCE", "RETRIES", "NEXT",
                "RTT", "TUNNELS"):
        assert col in header, (col, header)
