"""Host settings that shape the SSH session: compression (zlib, like
ssh -C) and ciphers (a preference list, every name checked with libssh).

This module's private sshd logs at DEBUG1, so its log says what each key
exchange agreed ("kex: client->server cipher: X MAC: Y compression: Z")
and when it turns compression on after the login.  The bytes tunneld's
own link socket moved are read from the kernel (ss -ti): with compression
on they must stay well below the payload, which they cannot if
compression were silently off.
"""

import os
import re
import shutil
import subprocess
import time

import pytest

from e2elib import (SLACK, TUNNELD_BIN, Sshd, echo_handler, echo_roundtrip,
                    free_port, local, note, port_refuses, run_tunctl,
                    sink_handler, source_handler, start_up, tail, tcp_listen,
                    transfer_both_ways)

KEX = re.compile(r"kex: (client->server|server->client) cipher: (\S+) "
                 r"MAC: (\S+) compression: (\S+)")


@pytest.fixture(scope="module")
def sshd(workdir, keys):
    """This module's private sshd, at LogLevel DEBUG1 (the kex lines)."""
    s = Sshd(os.path.join(workdir, "sshd-options"), keys.host_key,
             keys.authorized_keys)
    with open(s.cfg) as f:
        text = f.read()
    assert "LogLevel VERBOSE\n" in text
    with open(s.cfg, "w") as f:
        f.write(text.replace("LogLevel VERBOSE\n", "LogLevel DEBUG1\n"))
    s.start()
    yield s
    s.stop()


def log_mark(sshd):
    """Where sshd's log ends now: what follows is the next session's."""
    return os.path.getsize(sshd.log)


def log_since(sshd, mark):
    with open(sshd.log, errors="replace") as f:
        f.seek(mark)
        return f.read()


def kex_since(sshd, mark, timeout=5.0):
    """The (direction, cipher, mac, compression) of every key exchange
    sshd logged after mark; waits (bounded) for both directions."""
    deadline = time.monotonic() + timeout + SLACK
    while True:
        found = KEX.findall(log_since(sshd, mark))
        if {f[0] for f in found} == {"client->server", "server->client"} \
                or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def srv(sshd, **kw):
    """The hosts block: one host "srv", this module's sshd, plus kw."""
    h = {"address": "127.0.0.1", "port": sshd.port}
    h.update(kw)
    return {"srv": h}


def link_wire_bytes(pid, port):
    """(sent, received): the bytes the kernel counted on the one TCP
    connection of process pid to 127.0.0.1:port (tunneld's link)."""
    assert shutil.which("ss"), "ss (iproute2) is needed to count bytes"
    out = subprocess.run(["ss", "-tinpH", "dst", "127.0.0.1:%d" % port],
                         capture_output=True, text=True, timeout=10,
                         check=True).stdout
    lines = out.splitlines()
    found = []
    for i, line in enumerate(lines[:-1]):
        if "pid=%d," % pid not in line:
            continue
        sent = re.search(r"\bbytes_sent:(\d+)", lines[i + 1])
        recv = re.search(r"\bbytes_received:(\d+)", lines[i + 1])
        found.append((int(sent.group(1)) if sent else 0,
                      int(recv.group(1)) if recv else 0))
    assert len(found) == 1, "tunneld's link socket in ss -ti:\n" + out
    return found[0]


def stop_daemon(d):
    """SIGTERM the daemon; it must exit 0 and remove its socket."""
    assert d.stop() == 0, tail(d.log)
    assert not os.path.exists(d.sock)


