"""tunctl as a user meets it: every argument is one name (a name with a
space is refused, never split, and never becomes --all), a socket path
that is not a socket says so, a usage error is one line, and a daemon
with too many clients says why, while root always gets in.
"""

import grp
import json
import os
import pwd
import re
import resource
import socket
import subprocess
import sys
import time

import pytest

from e2elib import (SLACK, free_port, local, log_events, note, run_tunctl,
                    run_tunctl_pid, tcp_listen, Tunneld)

# As docs/control-protocol.md section 5 says.
CLIENTS_MAX = 1024
ROOT_RESERVE = 32

BAD_NAME = "a name is 1 to 64 of A-Z a-z 0-9 _ . -; see tunctl --help"


def tunctl_pid(sock, *args, env=None, preexec_fn=None):
    """Run tunctl; return (exit code, stdout, stderr, its pid)."""
    return run_tunctl_pid(sock, *args, env=env, preexec_fn=preexec_fn)


def ask(sock_path, lines):
    """Send raw request lines on one connection; return the replies, each
    a list of lines ending with its %end line."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(sock_path)
    replies = []
    buf = b""
    try:
        for line in lines:
            s.sendall(line.encode() + b"\n")
            reply = []
            while True:
                while b"\n" not in buf:
                    chunk = s.recv(65536)
                    assert chunk, "closed after %r: %r" % (line, reply)
                    buf += chunk
                one, buf = buf.split(b"\n", 1)
                reply.append(one.decode())
                if one.startswith(b"%end"):
                    break
            replies.append(reply)
    finally:
        s.close()
    return replies


def both_enabled(d):
    st = d.status()
    return st["ok"]["enabled"] and st["x"]["enabled"], st


def test_one_argument_is_one_name(env):
    """'tk ok' and 'x --all' are one (bad) name each: refused by tunctl
    before it connects; on the wire a quoted word is one word and never an
    option."""
    nowhere = {"nowhere": {"address": "127.0.0.1", "port": free_port()}}
    d = env.start([local("ok", tcp_listen(free_port()), "127.0.0.1:9",
                         via="nowhere"),
                   local("x", tcp_listen(free_port()), "127.0.0.1:9",
                         via="nowhere")], hosts=nowhere)
    assert both_enabled(d)[0]

    for args, word in ((["status", "tk ok"], "tk ok"),
                       (["status", "ok", "tk ok"], "tk ok"),
                       (["down", "x --all"], "x --all"),
                       (["down", "ok --all"], "ok --all"),
                       (["down", " --all"], " --all"),
                       (["up", "ok", "x y"], "x y"),
                       (["restart", "ok\tx"], "ok\\x09x"),
                       (["down", ""], ""),
                       (["down", "--", "--all x"], "--all x")):
        code, out, err, pid = tunctl_pid(d.sock, *args)
        assert code == 2, (args, code, out, err)
        assert out == "", (args, out)
        assert err == 'tunctl: bad tunnel name "%s": %s\n' % (
            word, BAD_NAME), (args, err)
        # Refused before sending: the daemon never saw that tunctl.
        assert not log_events(d.log, r" pid %d: connected$" % pid), args
        ok, st = both_enabled(d)
        assert ok, (args, st)

    # An argument that starts with "--" is an option: this one is unknown.
    code, out, err = d.tunctl("down", "--all ")
    assert code == 2, (code, out, err)
    assert err == ('tunctl: unknown option "--all " for "down"; see tunctl '
                   '--help\n'), err
    assert both_enabled(d)[0]

    # A name after "--" is a name, even "--all": unknown, nothing touched.
    code, out, err = d.tunctl("down", "--", "--all")
    assert code == 1, (code, out, err)
    assert err == 'tunctl: unknown tunnel "--all"\n', err
    assert both_enabled(d)[0]

    # The wire: a quoted word is one word, and a name, never an option.
    r = ask(d.sock, ['tunneld/2 status "tk ok"',
                     'tunneld/2 down "--all"',
                     "tunneld/2 down 'ok --all'",
                     "tunneld/2 down ok'x'",
                     'tunneld/2 status "ok" \'x\'',
                     'tunneld/2 down "ok"',
                     'tunneld/2 up \'ok\'',
                     'tunneld/2 status "ok',
                     'tunneld/2 status "ok"x'])
    assert r[0] == ['%end 2 bad tunnel name "tk ok": a name is 1 to 64 of '
                    'A-Z a-z 0-9 _ . -'], r[0]
    assert r[1] == ['%end 1 unknown tunnel "--all"'], r[1]
    assert r[2][-1].startswith('%end 2 bad tunnel name "ok --all"'), r[2]
    # A quote inside a bare word is a byte of it: one bad name, no --all.
    assert r[3][-1].startswith("%end 2 bad tunnel name \"ok'x'\""), r[3]
    assert [ln.split()[0] for ln in r[4][1:-1]] == ["ok", "x"], r[4]
    assert r[4][-1].startswith("%end 4 "), r[4]
    assert r[5] == ["ok: down", "%end 0"], r[5]
    assert r[6][-1] == "%end 0", r[6]
    assert r[7] == ['%end 2 unterminated quote: the " at offset 17 has no '
                    'closing one'], r[7]
    assert r[8] == ["%end 2 a closing quote must end its word (offset 20)"], \
        r[8]
    assert both_enabled(d)[0]


def test_socket_that_is_not_a_socket(tdir):
    """-s naming a directory or a regular file says "not a socket"; a
    socket nobody listens on is the one that is called stale."""
    plain = os.path.join(tdir, "tunnels.conf")
    with open(plain, "w") as f:
        f.write("version = 1;\n")
    stale = os.path.join(tdir, "stale.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(stale)
    s.close()
    cases = ((tdir, "not a socket (a directory)"),
             (plain, "not a socket (a regular file)"),
             (stale, "connection refused (a stale socket: is tunneld "
                     "running?)"),
             (os.path.join(tdir, "none.sock"),
              "no such socket (is tunneld running?)"))
    for path, why in cases:
        for how in ("-s", "env"):
            if how == "-s":
                code, out, err = run_tunctl(path, "status")
            else:
                code, out, err = run_tunctl(None, "status",
                                            env={"TUNCTL_SOCKET": path})
            assert code == 3, (path, how, code, out, err)
            assert err == "tunctl: cannot reach tunneld at %s: %s\n" % (
                path, why), (path, how, err)
            assert out == ""


def test_usage_error_is_one_line(tdir):
    """A usage error is one line on stderr that ends with "see tunctl
    --help" (exit 2, nothing sent); --help still prints the whole help."""
    sock = os.path.join(tdir, "none.sock")     # a connect would exit 3
    for args in ([], ["stauts"], ["up"], ["down"], ["restart"], ["wait"],
                 ["links", "pg"], ["up", "--all", "pg"],
                 ["wait", "pg", "--timeout", "abc"], ["--bogus", "status"],
                 ["status", "--bogus"], ["status", "--all"], ["status", "-s"],
                 ["check", "a", "b"], ["check", "--bogus"],
                 ["status", "a/b"]):
        code, out, err = run_tunctl(sock, *args)
        assert code == 2, (args, code, out, err)
        assert out == "", (args, out)
        assert re.match(r"^tunctl: [^\n]+; see tunctl --help\n\Z", err), \
            (args, err)
        assert "usage: tunctl" not in err, (args, err)
    code, out, err = run_tunctl(sock, "stauts")
    assert err == 'tunctl: unknown command "stauts"; see tunctl --help\n'
    for args in (["--help"], ["-h"], ["help"], ["status", "--help"]):
        code, out, err = run_tunctl(sock, *args)
        assert code == 0, (args, code, out, err)
        assert out.startswith("usage: tunctl") and out.count("\n") > 10, out
        assert err == ""


