"""Who may do what on the control socket (SPEC section 4), with real users
and groups made by the test (useradd, groupadd; removed afterwards):

- a member of control_group may use every verb;
- a member of status_group (as a supplementary group, or as the primary
  one) may read (status, links, wait, version) but `down`, `up`,
  `restart`, `reload` exit 3 "permission denied" and change nothing;
- anyone else is refused at connect: exit 3, "permission denied";
- each refusal is logged with the peer's uid and pid (the first of a
  burst at warning, the rest at debug, then a summary);
- the socket is 0660 without status_group (outsiders cannot even
  connect), 0666 with it, and a reload that adds or removes status_group
  changes the mode at once;
- an unknown status_group is a configuration error with file and line.
"""

import grp
import os
import pwd
import re
import stat
import subprocess
import time

import pytest

from e2elib import (TUNNELD_BIN, free_port, local, log_event, run_tunctl_pid,
                    tcp_listen, Tunneld)

TAG = "%d" % (os.getpid() % 100000)
CTL_GROUP = "e2e-ctl" + TAG
RO_GROUP = "e2e-ro" + TAG
ADMIN = "e2e-adm" + TAG        # supplementary member of CTL_GROUP
READER = "e2e-rd" + TAG        # supplementary member of RO_GROUP
READER1 = "e2e-rp" + TAG       # RO_GROUP is its primary group
OUTSIDER = "e2e-out" + TAG     # in neither


def _run(*cmd):
    subprocess.run(cmd, check=True, timeout=30, stdin=subprocess.DEVNULL,
                   capture_output=True)


@pytest.fixture(scope="module")
def people():
    """The groups and users of these tests, removed at the end."""
    made_users, made_groups = [], []
    try:
        for g in (CTL_GROUP, RO_GROUP):
            _run("groupadd", g)
            made_groups.append(g)
        for name, opts in ((ADMIN, ["-U", "-G", CTL_GROUP]),
                           (READER, ["-U", "-G", RO_GROUP]),
                           (READER1, ["-N", "-g", RO_GROUP]),
                           (OUTSIDER, ["-U"])):
            _run("useradd", "-M", "-d", "/nonexistent", "-s",
                 "/usr/sbin/nologin", *opts, name)
            made_users.append(name)
        yield
    finally:
        for u in made_users:
            subprocess.run(["userdel", u], timeout=30,
                           stdin=subprocess.DEVNULL, capture_output=True)
        for g in made_groups:
            subprocess.run(["groupdel", g], timeout=30,
                           stdin=subprocess.DEVNULL, capture_output=True)


def as_user(user, sock, *args):
    """Run tunctl as user, with the groups a login gives it (its primary
    group and /etc/group's supplementary ones); (code, out, err, pid)."""
    pw = pwd.getpwnam(user)
    groups = os.getgrouplist(user, pw.pw_gid)
    return run_tunctl_pid(sock, *args, user=pw.pw_uid, group=pw.pw_gid,
                          extra_groups=groups)


def start(env, status_group=True, name="tunnels.conf"):
    """tunneld with one tunnel "t" via a host that never answers (no SSH
    needed) and the two groups; returns the daemon."""
    nowhere = {"nowhere": {"address": "127.0.0.1", "port": free_port()}}
    conf = env.conf_text([local("t", tcp_listen(free_port()), "127.0.0.1:9",
                                via="nowhere")], hosts=nowhere)
    extra = '  control_group = "%s";\n' % CTL_GROUP
    if status_group:
        extra += '  status_group = "%s";\n' % RO_GROUP
    conf = conf.replace("daemon: {\n", "daemon: {\n" + extra, 1)
    path = env.path(name)
    with open(path, "w") as f:
        f.write(conf)
    d = Tunneld(path, env.sock, env.path("tunneld1.log"))
    env.daemons.append(d)
    d.start()
    return d, path


def state(d, name="t"):
    return d.tunnel(name)["state"]


def uid(user):
    return pwd.getpwnam(user).pw_uid


