"""Every error belongs to its object (issue 14 item 8): links and tunnels
that fail at the same time, for different reasons, each show their own
reason, never another's. (Static buffers shared between links once put
one host's failure into another tunnel's last_error.)
"""

import socket
import threading
import time

from e2elib import (echo_handler, free_port, known_hosts_line, local,
                    remote, tcp_listen)


def test_links_keep_their_own_errors(sshd, env, servers, keys):
    """Three links fail together, again and again: one to a port where
    nothing listens, one refused for its host key, one good. Each link and
    each tunnel shows its own reason."""
    echo = servers(echo_handler)
    dead = free_port()
    # The server's real key is known under the good host's port only; the
    # "badkey" host reaches the same sshd under another name (localhost)
    # whose known key is the wrong one.
    with open(env.known_hosts, "w") as f:
        f.write(known_hosts_line(sshd.port, keys.host_pub))
        f.write("[localhost]:%d %s\n" % (sshd.port, " ".join(
            keys.other_pub.split()[:2])))
    hosts = {"good": {"address": "127.0.0.1", "port": sshd.port},
             "nothing": {"address": "127.0.0.1", "port": dead},
             "badkey": {"address": "localhost", "port": sshd.port}}
    tunnels = [local("t_" + h, tcp_listen(free_port()), echo.target, via=h)
               for h in hosts]
    d = env.start(tunnels, hosts=hosts, known_hosts=False)
    code, out, err = d.tunctl("wait", "t_good", "--timeout", "15")
    assert code == 0, (code, out, err)
    d.wait_link("badkey", "failed", timeout=10)
    # Several rounds of failures of both, interleaved.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        links = d.links()
        e_nothing = links["nothing"]["last_error"] or ""
        e_bad = links["badkey"]["last_error"] or ""
        assert str(dead) in e_nothing and "refused" in e_nothing, e_nothing
        assert keys.other_fp not in e_nothing and "host key" not in \
            e_nothing, e_nothing
        assert keys.other_fp in e_bad and str(dead) not in e_bad, e_bad
        assert links["good"]["state"] == "up"
        assert not links["good"]["last_error"], links["good"]
        t = d.status()
        assert str(dead) in (t["t_nothing"]["link_error"] or "")
        assert keys.other_fp not in (t["t_nothing"]["link_error"] or "")
        assert keys.other_fp in (t["t_badkey"]["link_error"] or "")
        assert str(dead) not in (t["t_badkey"]["link_error"] or "")
        time.sleep(0.2)


def test_tunnels_keep_their_own_errors(sshd, env):
    """Two remote tunnels on one link whose targets both refuse: clients
    hit both at once, many times; each tunnel's last_error names its own
    target only."""
    ta, tb = free_port(), free_port()          # nothing listens on these
    la, lb = free_port(), free_port()          # the server side
    d = env.start([remote("ra", tcp_listen(la), tcp_listen(ta)),
                   remote("rb", tcp_listen(lb), tcp_listen(tb))], sshd=sshd)
    code, out, err = d.tunctl("wait", "ra", "rb", "--timeout", "15")
    assert code == 0, (code, out, err)

    def hit(port, n):
        for _ in range(n):
            try:
                with socket.create_connection(("127.0.0.1", port),
                                              timeout=5) as s:
                    s.settimeout(5)
                    s.recv(1)      # closed once the target refused
            except OSError:
                pass

    threads = [threading.Thread(target=hit, args=(p, 20))
               for p in (la, lb, la, lb)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    t = d.status()
    ea, eb = t["ra"]["last_error"] or "", t["rb"]["last_error"] or ""
    assert ":%d" % ta in ea and ":%d" % tb not in ea, ea
    assert ":%d" % tb in eb and ":%d" % ta not in eb, eb
    assert "refused" in ea and "refused" in eb, (ea, eb)
    assert t["ra"]["connections"]["failed"] >= 30, t["ra"]
    assert t["rb"]["connections"]["failed"] >= 30, t["rb"]
