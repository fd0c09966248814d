"""tunneld's lines in the journal, under a real systemd (container.py, the
container, sshd and echo server of test_systemd.py):

  - every line goes by the journal's native protocol with PRIORITY=,
    SYSLOG_IDENTIFIER=tunneld, and TUNNEL= and HOST= for what it is about:
    `journalctl -u tunneld TUNNEL=pg` shows pg's lines only, each with the
    host pg goes through; HOST= shows a link's lines; a refused target is
    info (PRIORITY=6: one client's failure), a failing link a warning
    (PRIORITY=4); reload's lines too;
  - the journal's socket out of reach (InaccessiblePaths=): one warning,
    then <N> lines on stderr, which the journal still files by priority;
  - JOURNAL_STREAM naming another stream than stderr (run here, outside
    the container): <N> lines on stderr, nothing sent to a journal.

One container for the module (test_systemd's box fixture), always stopped.
"""

import json
import re
import time

import e2elib
from e2elib import (DEFAULTS, SLACK, echo_handler, free_port, local, note,
                    render_conf, tcp_listen)
# The container, its sshd and echo server: test_systemd's, shared.
from test_systemd import (CTL_SOCK, KEY, KNOWN_HOSTS, SSHD_PORT,  # noqa: F401
                          _check, _container_available, b, box)

# Nothing listens on this port inside the container: host dead's link
# fails, and keeps failing.
DEAD_PORT = SSHD_PORT + 1
VIA = {"pg": "db", "web": "www", "lost": "dead"}


def _conf(b, tunnels, hosts=("db", "www", "dead")):
    d = dict(DEFAULTS)
    d["identity"] = KEY
    d["known_hosts"] = KNOWN_HOSTS
    d["backoff_max"] = 1.0
    all_hosts = {"db": {"address": "127.0.0.1", "port": SSHD_PORT},
                 "www": {"address": "127.0.0.1", "port": SSHD_PORT},
                 "dead": {"address": "127.0.0.1", "port": DEAD_PORT}}
    return render_conf(CTL_SOCK, d, {h: all_hosts[h] for h in hosts},
                       tunnels)


def _tunnels(b, web_target="127.0.0.1:1", lost=True):
    t = [local("pg", "127.0.0.1:7201", b.echo.target, via="db"),
         local("web", "127.0.0.1:7202", web_target, via="www")]
    if lost:
        t.append(local("lost", "127.0.0.1:7203", b.echo.target,
                       via="dead"))
    return t


def _journal(b, *args):
    """journalctl -u tunneld ARGS -o json: the entries of the service's
    current run (its invocation ID), as dicts."""
    inv = b.show("InvocationID")["InvocationID"]
    r = b.ctr.run("journalctl", "--no-pager", "-u", "tunneld", *args,
                  "-o", "json", check=False)
    out = []
    for line in r.stdout.splitlines():
        if line.startswith("{"):
            e = json.loads(line)
            if e.get("_SYSTEMD_INVOCATION_ID") == inv:
                out.append(e)
    return out


def _wait_journal(b, pred, what, *args):
    """Poll the journal until pred(entries) holds; return the entries."""
    last = []

    def ok():
        last[:] = _journal(b, *args)
        return pred(last)
    try:
        b.ctr.wait_for(ok, 10 * SLACK, what, interval=0.2)
    except AssertionError as e:
        raise AssertionError("%s\n%s" % (e, "\n".join(
            _show(x) for x in last[-40:])))
    return last


def _show(e):
    return "%s %s TUNNEL=%s HOST=%s: %s" % (
        e.get("_TRANSPORT"), e.get("PRIORITY"), e.get("TUNNEL"),
        e.get("HOST"), e.get("MESSAGE"))


def _msgs(entries):
    return [e["MESSAGE"] for e in entries]


def _about(msg):
    """(tunnel, host) a line names by the daemon's prefixes."""
    m = re.match(r"(?:reload: )?tunnel ([\w.-]+)[: ]", msg)
    if m:
        return m.group(1), None
    m = re.match(r"(?:link|reload: host) ([\w.-]+)[: ]", msg)
    if m:
        return None, m.group(1)
    return None, None


