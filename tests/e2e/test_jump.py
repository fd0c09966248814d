"""Jump hosts (ssh -J): links carried through links, their dependencies and
their faults, on loopback sshds (the namespace topologies, where each hop
is reachable only from the previous one, are in test_jump_netns.py).
"""

import time

from e2elib import (SLACK, echo_handler, echo_roundtrip, free_port,
                    known_hosts_line, local, log_event, note, tcp_listen)

FAST_HOSTS = {"keepalive_interval": 1, "keepalive_count_max": 2,
              "backoff_initial": 0.2, "backoff_max": 2.0,
              "connect_timeout": 5}


def chain_env(env, keys, first, second):
    """known_hosts for both sshds; hosts b (first) and a (second, via b)."""
    with open(env.known_hosts, "w") as f:
        f.write(known_hosts_line(first.port, keys.host_pub))
        f.write(known_hosts_line(second.port, keys.host_pub))
    return {"b": {"address": "127.0.0.1", "port": first.port},
            "a": {"address": "127.0.0.1", "port": second.port,
                  "jump": "b"}}


def test_chain_carries_and_shows(sshd, own_sshd, env, servers, keys):
    """A tunnel via a host behind a jump host carries data; links show the
    chain; the jump host's link exists for the chain alone."""
    echo = servers(echo_handler)
    p = free_port()
    hosts = chain_env(env, keys, own_sshd, sshd)
    d = env.start([local("t", tcp_listen(p), echo.target, via="a")],
                  hosts=hosts, known_hosts=False)
    assert d.tunctl("wait", "t", "--timeout", "15")[0] == 0
    data = bytes(range(256)) * 4096
    assert echo_roundtrip(("127.0.0.1", p), data) == data
    lk = d.links()
    assert lk["a"]["jump"] == "b" and lk["a"]["chain"] == ["b", "a"], lk
    assert lk["b"]["jump"] is None and lk["b"]["chain"] == ["b"], lk
    assert lk["a"]["state"] == "up" and lk["b"]["state"] == "up", lk
    code, out, err = d.tunctl("links")
    assert code == 0
    row = [ln for ln in out.splitlines() if ln.startswith("a ")][0]
    assert "root@127.0.0.1:%d via b" % sshd.port in row, out
    # The inner session went to sshd through own_sshd: own_sshd has a
    # session (ours, for b) and sshd one for a.
    assert own_sshd.sessions() and sshd.sessions()
    # Nothing behind b enabled: both go idle.
    assert d.tunctl("down", "t")[0] == 0
    d.wait_for(lambda: d.link("a")["state"] == "idle" and
               d.link("b")["state"] == "idle", 5 * SLACK,
               what="both links idle")
    assert d.tunctl("up", "t")[0] == 0
    assert d.tunctl("wait", "t", "--timeout", "15")[0] == 0
    assert echo_roundtrip(("127.0.0.1", p), b"again") == b"again"


def test_jump_host_down_and_back(sshd, own_sshd, env, servers, keys):
    """The jump host's sshd stops: the link behind it leaves `up` at once
    and waits naming the jump host; it connects as soon as the jump host is
    up again, without its own backoff."""
    echo = servers(echo_handler)
    p = free_port()
    hosts = chain_env(env, keys, own_sshd, sshd)
    defaults = dict(FAST_HOSTS)
    d = env.start([local("t", tcp_listen(p), echo.target, via="a")],
                  hosts=hosts, known_hosts=False, defaults=defaults)
    assert d.tunctl("wait", "t", "--timeout", "15")[0] == 0
    t0 = time.time()
    own_sshd.stop()
    t_b = log_event(d.log, r"^link b: (?!up)", after=t0, timeout=10)
    t_a = log_event(d.log, r"^link a: up -> waiting", after=t0, timeout=10)
    note("jump host stopped: inner link left up %.3fs after the jump "
         "host's link failed" % (t_a - t_b))
    assert t_a - t_b < 1.0, (t_a, t_b)
    d.wait_for(lambda: d.link("a")["state"] == "waiting", SLACK,
               what="a waiting")
    lk = d.link("a")
    assert "jump host b" in lk["last_error"], lk
    st = d.tunnel("t")
    assert st["state"] == "waiting", st
    assert "jump host b" in (st["link_error"] or ""), st
    # Back: b connects at its own backoff, a right after b is up.
    t1 = time.time()
    own_sshd.start()
    t_bup = log_event(d.log, r"^link b: up ", after=t1, timeout=10)
    t_aup = log_event(d.log, r"^link a: up ", after=t_bup, timeout=10)
    note("jump host back: inner link up %.3fs after the jump host's" %
         (t_aup - t_bup))
    assert t_aup - t_bup < 1.0, (t_aup, t_bup)
    assert d.tunctl("wait", "t", "--timeout", "10")[0] == 0
    assert echo_roundtrip(("127.0.0.1", p), b"back") == b"back"


