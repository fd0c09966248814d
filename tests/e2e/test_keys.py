"""Keys and state handled as OpenSSH handles them.

- An identity file owned by the daemon's user that group or others may
  access is refused with a clear note (OpenSSH's sshkey_perm_ok(): only a
  file owned by the user itself is checked, so one owned by another user
  is accepted); chmod 600 makes it work at the next attempt.
- accept-new writes known_hosts by temporary file, fsync and rename: the
  file's inode changes, its mode and old lines stay, no temporary file is
  left; 20 links learning at once end with 20 new lines.
- On a full disk learning fails with a clear error and the file is left
  exactly as it was; once there is room, the key is learned.
- The daemon never reads its user's ~/.ssh/config: a config that would
  break the connection (Ciphers sshd does not offer) and run a command
  (Match exec) changes nothing.
"""

import os
import pwd
import shutil
import stat
import subprocess
import time

import pytest

from e2elib import (SLACK, Sshd, Tunneld, echo_handler, echo_roundtrip,
                    free_port, known_hosts_line, local, log_events, note,
                    tcp_listen)

TAG = "%d" % (os.getpid() % 100000)


def key_copy(env, keys, name, mode, owner=None):
    p = env.path(name)
    shutil.copyfile(keys.client_key, p)
    os.chmod(p, mode)
    if owner is not None:
        os.chown(p, owner, owner)
    return p


def test_key_permissions(sshd, env, servers, keys):
    """0644 and 0640 keys owned by us are refused with a clear note; one
    owned by another user is accepted (as ssh does); 0600 works."""
    echo = servers(echo_handler)
    loose = key_copy(env, keys, "id_loose", 0o644)
    other = key_copy(env, keys, "id_other", 0o644, owner=54321)
    tight = key_copy(env, keys, "id_tight", 0o600)
    srv = {"address": "127.0.0.1", "port": sshd.port}
    hosts = {"loose": dict(srv, identity=loose),
             "other": dict(srv, identity=other),
             "tight": dict(srv, identity=tight)}
    ports = {h: free_port() for h in hosts}
    tunnels = [local("t_" + h, tcp_listen(ports[h]), echo.target, via=h)
               for h in hosts]
    d = env.start(tunnels, sshd=sshd, hosts=hosts)
    code, out, err = d.tunctl("wait", "t_other", "t_tight", "--timeout",
                              "15")
    assert code == 0, (code, out, err)
    for h in ("other", "tight"):
        assert echo_roundtrip(("127.0.0.1", ports[h])) == \
            b"hello through the tunnel\n"

    d.wait_link("loose", "failed", timeout=10)
    err = d.link("loose")["last_error"]
    assert "%s: permissions 0644 are too open" % loose in err, err
    assert "chmod 600" in err, err
    assert log_events(d.log, r"^link loose: identity %s: permissions 0644 "
                      r"are too open" % loose)

    os.chmod(loose, 0o640)          # group-readable: refused as well
    t0 = time.time()
    d.tunctl("up", "t_loose")
    d.wait_for(lambda: log_events(d.log, r"^link loose: identity .*: "
                                  r"permissions 0640 are too open",
                                  after=t0 - 1), timeout=10,
               what="0640 refused")
    d.wait_link("loose", "failed", timeout=10)

    os.chmod(loose, 0o600)
    d.tunctl("up", "t_loose")       # retry now
    code, out, err = d.tunctl("wait", "t_loose", "--timeout", "15")
    assert code == 0, (code, out, err)
    assert echo_roundtrip(("127.0.0.1", ports["loose"])) == \
        b"hello through the tunnel\n"


def _multi_sshd(workdir, keys, n, k):
    """An sshd on 127.0.0.1 .. 127.0.0.n, one port (sshd listens on 16
    addresses at most)."""
    s = Sshd(os.path.join(workdir, "sshd-multi%s-%d" % (TAG, k)),
             keys.host_key, keys.authorized_keys)
    with open(s.cfg, "a") as f:
        for i in range(2, n + 1):
            f.write("ListenAddress 127.0.0.%d\n" % i)
    return s.start()


