"""The receive window grows with the path (daemon/window.c), and a client
that stops reading still bounds what the daemon holds.

The link runs through the bench's delay relay (`loadgen delay`, built from
bench/loadgen.c once per run: conftest's loadgen fixture): 150 ms round trip (long enough
that a loaded ASan build still moves half a window per round), at most
4 MiB held each way.
"""

import hashlib
import os
import re
import time

import pytest

import e2elib
from e2elib import (DelayRelay, Firehose, connect, local, mem_limit, note,
                    proc_rss_kb, recv_all, recv_exact, source_handler,
                    tcp_listen)

LIBSSH_WINDOW = 1280000
RTT_MS = 150


@pytest.fixture
def relay(loadgen, sshd):
    """A delay relay in front of the module's sshd: its port."""
    with DelayRelay(loadgen, sshd.port, RTT_MS) as r:
        yield r.port


def start_via_relay(env, port, tunnels):
    env.write_known_hosts(port)
    d = env.start(tunnels, hosts={"srv": {"address": "127.0.0.1",
                                          "port": port}})
    code, out, err = d.tunctl("wait", *[t["name"] for t in tunnels],
                              "--timeout", "20")
    assert code == 0, (code, out, err)
    return d


def windows(d):
    """The windows the daemon's log says it grew to."""
    with open(d.log) as f:
        return [int(m) for m in re.findall(r"window \d+ -> (\d+) bytes",
                                           f.read())]


@pytest.mark.limit(120)
def test_window_grows_on_long_path(env, servers, relay):
    """A download over a 150 ms path grows its window past libssh's, and
    every byte arrives."""
    data = os.urandom(48 << 20)
    src = servers(source_handler(data))
    p = e2elib.free_port()
    d = start_via_relay(env, relay, [local("down", tcp_listen(p),
                                           src.target)])
    t0 = time.monotonic()
    with connect(("127.0.0.1", p), timeout=60) as s:
        got = recv_all(s)
    dt = time.monotonic() - t0
    assert len(got) == len(data)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    grown = windows(d)
    note("48 MiB over a %d ms relay: %.1f MB/s, window grew to %s" % (
        RTT_MS, len(data) / dt / 1e6,
        max(grown) if grown else "nothing"))
    assert grown, "the window never grew past libssh's %d bytes" % \
        LIBSSH_WINDOW
    assert max(grown) > LIBSSH_WINDOW
    assert max(grown) <= 16 << 20      # max_window's default


@pytest.mark.limit(120)
def test_slow_reader_bounded_after_growth(env, servers, relay):
    """A client that read fast (its window grew) and then stops reading
    stops the target: the daemon holds at most the grown window."""
    firehose = Firehose()
    block, stop = firehose.block, firehose.stop

    fh = servers(firehose)
    p = e2elib.free_port()
    d = start_via_relay(env, relay, [local("fh", tcp_listen(p),
                                           fh.target)])
    base = proc_rss_kb(d.pid)
    try:
        with connect(("127.0.0.1", p), timeout=30) as s:
            # Fast, until the window grew (4 MiB at a time, 64 MiB at most:
            # under ASan the daemon is slower and grows it later).
            first = b""
            while not windows(d) and len(first) < 64 << 20:
                first += recv_exact(s, 4 << 20)
            assert windows(d), "the window did not grow"
            time.sleep(1.5)                     # the client stalls
            held = firehose.sent
            time.sleep(1.5)
            grown = proc_rss_kb(d.pid) - base
            in_flight = firehose.sent - len(first)
            note("stalled client after %d MiB: window %d, target sent "
                 "%d MiB more in the last 1.5 s, %d MiB in flight, daemon "
                 "RSS +%d kB" % (len(first) >> 20, max(windows(d)),
                                 (firehose.sent - held) >> 20, in_flight >> 20,
                                 grown))
            # The target is stopped: the window (16 MiB at most), the
            # relay's 4 MiB and the sockets' buffers hold the rest.
            assert firehose.sent - held <= 2 << 20, "the target kept sending"
            assert in_flight < 64 << 20, "%d MiB taken for a client that " \
                "reads nothing" % (in_flight >> 20)
            # Plain: the 16 MiB window inside libssh plus the chan's
            # buffers. ASan keeps freed chunks in its quarantine, so RSS
            # grows with the 24 MiB that crossed the heap (several copies
            # each) as well.
            assert grown < mem_limit(40 * 1024, 200 * 1024), \
                "daemon grew by %d kB" % grown
            stream = first + recv_exact(s, 16 << 20)
            for off in range(0, len(stream), len(block)):
                chunk = stream[off:off + len(block)]
                assert chunk == block[:len(chunk)], "bytes out of order " \
                    "near offset %d" % off
    finally:
        stop.set()
