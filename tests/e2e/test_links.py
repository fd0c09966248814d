"""What `tunctl links` says of a link is true now, not of its past: a
link that came back after failures shows no retries, and a link that is
idle (every tunnel down) shows no round-trip time."""

from e2elib import SLACK, echo_handler, free_port, local, note, tcp_listen


def test_retries_zero_once_up_and_no_rtt_when_idle(own_sshd, env, servers):
    echo = servers(echo_handler)
    d = env.start([local("t", tcp_listen(free_port()), echo.target)],
                  sshd=own_sshd,
                  defaults={"keepalive_interval": 1,
                            "keepalive_count_max": 2,
                            "backoff_initial": 0.1, "backoff_max": 0.3})
    assert d.tunctl("wait", "t", "--timeout", "15")[0] == 0
    own_sshd.stop()
    d.wait_for(lambda: d.link("srv")["retries"] >= 3, 10 * SLACK,
               what="3 failed retries")
    failed = d.link("srv")["retries"]
    own_sshd.start()
    assert d.tunctl("wait", "t", "--timeout", "15")[0] == 0
    lk = d.link("srv")
    assert lk["state"] == "up" and lk["retries"] == 0, lk
    code, out, _ = d.tunctl("links")
    row = [ln.split() for ln in out.splitlines() if ln.startswith("srv ")]
    assert row and row[0][4] == "0", out          # the RETRIES column
    d.wait_for(lambda: d.link("srv")["rtt_ms"] is not None, 5 * SLACK,
               what="a keepalive round trip")

    assert d.tunctl("down", "t")[0] == 0
    d.wait_for(lambda: d.link("srv")["state"] == "idle", 5 * SLACK,
               what="the link idle")
    lk = d.link("srv")
    assert lk["rtt_ms"] is None, lk
    code, out, _ = d.tunctl("links")
    row = [ln.split() for ln in out.splitlines() if ln.startswith("srv ")]
    assert row and row[0][6] == "-", out          # the RTT column
    note("links: %d retries while sshd was down, 0 once up; idle link: "
         "RTT -" % failed)