@pytest.mark.limit(120)
def test_known_hosts_learned_atomically(workdir, env, servers, keys):
    """20 links learn their keys at once: 20 new lines, the old ones kept,
    mode kept, a new inode (written elsewhere and renamed), no temporary
    file left behind."""
    n = 20
    held = None
    ss = [_multi_sshd(workdir, keys, n // 2, k) for k in (1, 2)]
    try:
        echo = servers(echo_handler)
        old = "# kept\n" + known_hosts_line(1, keys.other_pub)
        with open(env.known_hosts, "w") as f:
            f.write(old)
        os.chmod(env.known_hosts, 0o640)
        # Held open, the old file keeps its inode (no reuse) and shows
        # whether anything was ever written into it.
        held = os.open(env.known_hosts, os.O_RDONLY)
        # h1..h10 on the first sshd, h11..h20 on the second.
        where = {i: ("127.0.0.%d" % ((i - 1) % (n // 2) + 1),
                     ss[(i - 1) // (n // 2)].port) for i in range(1, n + 1)}
        hosts = {"h%d" % i: {"address": where[i][0], "port": where[i][1]}
                 for i in range(1, n + 1)}
        tunnels = [local("t%d" % i, tcp_listen(free_port()), echo.target,
                         via="h%d" % i) for i in range(1, n + 1)]
        t0 = time.monotonic()
        d = env.start(tunnels, hosts=hosts, known_hosts=False,
                      defaults={"host_key_policy": "accept-new"})
        code, out, err = d.tunctl("wait", *["t%d" % i for i in
                                            range(1, n + 1)],
                                  "--timeout", "%d" % (30 * SLACK))
        assert code == 0, (code, out, err)
        note("known_hosts: %d links learned their keys in %.2f s" %
             (n, time.monotonic() - t0))
        with open(env.known_hosts) as f:
            text = f.read()
        lines = text.splitlines()
        assert text.startswith(old), text[:200]
        assert len(lines) == 2 + n, lines
        blob = keys.host_pub.split()[1]
        for i in range(1, n + 1):
            want = "[%s]:%d ssh-ed25519 %s" % (where[i] + (blob,))
            assert lines.count(want) == 1, (want, lines)
        st = os.stat(env.known_hosts)
        hst = os.fstat(held)
        assert st.st_ino != hst.st_ino, "known_hosts was written in place"
        assert hst.st_nlink == 0, "the old file is still linked"
        assert os.pread(held, 65536, 0).decode() == old, \
            "the old file was changed in place"
        os.close(held)
        held = None
        assert stat.S_IMODE(st.st_mode) == 0o640, oct(st.st_mode)
        assert [f for f in os.listdir(env.dir)
                if f.startswith(".known_hosts")] == []
        assert len(log_events(d.log, r"^link h\d+: learned host key")) == n
    finally:
        if held is not None:
            os.close(held)
        for s in ss:
            s.stop()


@pytest.mark.limit(90)
def test_known_hosts_full_disk(sshd, env, servers, keys, tdir):
    """No room on the file system: learning fails with ENOSPC in the
    link's error and known_hosts stays byte for byte as it was; with room
    again, the next attempt learns the key."""
    mnt = os.path.join(tdir, "small")
    os.makedirs(mnt)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0755",
                    "tunneld-e2e", mnt], check=True, timeout=30)
    try:
        kh = os.path.join(mnt, "known_hosts")
        old = "# learned keys\n" + known_hosts_line(1, keys.other_pub)
        with open(kh, "w") as f:
            f.write(old)
        filler = os.path.join(mnt, "filler")
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 512)
        except OSError:
            pass
        os.close(fd)
        echo = servers(echo_handler)
        d = env.start([local("t", tcp_listen(free_port()), echo.target)],
                      sshd=sshd, known_hosts=False,
                      defaults={"host_key_policy": "accept-new",
                                "known_hosts": kh})
        d.wait_link("srv", "failed", timeout=10)
        err = d.link("srv")["last_error"]
        assert "cannot add the host key" in err, err
        assert "No space left on device" in err, err
        assert "the file is unchanged" in err, err
        with open(kh) as f:
            assert f.read() == old
        assert sorted(os.listdir(mnt)) == ["filler", "known_hosts"]

        os.unlink(filler)
        d.tunctl("up", "t")
        code, out, err = d.tunctl("wait", "t", "--timeout", "15")
        assert code == 0, (code, out, err)
        with open(kh) as f:
            text = f.read()
        assert text.startswith(old) and len(text.splitlines()) == 3, text
        assert keys.host_pub.split()[1] in text.splitlines()[2]
        d.stop()
    finally:
        subprocess.run(["umount", "-l", mnt], timeout=30)


@pytest.fixture
def home_user(tdir):
    """A user made for the test whose home is a directory of the test."""
    name = "e2e-home" + TAG
    home = os.path.join(tdir, "home")
    subprocess.run(["useradd", "-M", "-U", "-d", home, "-s",
                    "/usr/sbin/nologin", name], check=True, timeout=30,
                   capture_output=True)
    try:
        pw = pwd.getpwnam(name)
        os.makedirs(os.path.join(home, ".ssh"))
        for p in (home, os.path.join(home, ".ssh")):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        yield pw
    finally:
        # The test stops its daemon first; -f in case it could not.
        if subprocess.run(["userdel", name], timeout=30,
                          capture_output=True).returncode != 0:
            subprocess.run(["userdel", "-f", name], timeout=30,
                           capture_output=True)


def test_ssh_config_ignored(sshd, env, servers, keys, home_user):
    """tunneld running as a user whose ~/.ssh/config would break the
    session (Ciphers the server does not offer) and run a command (Match
    exec): the link comes up and the command never ran."""
    pw = home_user
    marker = os.path.join(pw.pw_dir, "config-was-read")
    cfg = os.path.join(pw.pw_dir, ".ssh", "config")
    with open(cfg, "w") as f:
        f.write("Ciphers 3des-cbc\n"
                "KexAlgorithms diffie-hellman-group1-sha1\n"
                "Match exec \"touch %s\"\n"
                "  Port 1\n" % marker)
    os.chown(cfg, pw.pw_uid, pw.pw_gid)
    key = os.path.join(pw.pw_dir, "id")
    shutil.copyfile(keys.client_key, key)
    os.chmod(key, 0o600)
    os.chown(key, pw.pw_uid, pw.pw_gid)
    kh = os.path.join(pw.pw_dir, "known_hosts")
    with open(kh, "w") as f:
        f.write(known_hosts_line(sshd.port, keys.host_pub))
    os.chown(kh, pw.pw_uid, pw.pw_gid)

    echo = servers(echo_handler)
    port = free_port()
    sock = os.path.join(pw.pw_dir, "ctl.sock")
    conf = env.write_conf([local("t", tcp_listen(port), echo.target)],
                          sshd=sshd, sock=sock)
    with open(conf) as f:
        text = f.read().replace(env.known_hosts, kh).replace(
            keys.client_key, key)
    with open(conf, "w") as f:
        f.write(text)
    d = Tunneld(conf, sock, env.path("tunneld1.log"),
                wrap=["setpriv", "--reuid=%d" % pw.pw_uid,
                      "--regid=%d" % pw.pw_gid, "--init-groups"],
                env={"HOME": pw.pw_dir})
    try:
        d.start()
        with open("/proc/%d/status" % d.pid) as f:
            assert "Uid:\t%d\t" % pw.pw_uid in f.read()
        code, out, err = d.tunctl("wait", "t", "--timeout", "15")
        assert code == 0, (code, out, err)
        assert echo_roundtrip(("127.0.0.1", port)) == \
            b"hello through the tunnel\n"
        assert not os.path.exists(marker), "~/.ssh/config was read"
    finally:
        # Before home_user removes the user it runs as.
        assert d.stop() == 0
        assert not os.path.exists(sock)