# Holds connections to the control socket open as an unprivileged user
# and reports, as one JSON line, how many the daemon refused (with the
# reason it gave) and how many it kept; then holds them until stdin closes.
HOLDER = r'''
import json, select, socket, sys, time
path, n = sys.argv[1], int(sys.argv[2])
conns = []
deadline = time.monotonic() + 30
for i in range(n):
    c = socket.socket(socket.AF_UNIX)
    c.setblocking(False)
    while True:
        try:
            c.connect(path)
            break
        except BlockingIOError:     # the backlog is full: retry
            assert time.monotonic() < deadline, "connect %d stuck" % i
            time.sleep(0.01)
    conns.append(c)
refused, reasons, open_ = 0, set(), set(range(n))
byfd = {c.fileno(): i for i, c in enumerate(conns)}
poller = select.poll()
for c in conns:
    poller.register(c, select.POLLIN)
deadline = time.monotonic() + 15
while open_ and time.monotonic() < deadline:
    ready = poller.poll(2000)
    if not ready:
        break
    for fd, _ in ready:
        i = byfd[fd]
        c = conns[i]
        poller.unregister(fd)
        data = b""
        try:
            while True:
                chunk = c.recv(4096)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        refused += 1
        reasons.add(data.decode(errors="replace"))
        open_.discard(i)
print(json.dumps({"refused": refused, "held": len(open_),
                  "reasons": sorted(reasons)}), flush=True)
sys.stdin.read()
'''