def test_roles(people, env):
    """control_group member: everything; status_group member: reads only;
    outsider: nothing. Refusals exit 3 with "permission denied", change
    nothing and are logged with uid and pid."""
    d, _ = start(env)
    st = os.stat(d.sock)
    assert stat.S_IMODE(st.st_mode) == 0o666, oct(st.st_mode)
    assert st.st_gid == grp.getgrnam(CTL_GROUP).gr_gid

    # The admin (a supplementary member of control_group) may do anything.
    for args in (("status",), ("links",), ("version",), ("down", "t")):
        code, out, err, _ = as_user(ADMIN, d.sock, *args)
        assert code == 0, (args, code, out, err)
    assert state(d) == "down"
    code, out, err, _ = as_user(ADMIN, d.sock, "up", "t")
    assert code == 0, (code, out, err)
    assert state(d) != "down"
    code, out, err, _ = as_user(ADMIN, d.sock, "reload")
    assert code == 0 and "kept 1" in out, (code, out, err)

    # Readers: supplementary and primary members of status_group.
    for reader in (READER, READER1):
        for args in (("status",), ("links",), ("version",),
                     ("--json", "status", "t"), ("metrics",)):
            code, out, err, _ = as_user(reader, d.sock, *args)
            assert code in (0, 4), (reader, args, code, out, err)
            assert "permission" not in err
        code, out, err, _ = as_user(reader, d.sock, "metrics")
        assert code == 0 and 'tunneld_tunnel_state{tunnel="t",' in out, \
            (reader, code, out, err)
        code, out, err, _ = as_user(reader, d.sock, "wait", "t",
                                    "--timeout", "0")
        assert code == 4, (reader, code, out, err)   # read, and not up
        before = state(d)
        for args in (("down", "t"), ("up", "t"), ("restart", "t"),
                     ("reload",), ("down", "--all")):
            t0 = time.time()
            code, out, err, pid = as_user(reader, d.sock, *args)
            assert code == 3, (reader, args, code, out, err)
            assert "permission denied" in err, err
            assert '"%s"' % args[0] in err and RO_GROUP in err, err
            assert out == "", out
            # Logged with the peer's uid and pid (debug after the first).
            log_event(d.log, r"^control: uid %d pid %d: permission "
                      r"denied: %s" % (uid(reader), pid, args[0]),
                      after=t0 - 1, timeout=5)
        assert state(d) == before, "a refused request changed the tunnel"

    # The outsider cannot use anything, not even status.
    for args in (("status",), ("version",), ("metrics",), ("down", "t")):
        t0 = time.time()
        code, out, err, pid = as_user(OUTSIDER, d.sock, *args)
        assert code == 3, (args, code, out, err)
        # (tunctl version prints its own version before it asks.)
        assert "permission denied" in err and "tunneld" not in out, \
            (out, err)
        log_event(d.log, r"^control: uid %d pid %d: permission denied: "
                  r"in neither the control group \(%s\) nor status_group"
                  % (uid(OUTSIDER), pid, CTL_GROUP),
                  after=t0 - 1, timeout=5)
    assert state(d) == before

    # Rate limit: the first refusal of a burst at warning, the rest not.
    with open(d.log) as f:
        text = f.read()
    warned = re.findall(r"tunneld\[warning\]: control: uid \d+ pid \d+: "
                        r"permission denied", text)
    assert 1 <= len(warned) <= 2, warned   # one per kind: request, connect

    # Root still does everything.
    code, out, err = d.tunctl("down", "t")
    assert code == 0 and state(d) == "down", (code, out, err)


def test_no_status_group(people, env):
    """Without status_group the socket is 0660 and owned by control_group:
    a would-be reader or an outsider cannot connect at all (exit 3,
    permission denied), the admin can."""
    d, _ = start(env, status_group=False)
    st = os.stat(d.sock)
    assert stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)
    for user in (READER, OUTSIDER):
        code, out, err, _ = as_user(user, d.sock, "status")
        assert code == 3 and "permission denied" in err, (user, code, err)
    code, out, err, _ = as_user(ADMIN, d.sock, "down", "t")
    assert code == 0, (code, out, err)


def test_reload_status_group(people, env):
    """A reload that adds status_group opens the socket (0666) to its
    members at once; one that removes it closes it again (0660)."""
    d, path = start(env, status_group=False)
    with open(path) as f:
        base = f.read()
    code, _, err, _ = as_user(READER, d.sock, "status")
    assert code == 3, err

    with open(path, "w") as f:
        f.write(base.replace('daemon: {\n', 'daemon: {\n  status_group = '
                             '"%s";\n' % RO_GROUP, 1))
    code, out, err = d.tunctl("reload")
    assert code == 0, (code, out, err)
    assert stat.S_IMODE(os.stat(d.sock).st_mode) == 0o666
    code, out, err, _ = as_user(READER, d.sock, "status")
    assert code == 0, (code, out, err)
    code, out, err, _ = as_user(READER, d.sock, "down", "t")
    assert code == 3 and "permission denied" in err, (code, err)

    with open(path, "w") as f:
        f.write(base)
    code, out, err = d.tunctl("reload")
    assert code == 0, (code, out, err)
    assert stat.S_IMODE(os.stat(d.sock).st_mode) == 0o660
    code, out, err, _ = as_user(READER, d.sock, "status")
    assert code == 3 and "permission denied" in err, (code, err)


def test_unknown_status_group(env):
    """status_group names a group that does not exist: tunneld -t says
    where, and a reload with it is rejected whole."""
    path = env.path("bad.conf")
    with open(path, "w") as f:
        f.write('version = 1;\ndaemon: {\n  status_group = '
                '"e2e-nosuchgroup";\n};\n')
    p = subprocess.run([TUNNELD_BIN, "-t", "-f", path], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 1, p
    assert ('bad.conf:3: daemon: status_group: "e2e-nosuchgroup" is not a '
            'group on this system') in p.stderr, p.stderr
    with open(path, "w") as f:
        f.write('version = 1;\ndaemon: {\n  status_group = "";\n};\n')
    p = subprocess.run([TUNNELD_BIN, "-t", "-f", path], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p
