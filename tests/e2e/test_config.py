"""The configuration checker: `tunneld -t -f FILE` and `tunctl check FILE`
accept a good file, and for a bad one exit 1 naming file:line for every
error.
"""

import os
import re
import subprocess

import pytest

from e2elib import (TUNNELD_BIN, dynamic, local, remote, remote_dynamic,
                    run_tunctl)


def tunneld_t(path):
    p = subprocess.run([TUNNELD_BIN, "-t", "-f", path], capture_output=True,
                       text=True, timeout=30, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout + p.stderr


def check(path, tdir):
    code, out, err = run_tunctl(os.path.join(tdir, "nodaemon.sock"),
                                "check", path)
    return code, out + err


HEAD = """version = 1;
daemon: {{ control_socket = "{sock}"; }};
defaults: {{ user = "root"; identity = "{key}"; known_hosts = "{kh}"; }};
hosts: {{
  srv: {{ address = "127.0.0.1"; port = 22; }};
}};
tunnels = (
"""
# The tunnels start on line 8.


def write(env, name, body):
    text = HEAD.format(sock=env.sock, key=env.keys.client_key,
                       kh=env.known_hosts) + body
    p = env.path(name)
    with open(p, "w") as f:
        f.write(text)
    return p


def tunnel(extra, name="a", listen="127.0.0.1:9000", typ="local"):
    return ('  {{ name = "{n}"; type = "{t}"; via = "srv"; listen = "{l}"; '
            'target = "127.0.0.1:80"; {x} }}').format(n=name, t=typ, l=listen,
                                                     x=extra)


def test_good_file(env, tdir):
    p = env.write_conf([local("pg", "127.0.0.1:9000", "127.0.0.1:5432"),
                        local("sock", os.path.join(tdir, "x.sock"),
                              "/run/postgresql/.s.PGSQL.5432"),
                        local("six", "[::1]:9001", "[::1]:22"),
                        local("spare", "9002", "127.0.0.1:22",
                              enabled=False, connect_wait=3)],
                       hosts={"srv": {"address": "127.0.0.1", "port": 22}})
    code, out = tunneld_t(p)
    assert code == 0, out
    code, out = check(p, tdir)
    assert code == 0, out


def test_every_error_printed(env, tdir):
    """Three errors on lines 8, 9, 10: all three are printed."""
    body = ",\n".join([
        tunnel("", name="a", listen="127.0.0.1:99999"),
        tunnel('lisen = "127.0.0.1:9001";', name="b",
               listen="127.0.0.1:9001"),
        tunnel("", name="c", listen="127.0.0.1:9002").replace(
            'via = "srv"', 'via = "nohost"'),
    ]) + "\n);\n"
    p = write(env, "bad.conf", body)
    for code, out in (tunneld_t(p), check(p, tdir)):
        assert code == 1, out
        for line, what in ((8, "99999"), (9, "lisen"), (10, "nohost")):
            hits = [ln for ln in out.splitlines()
                    if re.search(r"bad\.conf:%d\b" % line, ln)]
            assert hits, "no error for line %d in:\n%s" % (line, out)
            assert any(what in h for h in hits), (what, hits)


@pytest.mark.parametrize("body,line,what", [
    ('  { name = "a"; type = "remote"; via = "srv"; listen = "9000"; }',
     8, "target"),
    (tunnel("", typ="dynamic"), 8, "a dynamic tunnel takes no target"),
    (tunnel("", typ="remote", listen="/tmp/r.sock"), 8,
     "listens on the server"),
    ('  { name = "a"; type = "remote-dynamic"; via = "srv"; '
     'listen = "relay.example.com:1080"; }', 8, "never looked up"),
    (tunnel("max_connections = 0;"), 8, "max_connections: 0 is out of range"),
    (tunnel('bogus = 1;'), 8, "bogus"),
    (tunnel("", listen="127.0.0.1:0"), 8, "listen"),
    (tunnel("", name="bad name!"), 8, "name"),
    (tunnel("") + ",\n" + tunnel("", listen="127.0.0.1:9001"), 9, '"a"'),
    (tunnel("", listen="relative/path.sock"), 8, "listen"),
    (tunnel("connect_wait = -1;"), 8, "connect_wait"),
    ('  { name = "a"; type = "local"; via = "srv"; listen = "9000"; }',
     8, "target"),
    (tunnel("") + "\n  this is not libconfig\n", 9, "syntax error"),
], ids=["remote", "dynamic", "remote-unix-listen", "remote-dns-listen",
        "max-connections-0", "unknown-setting", "port0", "bad-name",
        "duplicate", "relative-path", "negative-wait", "no-target",
        "syntax"])
def test_single_errors(env, tdir, body, line, what):
    if not body.rstrip().endswith("libconfig"):
        body += "\n);\n"
    p = write(env, "one.conf", body)
    code, out = check(p, tdir)
    assert code == 1, out
    hits = [ln for ln in out.splitlines()
            if re.search(r"one\.conf:%d\b" % line, ln)]
    assert hits, "no one.conf:%d in:\n%s" % (line, out)
    assert any(what in h for h in hits), (what, out)
    code2, out2 = tunneld_t(p)
    assert code2 == 1, out2


def test_every_kind_loads(env, tdir):
    """remote, dynamic and remote-dynamic load next to local ones, with
    max_connections in defaults and per tunnel."""
    p = env.write_conf([local("pg", "127.0.0.1:9000", "127.0.0.1:5432"),
                        remote("web", "0", "127.0.0.1:80"),
                        remote("pub", "*:8000", "/run/app.sock",
                               max_connections=10),
                        dynamic("socks", "[::1]:1080", max_connections=1),
                        remote_dynamic("rsocks", "127.0.0.1:1081",
                                       max_connections=1000000)],
                       hosts={"srv": {"address": "127.0.0.1", "port": 22}},
                       defaults={"max_connections": 200})
    code, out = tunneld_t(p)
    assert code == 0, out
    code, out = check(p, tdir)
    assert code == 0, out
    assert "5 tunnels" in out, out


def test_jump_checked(env, tdir):
    """A jump host loads; a jump loop is refused on its host's line."""
    text = HEAD.replace('port = 22; }};',
                        'port = 22; }};\n  inner: {{ address = "10.0.0.5"; '
                        'jump = "srv"; }};')
    text = text.format(sock=env.sock, key=env.keys.client_key,
                       kh=env.known_hosts) + tunnel("") + "\n);\n"
    p = env.path("jump.conf")
    with open(p, "w") as f:
        f.write(text)
    for code, out in (tunneld_t(p), check(p, tdir)):
        assert code == 0, out
    loop = text.replace('port = 22; }', 'port = 22; jump = "inner"; }', 1)
    assert loop != text
    with open(p, "w") as f:
        f.write(loop)
    for code, out in (tunneld_t(p), check(p, tdir)):
        assert code == 1, out
        assert re.search(r"jump\.conf:\d+\b.*jump: loop ", out), out


def test_host_key_policy_off_refused(env, tdir):
    text = HEAD.replace('port = 22; }};',
                        'port = 22;\n    host_key_policy = "off"; }};')
    text = text.format(sock=env.sock, key=env.keys.client_key,
                       kh=env.known_hosts) + tunnel("") + "\n);\n"
    p = env.path("off.conf")
    with open(p, "w") as f:
        f.write(text)
    code, out = check(p, tdir)
    assert code == 1, out
    assert re.search(r"off\.conf:6\b.*host_key_policy", out), out


def test_missing_file_and_version(tdir):
    code, out = tunneld_t(os.path.join(tdir, "does-not-exist.conf"))
    assert code == 1, out
    assert "does-not-exist.conf" in out
    p = subprocess.run([TUNNELD_BIN, "-V"], capture_output=True, text=True,
                       timeout=10)
    assert p.returncode == 0 and "0.1.0" in p.stdout + p.stderr


@pytest.mark.parametrize("value,what", [
    ("8", "max_buffered: 8 is out of range 16-65536"),
    ("65537", "max_buffered: 65537 is out of range 16-65536"),
    ('"256M"', "max_buffered: must be an integer (16-65536)"),
    ("1.5", "max_buffered: must be an integer (16-65536)"),
])
def test_max_buffered_checked(env, tdir, value, what):
    """The daemon block's max_buffered: out of range or not an integer is
    an error with file:line, for tunneld -t and tunctl check alike."""
    body = tunnel("") + "\n);\n"
    p = write(env, "mb.conf", body)
    with open(p) as f:
        text = f.read().replace("daemon: { ", "daemon: {\n  max_buffered = %s;"
                                "\n  " % value, 1)
    with open(p, "w") as f:
        f.write(text)
    for code, out in (tunneld_t(p), check(p, tdir)):
        assert code == 1, out
        assert re.search(r"mb\.conf:3: daemon: " + re.escape(what), out), out
    with open(p, "w") as f:
        f.write(text.replace("max_buffered = %s;" % value,
                             "max_buffered = 16;"))
    code, out = tunneld_t(p)
    assert code == 0, out