def test_fields_filter_tunnel_and_host(b):
    """Three tunnels on three hosts (pg via db, web via www to a target
    that refuses, lost via dead, whose link cannot connect): TUNNEL=pg
    shows only pg's lines, each with HOST=db; HOST=dead the link's
    failures as warnings; every line about a tunnel or a link carries its
    fields, reload's lines too."""
    def body():
        b.ctr.write("/etc/tunnels.conf", _conf(b, _tunnels(b)))
        b.ctr.systemctl("start", "tunneld.service")
        assert b.roundtrip(7201) == b"through the container's tunnel\n"
        # web's target refuses: the client is dropped, logged at info (a
        # failure of one connection, rate limited: tunneld(8) Logging).
        s = b.connect(7202)
        s.settimeout(10 * SLACK)
        try:
            assert s.recv(1) == b""
        finally:
            s.close()

        t0 = time.monotonic()
        pg = _wait_journal(
            b, lambda es: any("connection from" in m and "open" in m
                              for m in _msgs(es)),
            "pg's connection in the journal", "TUNNEL=pg")
        t_pg = time.monotonic() - t0
        for e in pg:
            assert e.get("TUNNEL") == "pg", _show(e)
            assert e.get("HOST") == "db", _show(e)
            assert e["MESSAGE"].startswith("tunnel pg:"), _show(e)
            assert e["_TRANSPORT"] == "journal", _show(e)
            assert e["SYSLOG_IDENTIFIER"] == "tunneld", _show(e)
            assert e["_SYSTEMD_UNIT"] == "tunneld.service", _show(e)
        up = [e for e in pg if re.search(r"-> up$", e["MESSAGE"])]
        assert up and all(e["PRIORITY"] == "6" for e in up), \
            [_show(e) for e in pg]
        assert any(e["PRIORITY"] == "7" for e in pg), \
            [_show(e) for e in pg]

        web = _wait_journal(
            b, lambda es: any("failed" in m for m in _msgs(es)),
            "web's refused target in the journal", "TUNNEL=web")
        warn = [e for e in web if "connect to 127.0.0.1:1 from www failed"
                in e["MESSAGE"]]
        assert warn, [_show(e) for e in web]
        assert warn[0]["PRIORITY"] == "6" and warn[0]["HOST"] == "www", \
            _show(warn[0])

        dead = _wait_journal(
            b, lambda es: sum(m.startswith("link dead: connect to ")
                              for m in _msgs(es)) >= 2,
            "two failures of link dead", "HOST=dead")
        fails = [e for e in dead if re.match(
            r"link dead: connect to .*refused", e["MESSAGE"])]
        assert fails, [_show(e) for e in dead]
        assert all(e["PRIORITY"] == "4" and "TUNNEL" not in e
                   for e in fails), [_show(e) for e in fails]
        assert any(e.get("TUNNEL") == "lost" for e in dead), \
            [_show(e) for e in dead]
        # The link's dial (debug) is about the link too.
        assert any(e["MESSAGE"].startswith("link dead: dial 127.0.0.1: ")
                   and e["PRIORITY"] == "7" for e in dead), \
            [_show(e) for e in dead]
        assert all(e["HOST"] == "dead" for e in dead)

        # A reload: web changes, lost and its host go.
        b.ctr.write("/etc/tunnels.conf", _conf(
            b, _tunnels(b, web_target="127.0.0.1:2", lost=False),
            hosts=("db", "www")))
        b.ctr.systemctl("reload", "tunneld.service")
        rl = _wait_journal(
            b, lambda es: any(m.startswith("reload: kept")
                              for m in _msgs(es)), "the reload's summary")
        changed = [e for e in rl if e["MESSAGE"] ==
                   "reload: tunnel web changed"]
        assert changed and changed[0].get("TUNNEL") == "web" and \
            changed[0].get("HOST") == "www", [_show(e) for e in rl[-20:]]
        gone = [e for e in rl if e["MESSAGE"] ==
                "reload: tunnel lost removed"]
        assert gone and gone[0].get("TUNNEL") == "lost" and \
            gone[0].get("HOST") == "dead", [_show(e) for e in rl[-20:]]

        # Every line of the run: the fields its prefix calls for, no
        # other; all sent natively.
        everything = _journal(b)
        n_tunnel = n_link = 0
        for e in everything:
            assert e["_TRANSPORT"] == "journal", _show(e)
            tunnel, host = _about(e["MESSAGE"])
            if tunnel is not None:
                n_tunnel += 1
                assert (e.get("TUNNEL"), e.get("HOST")) == \
                    (tunnel, VIA[tunnel]), _show(e)
            elif host is not None:
                n_link += 1
                assert "TUNNEL" not in e and e.get("HOST") == host, \
                    _show(e)
            else:
                assert "TUNNEL" not in e and "HOST" not in e, _show(e)
        assert len([e for e in everything if e.get("TUNNEL") == "pg"]) \
            == len(_journal(b, "TUNNEL=pg"))
        note("journal: %d lines of one run, %d about a tunnel, %d about a "
             "link, all native with their fields; pg's connection "
             "filtered by TUNNEL=pg within %.2fs" %
             (len(everything), n_tunnel, n_link, t_pg))
    _check(b, body)


