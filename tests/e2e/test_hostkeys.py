"""Host key policies: strict and accept-new, unknown and changed keys.

Each test runs tunneld with one tunnel "t" via host "srv" (the module's
private sshd) and its own known_hosts file.
"""

import os
import re
import stat
import subprocess

import pytest

from e2elib import echo_handler, echo_roundtrip, free_port, known_hosts_line
from e2elib import local, tcp_listen


def start(env, sshd, servers, policy, kh_text):
    """kh_text None: the known_hosts file does not exist."""
    if os.path.exists(env.known_hosts):
        os.unlink(env.known_hosts)
    if kh_text is not None:
        with open(env.known_hosts, "w") as f:
            f.write(kh_text)
    echo = servers(echo_handler)
    port = free_port()
    d = env.start([local("t", tcp_listen(port), echo.target)], sshd=sshd,
                  known_hosts=False, defaults={"host_key_policy": policy})
    return d, port


def assert_refused(d, env, kh_text):
    d.wait_link("srv", "failed", timeout=6)
    assert d.tunnel("t")["state"] != "up"
    code, out, err = d.tunctl("status", "t")
    assert code == 4, (code, out, err)
    if kh_text is None:
        assert not os.path.exists(env.known_hosts) or \
            os.path.getsize(env.known_hosts) == 0
    else:
        with open(env.known_hosts) as f:
            assert f.read() == kh_text          # never overwritten


@pytest.mark.parametrize("policy", ["strict", "accept-new"])
def test_changed_key_refused(sshd, env, servers, keys, policy):
    """A changed key is refused under both policies; the link's and the
    tunnel's last_error show both fingerprints."""
    wrong = known_hosts_line(sshd.port, keys.other_pub)
    d, port = start(env, sshd, servers, policy, wrong)
    assert_refused(d, env, wrong)
    err = d.link("srv")["last_error"] or ""
    assert keys.host_fp in err, "server's %s not in %r" % (keys.host_fp, err)
    assert keys.other_fp in err, "known %s not in %r" % (keys.other_fp, err)
    assert re.search(r"chang|mismatch", err, re.I), err
    # "the status shows both fingerprints"
    # The tunnel carries its link's reason: JSON link_error, table ERROR.
    terr = d.tunnel("t")["link_error"] or ""
    assert keys.host_fp in terr and keys.other_fp in terr, terr
    code, out, err = d.tunctl("status")
    assert keys.host_fp in out and keys.other_fp in out, out
    # Refused, and retried (at backoff_max), never accepted.
    code, out, err = d.tunctl("wait", "t", "--timeout", "3")
    assert code == 4, (code, out, err)
    assert d.link("srv")["state"] in ("failed", "connecting")


@pytest.mark.parametrize("kh_text", [None, ""], ids=["missing", "empty"])
def test_strict_unknown_key_refused(sshd, env, servers, keys, kh_text):
    d, port = start(env, sshd, servers, "strict", kh_text)
    assert_refused(d, env, kh_text)
    err = d.link("srv")["last_error"] or ""
    assert keys.host_fp in err, err         # says what the server offers


@pytest.mark.parametrize("kh_text", [None, ""], ids=["missing", "empty"])
def test_accept_new_learns_key(sshd, env, servers, keys, kh_text):
    d, port = start(env, sshd, servers, "accept-new", kh_text)
    code, out, err = d.tunctl("wait", "t", "--timeout", "15")
    assert code == 0, (code, out, err)
    assert echo_roundtrip(("127.0.0.1", port)) == \
        b"hello through the tunnel\n"
    assert os.path.exists(env.known_hosts), "accept-new wrote no known_hosts"
    with open(env.known_hosts) as f:
        text = f.read()
    r = subprocess.run(["ssh-keygen", "-F", "[127.0.0.1]:%d" % sshd.port,
                        "-f", env.known_hosts], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 0, "key not found in %r" % text
    assert keys.host_pub.split()[1] in r.stdout


@pytest.mark.parametrize("policy", ["strict", "accept-new"])
def test_known_hosts_fifo_refused(sshd, env, servers, keys, policy):
    """A FIFO where known_hosts belongs: opening it to read would block
    the whole daemon (libssh's reader, or the learning step) until a
    writer came. The link is refused with the reason, the daemon keeps
    answering, and nothing replaces the FIFO."""
    if os.path.exists(env.known_hosts):
        os.unlink(env.known_hosts)
    os.mkfifo(env.known_hosts)
    try:
        echo = servers(echo_handler)
        d = env.start([local("t", tcp_listen(free_port()), echo.target)],
                      sshd=sshd, known_hosts=False,
                      defaults={"host_key_policy": policy})
        d.wait_link("srv", "failed", timeout=6)
        err = d.link("srv")["last_error"] or ""
        assert "not a regular file" in err, err
        code, out, err = d.tunctl("status", "t")
        assert code == 4, (code, out, err)
        assert stat.S_ISFIFO(os.lstat(env.known_hosts).st_mode)
    finally:
        os.unlink(env.known_hosts)
