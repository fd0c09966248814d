"""The relay pattern A -> B <- C (SPEC section 2, issue 4): one sshd (B) and
several tunneld instances on this machine.  A pushes a remote forward to
B's loopback, C pulls it with a local forward via B, and B's own tunneld
re-exposes it with a local tunnel via itself.
"""

import hashlib
import os
import re
import socket
import subprocess
import time

import pytest

from e2elib import (SLACK, TUNNELD_BIN, Pump, connect, echo_handler,
                    free_port, local, note, recv_all, remote, tcp_listen)

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                        "..", "..", "conf", "examples")


def wait_up(d, names, timeout=15):
    code, out, err = d.tunctl("wait", *names, "--timeout", str(timeout))
    assert code == 0, (code, out, err)


def echo_through(port, size):
    """size random bytes to 127.0.0.1:port and back; (ok, seconds)."""
    data = os.urandom(size)
    s = connect(("127.0.0.1", port), timeout=30)
    pump = Pump()
    pump.add(s, data)
    t0 = time.monotonic()
    c = pump.run(timeout=60)[0]
    dt = time.monotonic() - t0
    assert c["err"] is None and c["eof"], c["err"]
    got = bytes(c["in"])
    assert len(got) == len(data), (len(got), len(data))
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    return dt


@pytest.mark.limit(90)
def test_relay_a_b_c(sshd, env, servers):
    svc = servers(echo_handler)         # "A's sshd": a service on A
    pa, pc, pb2 = free_port(), free_port(), free_port()
    b = {"b": {"address": "127.0.0.1", "port": sshd.port}}
    env.write_known_hosts(sshd.port)

    a = env.start([remote("a-ssh", tcp_listen(pa), svc.target, via="b")],
                  hosts=b, sock=env.path("a.sock"), conf_name="a.conf")
    c = env.start([local("to-a", tcp_listen(pc), tcp_listen(pa), via="b")],
                  hosts=b, sock=env.path("c.sock"), conf_name="c.conf")
    bself = env.start([local("public-a", tcp_listen(pb2), tcp_listen(pa),
                             via="self")],
                      hosts={"self": {"address": "127.0.0.1",
                                      "port": sshd.port}},
                      sock=env.path("b.sock"), conf_name="b.conf")
    wait_up(a, ["a-ssh"])
    wait_up(c, ["to-a"])
    wait_up(bself, ["public-a"])

    # C's listener -> B -> A's remote forward -> A's service, and back.
    n0 = svc.accepted
    dt = echo_through(pc, 4 << 20)
    note("relay C->B->A: 4 MiB echoed in %.2fs" % dt)
    assert svc.accepted == n0 + 1
    # B's re-exposure reaches the same service.
    echo_through(pb2, 1 << 20)
    assert svc.accepted == n0 + 2

    def counters():
        sa, sc, sb = (a.tunnel("a-ssh"), c.tunnel("to-a"),
                      bself.tunnel("public-a"))
        return (sa["connections"]["total"] == 2 and
                sc["connections"]["total"] == 1 and
                sb["connections"]["total"] == 1 and
                sc["in"] == 4 << 20 and sc["out"] == 4 << 20 and
                sa["out"] == 5 << 20 and sa["in"] == 5 << 20)
    a.wait_for(counters, 5, what="the relay's counters")

    # A gone: C's tunnel stays up (its link to B is fine), a client is
    # closed at once and the refusal is shown; A back: it works again.
    code, out, err = a.tunctl("down", "a-ssh")
    assert code == 0, (code, out, err)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", pa), timeout=1).close()
        except ConnectionRefusedError:
            break
        except OSError:
            pass    # accepted and reset while sshd lets go of the port
        time.sleep(0.05)
    t0 = time.monotonic()
    with connect(("127.0.0.1", pc), timeout=10) as s:
        try:
            s.sendall(b"anyone home?")
            got = recv_all(s)
        except (ConnectionResetError, BrokenPipeError):
            got = b""
    assert got == b""
    assert time.monotonic() - t0 < SLACK
    c.wait_for(lambda: c.tunnel("to-a")["last_error"], 5,
               what="C's tunnel shows the refusal")
    assert c.tunnel("to-a")["state"] == "up"
    assert re.search(r"refus|prohibit|fail", c.tunnel("to-a")["last_error"],
                     re.I), c.tunnel("to-a")
    code, out, err = a.tunctl("up", "a-ssh")
    assert code == 0, (code, out, err)
    wait_up(a, ["a-ssh"])
    echo_through(pc, 256 << 10)


@pytest.mark.parametrize("name,kind,via,listen,target", [
    ("relay-A.conf", "remote", "b", "127.0.0.1:2201", "127.0.0.1:22"),
    ("relay-B.conf", "local", "self", "*:8086", "127.0.0.1:2201"),
    ("relay-C.conf", "local", "b", "127.0.0.1:2222", "127.0.0.1:2201"),
])
def test_relay_example_files(name, kind, via, listen, target):
    """conf/examples/relay-*.conf pass the checker and say what SPEC
    section 2 says."""
    path = os.path.join(EXAMPLES, name)
    p = subprocess.run([TUNNELD_BIN, "-t", "-f", path], capture_output=True,
                       text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stdout + p.stderr
    with open(path) as f:
        text = f.read()
    body = "\n".join(ln.split("#", 1)[0] for ln in text.splitlines())
    assert re.search(r'type\s*=\s*"%s"' % kind, body), name
    assert re.search(r'via\s*=\s*"%s"' % via, body), name
    assert re.search(r'listen\s*=\s*"%s"' % re.escape(listen), body), name
    assert re.search(r'target\s*=\s*"%s"' % re.escape(target), body), name
    addr = "127.0.0.1" if via == "self" else "relay.example.com"
    assert re.search(r'%s\s*:\s*\{[^}]*address\s*=\s*"%s"' %
                     (via, re.escape(addr)), body), name
    assert len([ln for ln in text.splitlines()
                if ln.lstrip().startswith("#")]) >= 10, \
        "%s: walk the reader through it in comments" % name