def _free_uid():
    """A uid with no passwd entry (nobody's: no file of it anywhere)."""
    for uid in range(61234, 62000):
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid
    raise AssertionError("no free uid in 61234-61999")


def _as_user(uid, gid):
    """preexec_fn: become uid with only gid (the control group), with room
    for more than CLIENTS_MAX descriptors."""
    def drop():
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))
        os.setgroups([gid])
        os.setgid(gid)
        os.setuid(uid)
    return drop


@pytest.mark.limit(120)
def test_too_many_clients(env):
    """1,024 + 64 idle connections of an unprivileged member of
    control_group: the daemon keeps 1,024, refuses the rest with a reason
    that tunctl prints (not "Broken pipe"), and root still gets in."""
    gid = grp.getgrnam("nogroup").gr_gid
    uid = _free_uid()
    user = _as_user(uid, gid)
    nowhere = {"nowhere": {"address": "127.0.0.1", "port": free_port()}}
    conf = env.conf_text([local("ok", tcp_listen(free_port()), "127.0.0.1:9",
                                via="nowhere")], hosts=nowhere)
    conf = conf.replace("daemon: {", 'daemon: {\n  control_group = '
                        '"nogroup";', 1)
    path = env.path("tunnels.conf")
    with open(path, "w") as f:
        f.write(conf)
    d = Tunneld(path, env.sock, env.path("tunneld1.log"))
    env.daemons.append(d)
    d.start()
    st = os.stat(d.sock)
    assert st.st_gid == gid and st.st_mode & 0o777 == 0o660, oct(st.st_mode)

    # The unprivileged user can use the socket (control_group).
    code, out, err, _ = tunctl_pid(d.sock, "status", preexec_fn=user)
    assert code == 0, (code, out, err)

    extra = 64
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, d.sock,
                               str(CLIENTS_MAX + extra)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, preexec_fn=user)
    try:
        t0 = time.monotonic()
        line = holder.stdout.readline()
        assert line, "the holder exited %s" % holder.wait(10)
        got = json.loads(line)
        note("%d connections of uid %d: %d held, %d refused in %.2fs" % (
            CLIENTS_MAX + extra, uid, got["held"], got["refused"],
            time.monotonic() - t0))
        assert got["held"] == CLIENTS_MAX, got
        assert got["refused"] == extra, got
        assert got["reasons"] == ["%end 1 too many control clients\n"], got

        # tunctl as that user: the reason, every time, never "Broken pipe".
        for i in range(5):
            code, out, err, _ = tunctl_pid(d.sock, "status",
                                           preexec_fn=user)
            assert code == 1, (i, code, out, err)
            assert err == "tunctl: too many control clients\n", (i, err)

        # Root gets in, answered at once, and can act, even several at once.
        t0 = time.monotonic()
        code, out, err = d.tunctl("status")
        dt = time.monotonic() - t0
        note("root's status with %d idle connections open: %d after %.2fs"
             % (CLIENTS_MAX, code, dt))
        assert code == 0, (code, out, err)
        assert dt <= SLACK, dt
        assert d.tunctl("down", "ok")[0] == 0
        assert d.tunctl("up", "ok")[0] == 0
        roots = []
        for i in range(ROOT_RESERVE):
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(10)
            s.connect(d.sock)
            roots.append(s)
        for s in roots:
            s.sendall(b"tunneld/2 version\n")
        for s in roots:
            assert s.recv(4096).startswith(b"tunneld "), "root refused"
        # Past the reserve root is refused too, with the reason.
        code, out, err = d.tunctl("status")
        assert (code, err) == (1, "tunctl: too many control clients\n"), \
            (code, out, err)
        for s in roots:
            s.close()
        # The refusals are logged, but not once per connection.
        warned = log_events(d.log, r"control: too many clients")
        assert 1 <= len(warned) <= 3, len(warned)
    finally:
        holder.stdin.close()
        try:
            holder.wait(15)
        except subprocess.TimeoutExpired:
            holder.kill()
            holder.wait(5)
        holder.stdout.close()

    # Once they are gone, the user is served again.
    deadline = time.monotonic() + 10 * SLACK
    while True:
        code, out, err, _ = tunctl_pid(d.sock, "status", preexec_fn=user)
        if code == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert code == 0, (code, out, err)
