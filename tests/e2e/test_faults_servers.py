"""Faults of the SSH server side: sshd restarted 20 times in a row while
clients keep arriving, and servers that are not SSH servers at all (one
that accepts and says nothing, one that answers garbage, one that stalls
in the key exchange). Each case notes its figures ("fault CASE: ...",
printed in the run's measurements section).
"""

import re
import statistics
import struct
import subprocess
import threading
import time

import pytest

from e2elib import (FAST, SLACK, TUNCTL_BIN, echo_handler, echo_roundtrip,
                    free_port, local, log_events, mem_limit, note, proc_fds,
                    proc_rss_kb, small_quarantine, start_up, tcp_listen)
from test_control import raw


@pytest.mark.limit(120)
def test_sshd_restart_loop(own_sshd, env, servers):
    """20 sshd restarts 0.5 s apart while a client connects every 100 ms:
    afterwards the link is back within one backoff step, every client
    got its echo or was closed (none left hanging), and the daemon's
    descriptors and RSS are back where they were."""
    echo = servers(echo_handler)
    port = free_port()
    addr = ("127.0.0.1", port)
    d = start_up(env, own_sshd, [local("t", tcp_listen(port), echo.target)],
                 defaults=FAST, daemon_env=small_quarantine())
    for i in range(20):                 # warm up the allocator
        assert echo_roundtrip(addr, b"warm %d" % i) == b"warm %d" % i
    d.wait_for(lambda: d.tunnel("t")["connections"]["active"] == 0, 5,
               what="no connection left")
    fd0, rss0 = proc_fds(d.pid), proc_rss_kb(d.pid)

    results = []
    lock = threading.Lock()
    wait_max = 10 + 2 * SLACK           # connect_wait, and our noise

    def client(i):
        msg = b"client %d" % i
        t0 = time.monotonic()
        try:
            got = echo_roundtrip(addr, msg, timeout=wait_max + 5)
            r = "ok" if got == msg else "closed" if got == b"" else \
                "wrong"
        except ConnectionResetError:
            r = "closed"
        except OSError as e:
            r = repr(e)
        with lock:
            results.append((r, time.monotonic() - t0, t0))

    stop = threading.Event()
    threads = []

    def arrivals():
        i = 0
        while not stop.is_set():
            t = threading.Thread(target=client, args=(i,), daemon=True)
            t.start()
            threads.append(t)
            i += 1
            stop.wait(0.1)

    gen = threading.Thread(target=arrivals, daemon=True)
    gen.start()
    t_start = time.time()
    t0 = time.monotonic()
    try:
        for i in range(20):
            delay = t0 + 0.5 * i - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            own_sshd.restart()
        lk = d.link("srv")
        bound = FAST["connect_timeout"] + FAST["backoff_max"] + SLACK
        up_dt = d.wait_link("srv", "up", timeout=bound + 10)
        t_up = time.monotonic()
        time.sleep(1.0)                 # clients after the recovery
    finally:
        stop.set()
        gen.join(5)
    for t in threads:
        t.join(wait_max + 10)
    hung = sum(t.is_alive() for t in threads)
    assert echo_roundtrip(addr, b"after") == b"after"
    d.wait_for(lambda: d.tunnel("t")["connections"]["active"] == 0, 5,
               what="no connection left")
    time.sleep(0.5)
    fd1, rss1 = proc_fds(d.pid), proc_rss_kb(d.pid)
    counts = {}
    for r, _, _ in results:
        counts[r] = counts.get(r, 0) + 1
    slowest = max(s for _, s, _ in results)
    late = [r for r, _, t in results if t > t_up]
    downs = len(log_events(d.log, r"^link srv: up -> ", t_start))
    note("fault sshd restarted 20 times 0.5 s apart, %d clients: %s "
         "(after the recovery: %d of %d ok), slowest %.2fs; link left up "
         "%d times, state %s at the last restart; up %.2fs after it "
         "(bound %.1fs); fds %d -> %d, RSS %d -> %d kB" % (
             len(results), counts, late.count("ok"), len(late), slowest,
             downs, lk["state"], up_dt, bound, fd0, fd1, rss0, rss1))
    assert hung == 0, "%d clients still hanging" % hung
    assert set(counts) <= {"ok", "closed"}, counts
    assert late and set(late) == {"ok"}, late
    assert slowest <= wait_max, slowest
    assert up_dt <= bound, up_dt
    assert abs(fd1 - fd0) <= 1, (fd0, fd1)
    # -O2: the first burst of waiting clients grows the heap once by about
    # 1 MB (it stays flat over 100 more restarts); under ASan the 16 MB
    # quarantine and the allocator's caches.
    assert rss1 - rss0 < mem_limit(2048, 24 * 1024), (rss0, rss1)


# -- servers that are not SSH servers ---------------------------------------

def _string(b):
    return struct.pack(">I", len(b)) + b


def kexinit_packet():
    """An unencrypted SSH_MSG_KEXINIT packet (RFC 4253 7.1) offering what
    libssh accepts: a server that then never answers the client's key
    exchange message stalls in the middle of it."""
    lists = [b"curve25519-sha256,ecdh-sha2-nistp256", b"ssh-ed25519",
             b"aes128-ctr", b"aes128-ctr", b"hmac-sha2-256",
             b"hmac-sha2-256", b"none", b"none", b"", b""]
    payload = bytes([20]) + bytes(range(16)) + \
        b"".join(_string(x) for x in lists) + b"\0" + b"\0\0\0\0"
    pad = 8 - (5 + len(payload)) % 8
    if pad < 4:
        pad += 8
    return struct.pack(">IB", 1 + len(payload) + pad, pad) + payload + \
        b"\0" * pad


def drain(conn):
    while conn.recv(4096):
        pass