def test_journal_unreachable_falls_back_to_stderr(b):
    """InaccessiblePaths=/run/systemd/journal/socket: the first line says
    the journal cannot be reached; from there every line goes to stderr
    with its <N> priority, which the journal files by that priority
    (no fields)."""
    def body():
        b.ctr.write("/etc/systemd/system/tunneld.service.d/e2e.conf",
                    "[Service]\nInaccessiblePaths=/run/systemd/journal/"
                    "socket\n")
        b.ctr.systemctl("daemon-reload")
        b.ctr.write("/etc/tunnels.conf", _conf(
            b, _tunnels(b, lost=False), hosts=("db", "www")))
        b.ctr.systemctl("start", "tunneld.service")
        assert b.roundtrip(7201) == b"through the container's tunnel\n"
        es = _wait_journal(
            b, lambda es: any(re.match(r"tunnel pg: .* -> up$", m)
                              for m in _msgs(es)), "pg up in the journal")
        first = es[0]
        assert first["MESSAGE"].startswith(
            "log: cannot send to the journal"), _show(first)
        assert first["PRIORITY"] == "4", _show(first)
        for e in es:
            assert e["_TRANSPORT"] == "stdout", _show(e)
            assert "TUNNEL" not in e and "HOST" not in e, _show(e)
            assert not e["MESSAGE"].startswith("<"), _show(e)
        up = [e for e in es if re.match(r"tunnel pg: .* -> up$",
                                        e["MESSAGE"])]
        assert up[0]["PRIORITY"] == "6", _show(up[0])
        assert any(e["PRIORITY"] == "7" for e in es)
        note("journal: socket unreachable: %d lines through stderr with "
             "<N> priorities: %s" % (len(es), first["MESSAGE"]))
    _check(b, body)


def test_other_stream_prints_priorities(sshd, env, servers):
    """JOURNAL_STREAM names another file than stderr (the daemon's stderr
    is not the journal): every line on stderr is <N>TEXT, no time stamp,
    and nothing tries the journal."""
    echo = servers(echo_handler)
    port = free_port()
    d = env.start([local("pg", tcp_listen(port), echo.target)], sshd=sshd,
                  daemon_env={"JOURNAL_STREAM": "1:1"})
    d.wait_tunnel("pg", "up")
    assert e2elib.echo_roundtrip(("127.0.0.1", port)) == \
        b"hello through the tunnel\n"
    assert d.stop() == 0
    with open(d.log) as f:
        lines = f.read().split("=== log\n", 1)[1].splitlines()
    assert lines, "no log"
    bad = [ln for ln in lines if not re.match(r"<[0-7]>\S", ln)]
    assert not bad, bad
    assert any(re.match(r"<6>tunnel pg: \w+ -> up$", ln) for ln in lines)
    assert any(ln.startswith("<5>link srv: up") for ln in lines), lines
    assert any(ln.startswith("<7>tunnel pg: connection from") for ln in
               lines), lines
    assert not any("journal" in ln for ln in lines), lines
    note("journal: JOURNAL_STREAM not stderr: %d lines, all <N>TEXT" %
         len(lines))