def test_inner_host_down_keeps_jump(sshd, own_sshd, env, servers, keys):
    """The inner host's sshd stops: that link backs off on its own; the
    jump host's link stays up (and carries the retries)."""
    echo = servers(echo_handler)
    p = free_port()
    hosts = chain_env(env, keys, sshd, own_sshd)
    d = env.start([local("t", tcp_listen(p), echo.target, via="a")],
                  hosts=hosts, known_hosts=False, defaults=FAST_HOSTS)
    assert d.tunctl("wait", "t", "--timeout", "15")[0] == 0
    own_sshd.stop()
    d.wait_for(lambda: d.link("a")["retries"] >= 2, 10,
               what="a retrying")
    assert d.link("b")["state"] == "up"
    la = d.link("a")
    assert la["state"] in ("backoff", "connecting"), la
    own_sshd.start()
    assert d.tunctl("wait", "t", "--timeout", "10")[0] == 0
    assert echo_roundtrip(("127.0.0.1", p), b"ok") == b"ok"


def test_reload_jump_changed(sshd, own_sshd, env, servers, keys):
    """Reload that changes a host's jump: the link restarts in place on its
    new path (direct, then through b again); the jump host's link goes
    when nothing uses it and comes back when something does."""
    echo = servers(echo_handler)
    p = free_port()
    hosts = chain_env(env, keys, own_sshd, sshd)
    tunnels = [local("t", tcp_listen(p), echo.target, via="a")]
    d = env.start(tunnels, hosts=hosts, known_hosts=False)
    assert d.tunctl("wait", "t", "--timeout", "15")[0] == 0
    assert d.link("a")["chain"] == ["b", "a"]

    direct = {"b": hosts["b"], "a": {"address": "127.0.0.1",
                                     "port": sshd.port}}
    env.write_conf(tunnels, hosts=direct)
    code, out, err = d.tunctl("reload")
    assert code == 0, (code, out, err)
    assert out.startswith("kept 1, restarted 1 (host a), disconnected 1 "
                          "(host b) in "), out
    assert d.tunctl("wait", "t", "--timeout", "15")[0] == 0
    lk = d.links()
    assert set(lk) == {"a"} and lk["a"]["jump"] is None, lk
    assert lk["a"]["chain"] == ["a"], lk
    assert echo_roundtrip(("127.0.0.1", p), b"direct") == b"direct"
    d.wait_for(lambda: own_sshd.sessions() == [], 5 * SLACK,
               what="the session to b closed")

    env.write_conf(tunnels, hosts=hosts)
    code, out, err = d.tunctl("reload")
    assert code == 0, (code, out, err)
    assert out.startswith("kept 1, restarted 1 (host a) in "), out
    assert d.tunctl("wait", "t", "--timeout", "15")[0] == 0
    lk = d.links()
    assert lk["a"]["chain"] == ["b", "a"] and lk["b"]["state"] == "up", lk
    assert echo_roundtrip(("127.0.0.1", p), b"via b") == b"via b"
    assert own_sshd.sessions()


def test_reload_adds_jump_host(sshd, own_sshd, env, servers, keys):
    """A reload that brings a jump host the old file did not have: the
    link restarts through it at once (the new file's hosts are known)."""
    echo = servers(echo_handler)
    p = free_port()
    hosts = chain_env(env, keys, own_sshd, sshd)
    tunnels = [local("t", tcp_listen(p), echo.target, via="a")]
    only_a = {"a": {"address": "127.0.0.1", "port": sshd.port}}
    d = env.start(tunnels, hosts=only_a, known_hosts=False)
    assert d.tunctl("wait", "t", "--timeout", "15")[0] == 0
    env.write_conf(tunnels, hosts=hosts)
    t0 = time.time()
    code, out, err = d.tunctl("reload")
    assert code == 0, (code, out, err)
    assert out.startswith("kept 1, restarted 1 (host a) in "), out
    t_up = log_event(d.log, r"^link a: up \(.* via b\)", after=t0,
                     timeout=10)
    assert t_up - t0 < 2 * SLACK, t_up - t0
    assert d.link("a")["chain"] == ["b", "a"]
    with open(d.log) as f:
        assert "not in the configuration" not in f.read()
    assert echo_roundtrip(("127.0.0.1", p), b"via b") == b"via b"


def test_jump_host_refuses_the_channel(own_sshd, env, servers, keys):
    """The jump host cannot open the connection to the inner host (nothing
    listens there): the inner link says so, naming the jump host."""
    echo = servers(echo_handler)
    p, closed = free_port(), free_port()
    with open(env.known_hosts, "w") as f:
        f.write(known_hosts_line(own_sshd.port, keys.host_pub))
    hosts = {"b": {"address": "127.0.0.1", "port": own_sshd.port},
             "a": {"address": "127.0.0.1", "port": closed, "jump": "b"}}
    d = env.start([local("t", tcp_listen(p), echo.target, via="a")],
                  hosts=hosts, known_hosts=False, defaults=FAST_HOSTS)
    d.wait_for(lambda: "from b failed" in (d.link("a")["last_error"] or ""),
               10, what="link a failed with b's refusal")
    err = d.link("a")["last_error"]
    assert "connect to 127.0.0.1:%d from b failed" % closed in err, err
    assert d.link("b")["state"] == "up"
    st = d.tunnel("t")
    assert st["state"] != "up" and "from b failed" in st["link_error"], st
