"""The harness itself: the private sshd forwards for OpenSSH's own client,
survives a restart on the same port, and a freeze stops it answering.

If these fail, the other tests' failures say nothing about tunneld.
"""

import os
import socket
import subprocess
import time

from e2elib import (echo_handler, echo_roundtrip, free_port,
                    known_hosts_line, port_refuses, wait_port)


def ssh_forward(keys, sshd, kh, lport, target, extra=()):
    """Start ssh -N -L lport:target via the private sshd."""
    cmd = ["ssh", "-F", "/dev/null", "-N", "-p", str(sshd.port),
           "-i", keys.client_key, "-o", "IdentitiesOnly=yes",
           "-o", "UserKnownHostsFile=" + kh,
           "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
           "-o", "ExitOnForwardFailure=yes",
           "-L", "127.0.0.1:%d:%s" % (lport, target)] + list(extra) + \
          ["root@127.0.0.1"]
    return subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def test_openssh_forward_restart_and_freeze(own_sshd, keys, servers, tdir):
    kh = os.path.join(tdir, "kh")
    with open(kh, "w") as f:
        f.write(known_hosts_line(own_sshd.port, keys.host_pub))
    echo = servers(echo_handler)

    # 1. ssh -L through the private sshd with our keys.
    lport = free_port()
    p = ssh_forward(keys, own_sshd, kh, lport, echo.target)
    try:
        assert wait_port(lport, timeout=10), p.stderr.read1(4096)
        assert echo_roundtrip(("127.0.0.1", lport), b"x" * 1000) == \
            b"x" * 1000
        assert len(own_sshd.sessions()) == 1
    finally:
        stop(p)

    # 2. Restart on the same port: refused while down, serves again after.
    port = own_sshd.port
    own_sshd.stop()
    assert port_refuses(port)
    own_sshd.start()
    assert own_sshd.port == port
    lport = free_port()
    p = ssh_forward(keys, own_sshd, kh, lport, echo.target,
                    ["-o", "ServerAliveInterval=1",
                     "-o", "ServerAliveCountMax=2"])
    try:
        assert wait_port(lport, timeout=10)
        assert echo_roundtrip(("127.0.0.1", lport), b"again") == b"again"

        # 3. Freeze: every process of the instance is stopped, OpenSSH's
        # keepalive finds the link dead, and after SIGCONT it serves again.
        frozen = own_sshd.freeze()
        assert len(frozen) >= 2, frozen     # listener + session
        for pid in frozen:
            with open("/proc/%d/stat" % pid) as f:
                st = f.read()
            assert st[st.rfind(")") + 2] == "T", st
        t0 = time.monotonic()
        p.wait(10)
        dt = time.monotonic() - t0
        assert dt < 5, dt
        with socket.socket() as s:
            s.settimeout(1)
            try:
                s.connect(("127.0.0.1", own_sshd.port))   # kernel backlog
                s.send(b"SSH-2.0-probe\r\n")
                got = s.recv(100)
            except socket.timeout:
                got = None
        assert got is None, got     # frozen: no banner
    finally:
        own_sshd.thaw()
        stop(p)
    lport = free_port()
    p = ssh_forward(keys, own_sshd, kh, lport, echo.target)
    try:
        assert wait_port(lport, timeout=10)
        assert echo_roundtrip(("127.0.0.1", lport), b"thawed") == b"thawed"
    finally:
        stop(p)