def hex_text(n):
    """n bytes of random hex digits: zlib gets them to about half (4 bits
    of entropy a byte), and no two stretches repeat."""
    return os.urandom(n // 2).hex().encode()


@pytest.mark.limit(300)
def test_compression_64mib_both_ways(sshd, env, servers):
    """compression = true: 64 MiB arrive intact each way, sshd agreed on
    zlib@openssh.com, and the link socket moved far fewer bytes than the
    payload (about half for hex text)."""
    data = hex_text(64 << 20)
    sink = servers(sink_handler)
    src = servers(source_handler(data))
    p_up, p_down = free_port(), free_port()
    mark = log_mark(sshd)
    d = start_up(env, sshd, [local("up", tcp_listen(p_up), sink.target),
                             local("down", tcp_listen(p_down), src.target)],
                 hosts=srv(sshd, compression=True))
    kex = kex_since(sshd, mark)
    assert kex and all(k[3] == "zlib@openssh.com" for k in kex), \
        (kex, log_since(sshd, mark)[-3000:])

    sent0, recv0 = link_wire_bytes(d.pid, sshd.port)
    dt_up, dt_down, _ = transfer_both_ways(p_up, p_down, data)
    sent1, recv1 = link_wire_bytes(d.pid, sshd.port)
    up, down = sent1 - sent0, recv1 - recv0
    note("compression: 64 MiB hex text, %.0f MB/s up, %.0f MB/s down; "
         "on the wire %.1f%% up, %.1f%% down" % (
             len(data) / dt_up / 1e6, len(data) / dt_down / 1e6,
             100.0 * up / len(data), 100.0 * down / len(data)))
    # Uncompressed, SSH adds framing and MACs: at least len(data) each way.
    assert up < 0.7 * len(data), (up, len(data))
    assert down < 0.7 * len(data), (down, len(data))
    assert sink.errors == [] and src.errors == []

    # sshd switched its zlib streams on once we had logged in (the
    # delayed zlib@openssh.com), outside the [preauth] child too.
    assert re.search(r"^debug1: Enabling compression at level \d+\.$",
                     log_since(sshd, mark), re.M), \
        log_since(sshd, mark)[-3000:]
    stop_daemon(d)


@pytest.mark.limit(120)
def test_no_compression_by_default(sshd, env, servers):
    """The control: without the setting sshd agrees on "none" and the link
    socket carries at least every byte of the payload, so the bound of the
    test above would fail if compression were silently off."""
    data = hex_text(8 << 20)
    sink = servers(sink_handler)
    src = servers(source_handler(data))
    p_up, p_down = free_port(), free_port()
    mark = log_mark(sshd)
    d = start_up(env, sshd, [local("up", tcp_listen(p_up), sink.target),
                             local("down", tcp_listen(p_down), src.target)],
                 hosts=srv(sshd))
    kex = kex_since(sshd, mark)
    assert kex and all(k[3] == "none" for k in kex), kex
    sent0, recv0 = link_wire_bytes(d.pid, sshd.port)
    transfer_both_ways(p_up, p_down, data)
    sent1, recv1 = link_wire_bytes(d.pid, sshd.port)
    assert sent1 - sent0 >= len(data)
    assert recv1 - recv0 >= len(data)
    assert sink.errors == [] and src.errors == []


def run_with(env, sshd, servers, **kw):
    """Start tunneld (hosts/defaults in kw), move 1 MiB through it, stop
    it; return the ciphers sshd's key exchange agreed on, as a set."""
    echo = servers(echo_handler)
    port = free_port()
    mark = log_mark(sshd)
    d = start_up(env, sshd, [local("e", tcp_listen(port), echo.target)],
                 **kw)
    payload = os.urandom(1 << 20)
    assert echo_roundtrip(("127.0.0.1", port), payload) == payload
    kex = kex_since(sshd, mark)
    stop_daemon(d)
    assert len(kex) >= 2, log_since(sshd, mark)[-3000:]
    return {k[1] for k in kex}


@pytest.mark.limit(120)
def test_ciphers_negotiated(sshd, env, servers):
    """One cipher in a host is the one agreed; a list in defaults is a
    preference order (its first one the server knows wins); with none
    given libssh's own first choice is used, which is neither."""
    plain = run_with(env, sshd, servers, hosts=srv(sshd))
    assert len(plain) == 1 and not plain & {"aes128-ctr", "aes192-ctr"}, \
        plain
    assert run_with(env, sshd, servers,
                    hosts=srv(sshd, ciphers="aes128-ctr")) == {"aes128-ctr"}
    assert run_with(env, sshd, servers, hosts=srv(sshd),
                    defaults={"ciphers": "aes192-ctr, aes128-ctr"}) == \
        {"aes192-ctr"}
    # A host's own list wins over the one in defaults.
    assert run_with(env, sshd, servers,
                    hosts=srv(sshd, ciphers="aes128-gcm@openssh.com"),
                    defaults={"ciphers": "aes192-ctr"}) == \
        {"aes128-gcm@openssh.com"}
    note("ciphers: libssh's default here is %s" % sorted(plain)[0])


def line_of(path, needle):
    """The 1-based number of the first line of a file holding needle."""
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if needle in line:
                return i
    raise AssertionError("%s not in %s" % (needle, path))


def test_bad_cipher_refused(sshd, env):
    """A name libssh does not know: tunneld -t and tunctl check exit 1
    naming file:line, the cipher and what is supported; the daemon will
    not start with it."""
    port = free_port()
    conf = env.write_conf([local("t", tcp_listen(port), "127.0.0.1:9")],
                          sshd=sshd, hosts=srv(sshd, ciphers="aes128-ctr,"
                                               "bogus-cipher"),
                          defaults={"ciphers": "AES256-CTR"})
    host_line = line_of(conf, "bogus-cipher")
    def_line = line_of(conf, "AES256-CTR")
    want = [
        r'%s:%d: defaults: ciphers: unknown cipher "AES256-CTR" '
        r'\(supported: [^)]*\baes256-ctr\b[^)]*\)$' % (re.escape(conf),
                                                      def_line),
        r'%s:%d: host "srv": ciphers: unknown cipher "bogus-cipher" '
        r'\(supported: [^)]*\baes128-ctr\b[^)]*\)$' % (re.escape(conf),
                                                      host_line),
    ]

    p = subprocess.run([TUNNELD_BIN, "-t", "-f", conf], capture_output=True,
                       text=True, timeout=30, stdin=subprocess.DEVNULL)
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    lines = [ln for ln in out.splitlines()
             if re.match(re.escape(conf) + r":\d+: ", ln)]
    assert len(lines) == 2, out
    for rx, ln in zip(want, lines):
        assert re.match(rx, ln), (rx, ln)

    code, o, e = run_tunctl(env.path("nodaemon.sock"), "check", conf)
    assert code == 1, (o, e)
    lines = [ln for ln in (o + e).splitlines()
             if re.match(re.escape(conf) + r":\d+: ", ln)]
    assert len(lines) == 2 and all(re.match(rx, ln)
                                   for rx, ln in zip(want, lines)), o + e

    # The daemon refuses to start: exit 1, the errors, no socket, no port.
    p = subprocess.run([TUNNELD_BIN, "-d", "-f", conf], capture_output=True,
                       text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "bogus-cipher" in p.stderr and "not starting" in p.stderr, \
        p.stderr
    assert not os.path.exists(env.sock)
    assert port_refuses(port)


@pytest.mark.limit(120)
def test_reload_applies_ciphers_and_compression(sshd, env, servers):
    """A reload that changes ciphers or compression reconnects the link
    with the new ones; one with an unknown cipher is rejected whole and
    the link keeps its session."""
    echo = servers(echo_handler)
    port = free_port()
    tunnels = [local("e", tcp_listen(port), echo.target)]
    mark = log_mark(sshd)
    d = start_up(env, sshd, tunnels, hosts=srv(sshd, ciphers="aes128-ctr"))
    assert {(k[1], k[3]) for k in kex_since(sshd, mark)} == \
        {("aes128-ctr", "none")}

    mark = log_mark(sshd)
    env.write_conf(tunnels, sshd=sshd,
                   hosts=srv(sshd, ciphers="aes256-ctr", compression=True))
    code, out, err = d.tunctl("reload")
    assert code == 0, (code, out, err)
    assert re.search(r"\brestarted\b", out), out
    assert d.tunctl("wait", "e", "--timeout", "15")[0] == 0
    assert {(k[1], k[3]) for k in kex_since(sshd, mark)} == \
        {("aes256-ctr", "zlib@openssh.com")}
    assert echo_roundtrip(("127.0.0.1", port), b"x" * 100000) == \
        b"x" * 100000

    # Rejected: the errors with file:line, no new session.
    mark = log_mark(sshd)
    env.write_conf(tunnels, sshd=sshd,
                   hosts=srv(sshd, ciphers="aes256-ctr,rot13"))
    conf = env.path("tunnels.conf")
    code, out, err = d.tunctl("reload")
    assert code == 1, (code, out, err)
    assert re.search(r'%s:%d: host "srv": ciphers: unknown cipher "rot13"' %
                     (re.escape(conf), line_of(conf, "rot13")), out), out
    assert d.link("srv")["state"] == "up"
    assert echo_roundtrip(("127.0.0.1", port), b"still") == b"still"
    assert KEX.findall(log_since(sshd, mark)) == []


def test_cipher_the_server_refuses(sshd, env):
    """A name libssh knows but the server does not offer (OpenSSH dropped
    3des-cbc from its defaults): the link fails its key exchange, is
    retried, and its error shows both sides' lists."""
    d = env.start([local("t", tcp_listen(free_port()), "127.0.0.1:9")],
                  sshd=sshd, hosts=srv(sshd, ciphers="3des-cbc"))

    def refused():
        err = d.link("srv")["last_error"] or ""
        return "no match for method encryption" in err
    d.wait_for(refused, 10 + SLACK, what="the key exchange refused")
    link = d.link("srv")
    assert "client [3des-cbc]" in link["last_error"], link
    assert link["state"] in ("backoff", "connecting"), link
    assert d.tunnel("t")["state"] != "up"