def silent_handler(conn):
    """Accepts, never sends a byte (not even a banner)."""
    drain(conn)


def garbage_handler(conn):
    """Answers with something that is not SSH."""
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\n" + bytes(range(256)) * 64)
    drain(conn)


def stall_kex_handler(conn):
    """A banner and a KEXINIT, then nothing: the key exchange stalls."""
    conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 stall\r\n" + kexinit_packet())
    drain(conn)


def tunctl_time(sock, want):
    """Seconds `tunctl status` takes, which must exit with want."""
    t0 = time.monotonic()
    p = subprocess.run([TUNCTL_BIN, "-s", sock, "status"],
                       capture_output=True, timeout=10,
                       stdin=subprocess.DEVNULL)
    assert p.returncode == want, p
    return time.monotonic() - t0


def control_rtt(sock):
    """Seconds a status request takes on a fresh control connection."""
    t0 = time.monotonic()
    reply, _ = raw(sock, b"tunneld/2 status\n", timeout=5)
    assert b"%end 0" in reply or b"%end 4" in reply, reply[-200:]
    return time.monotonic() - t0


def attempts(d, host, after):
    """(start, end) of each finished connection attempt of host's link,
    from the daemon's log."""
    starts = log_events(d.log, r"^link %s: connecting to " % host, after)
    ends = log_events(d.log, r"^link %s: retry \d+ in " % host, after)
    out = []
    for e in ends:
        s = [x for x in starts if x <= e]
        if s:
            out.append((s[-1], e))
    return out


@pytest.mark.limit(90)
def test_servers_that_do_not_speak_ssh(sshd, env, servers):
    """A server that accepts TCP and never sends its banner, one that sends
    garbage, one that stalls in the key exchange: each attempt fails
    within connect_timeout with an error that says what went wrong, is
    retried with backoff, and the event loop never waits on them: the
    control socket answers in < 100 ms throughout and a tunnel on a good
    link keeps working."""
    bad = {"silent": servers(silent_handler),
           "garbage": servers(garbage_handler),
           "stall": servers(stall_kex_handler)}
    echo = servers(echo_handler)
    c = dict(FAST, connect_timeout=2, backoff_initial=0.2, backoff_max=1.0)
    hosts = {h: {"address": "127.0.0.1", "port": s.port}
             for h, s in bad.items()}
    hosts["good"] = {"address": "127.0.0.1", "port": sshd.port}
    ports = {h: free_port() for h in hosts}
    tunnels = [local(h, tcp_listen(ports[h]), echo.target, via=h)
               for h in hosts]
    t_start = time.time()
    d = env.start(tunnels, sshd=sshd, hosts=hosts, defaults=c)
    assert d.tunctl("wait", "good", "--timeout", "15")[0] == 0
    # What starting tunctl costs here (its libraries; far more under
    # ASan): tunctl status against a socket nobody serves.
    base = statistics.median(tunctl_time(env.path("nobody.sock"), 3)
                             for _ in range(5))
    rtts, tunctl_secs, echoes = [], [], []
    t_end = time.monotonic() + 3 * c["connect_timeout"] + 1
    while time.monotonic() < t_end:
        rtts.append(control_rtt(d.sock))
        tunctl_secs.append(tunctl_time(d.sock, 0))
        t0 = time.monotonic()
        assert echo_roundtrip(("127.0.0.1", ports["good"]), b"x") == b"x"
        echoes.append(time.monotonic() - t0)
        time.sleep(0.02)
    links = d.links()
    for h in bad:
        tries = attempts(d, h, t_start)
        longest = max(e - s for s, e in tries) if tries else None
        note("fault %s server: %d attempts failed, the longest in %.2fs "
             "(connect_timeout %ds); retries %d, state %s; error: %s" % (
                 h, len(tries), longest or -1, c["connect_timeout"],
                 links[h]["retries"], links[h]["state"],
                 links[h]["last_error"]))
    note("fault bad servers: control status round trip max %.1f ms "
         "(%d requests), tunctl status median %.1f ms max %.1f ms (%.1f "
         "ms of it starting tunctl), echo through the good link max %.1f "
         "ms" % (max(rtts) * 1e3, len(rtts),
                 statistics.median(tunctl_secs) * 1e3,
                 max(tunctl_secs) * 1e3, base * 1e3, max(echoes) * 1e3))
    for h in bad:
        tries = attempts(d, h, t_start)
        assert len(tries) >= 2, (h, tries)
        for s, e in tries:
            assert e - s <= c["connect_timeout"] + 0.5 * SLACK, (h, s, e)
        assert links[h]["state"] in ("backoff", "connecting"), links[h]
        assert links[h]["retries"] >= 2, links[h]
        assert links[h]["last_error"], links[h]
    errors = {h: links[h]["last_error"] for h in bad}
    assert "timed out after 2 s (SSH handshake: the server sent nothing" \
        in errors["silent"], errors
    # Garbage fails as soon as 8 KiB came without a banner.
    assert re.search(r"SSH handshake with \S+ failed: \d+ bytes and no "
                     r"SSH banner: not an SSH server", errors["garbage"]), \
        errors
    assert max(e - s for s, e in attempts(d, "garbage", t_start)) < 1.0
    assert "timed out after 2 s (SSH handshake: key exchange with " \
        "\"SSH-2.0-OpenSSH_9.2p1 stall\" unfinished)" in errors["stall"], \
        errors
    # The loop never waited: every answer to status (our own client)
    # within 100 ms, and tunctl's beyond what starting it costs.
    assert max(rtts) < 0.1, max(rtts)
    assert statistics.median(tunctl_secs) - base < 0.1, (base, tunctl_secs)
    assert links["good"]["state"] == "up" and \
        links["good"]["retries"] == 0, links["good"]
