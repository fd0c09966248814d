"""Authentication with the keys of a real ssh-agent (agent = true), which
must never block the daemon's loop.

libssh 0.10's own agent client waits for the agent's answer with poll(-1);
tunneld talks to the agent itself, non-blocking (daemon/agent.c).  Each
test starts its own ssh-agent (-D -a PATH, keys with a bounded lifetime),
adds keys with ssh-add, and hands its socket to tunneld as SSH_AUTH_SOCK.
A key added with ssh-add -c asks SSH_ASKPASS for a confirmation: the
askpass here is a script the test controls.  The agent is stopped by PID
(and continued first if the test stopped it).
"""

import os
import signal
import subprocess
import time

import pytest

from e2elib import (SLACK, Sshd, echo_handler, echo_roundtrip, free_port,
                    local, log_event, note, run_tunctl, ssh_keygen, tcp_listen,
                    terminate)

ASKPASS = """#!/bin/sh
# Asked to confirm a key: say so, then answer what the test writes into
# the answer file (yes: exit 0, anything else: exit 1), within 60 s.
echo "$SSH_ASKPASS_PROMPT $*" >> "{dir}/asked"
i=0
while [ ! -s "{dir}/answer" ] && [ $i -lt 600 ]; do
    sleep 0.1
    i=$((i + 1))
done
[ "$(cat "{dir}/answer" 2>/dev/null)" = yes ]
"""


def agent_env(sock):
    """The daemon's environment for agent tests. Under ASan, full stacks
    for allocations (the fast unwinder stops at libssh's first frame), so
    that agent.c's one LeakSanitizer suppression, leak:ssh_userauth_agent
    (libssh 0.10's lost key list), matches that leak and nothing else."""
    e = {"SSH_AUTH_SOCK": sock}
    if os.environ.get("ASAN_OPTIONS"):
        e["ASAN_OPTIONS"] = os.environ["ASAN_OPTIONS"] + \
            ":fast_unwind_on_malloc=0"
    return e


class Agent:
    """ssh-agent -D on a socket of its own; askpass answers from a file."""

    def __init__(self, d):
        self.dir = d
        os.makedirs(d, exist_ok=True)
        self.sock = os.path.join(d, "agent.sock")
        self.askpass = os.path.join(d, "askpass")
        with open(self.askpass, "w") as f:
            f.write(ASKPASS.format(dir=d))
        os.chmod(self.askpass, 0o755)
        e = dict(os.environ)
        e.update({"SSH_ASKPASS": self.askpass,
                  "SSH_ASKPASS_REQUIRE": "force", "DISPLAY": ":0"})
        e.pop("SSH_AUTH_SOCK", None)
        self.log = os.path.join(d, "agent.log")
        with open(self.log, "w") as logf:
            # -t: every key added lives at most 10 minutes.
            self.proc = subprocess.Popen(
                ["ssh-agent", "-D", "-a", self.sock, "-t", "600"],
                stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=e,
                start_new_session=True)
        deadline = time.monotonic() + 10
        while not os.path.exists(self.sock):
            assert self.proc.poll() is None, "ssh-agent exited"
            assert time.monotonic() < deadline, "ssh-agent has no socket"
            time.sleep(0.05)
        self.stopped = False

    def add(self, key, confirm=False):
        cmd = ["ssh-add"] + (["-c"] if confirm else []) + [key]
        e = dict(os.environ, SSH_AUTH_SOCK=self.sock)
        p = subprocess.run(cmd, env=e, capture_output=True, text=True,
                           timeout=30, stdin=subprocess.DEVNULL)
        assert p.returncode == 0, p.stderr

    def asked(self):
        return os.path.exists(os.path.join(self.dir, "asked"))

    def answer(self, text):
        with open(os.path.join(self.dir, "answer.tmp"), "w") as f:
            f.write(text)
        os.rename(os.path.join(self.dir, "answer.tmp"),
                  os.path.join(self.dir, "answer"))

    def stop_signal(self):
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.stopped = True

    def cont(self):
        if self.stopped:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.stopped = False

    def close(self):
        self.answer("no")           # releases an askpass still waiting
        self.cont()
        terminate(self.proc)


class AgentKeys:
    pass


@pytest.fixture(scope="module")
def akeys(workdir, keys):
    """Keys for the agent: two the server accepts, one it does not."""
    k = AgentKeys()
    d = os.path.join(workdir, "agentkeys")
    os.makedirs(d, exist_ok=True)
    k.good = os.path.join(d, "id_agent")
    k.good_pub = ssh_keygen(k.good, "e2e-agent")
    k.confirm = os.path.join(d, "id_confirm")
    k.confirm_pub = ssh_keygen(k.confirm, "e2e-confirm")
    k.stranger = os.path.join(d, "id_stranger")
    ssh_keygen(k.stranger, "e2e-stranger")
    k.authorized = os.path.join(d, "authorized_keys")
    with open(k.authorized, "w") as f:
        f.write("%s\n%s\n%s\n" % (keys.client_pub, k.good_pub,
                                  k.confirm_pub))
    return k


@pytest.fixture(scope="module")
def asshd(workdir, keys, akeys):
    """An sshd that accepts the client key and the agent's two keys."""
    s = Sshd(os.path.join(workdir, "sshd-agent"), keys.host_key,
             akeys.authorized)
    s.start()
    yield s
    s.stop()


@pytest.fixture
def agent(tdir):
    made = []

    def make():
        a = Agent(os.path.join(tdir, "agent%d" % len(made)))
        made.append(a)
        return a
    yield make
    for a in made:
        a.close()


def hosts(sshd, **named):
    """hosts: {name: extra settings} on the one sshd."""
    return {n: dict({"address": "127.0.0.1", "port": sshd.port}, **kw)
            for n, kw in named.items()}


def status_times(d, n=5):
    """Seconds each of n `tunctl status` calls took."""
    out = []
    for _ in range(n):
        t0 = time.monotonic()
        code, _, err = run_tunctl(d.sock, "status", timeout=30)
        out.append(time.monotonic() - t0)
        assert code in (0, 4), err
    return out


@pytest.mark.limit(60)
def test_agent_logs_in(asshd, akeys, agent, env, servers):
    """The agent's keys alone log in; a key the server refuses is skipped
    and the next one signs (two passes of libssh over our answers)."""
    a = agent()
    a.add(akeys.stranger)
    a.add(akeys.good)
    echo = servers(echo_handler)
    port = free_port()
    d = env.start([local("t", tcp_listen(port), echo.target, via="a")],
                  sshd=asshd,
                  hosts=hosts(asshd, a={"agent": True, "identity": []}),
                  daemon_env=agent_env(a.sock))
    code, out, err = d.tunctl("wait", "t", "--timeout", "15")
    assert code == 0, (code, out, err, d.link("a"))
    assert echo_roundtrip(("127.0.0.1", port), b"via the agent") == \
        b"via the agent"
    log_event(d.log, r"^link a: authenticated with the agent's key "
              r"ssh-ed25519 SHA256:", timeout=1)
    log_event(d.log, r"^link a: .* accepts the agent's key", timeout=1)


@pytest.mark.limit(90)
def test_agent_confirm_does_not_block(asshd, akeys, agent, env, servers):
    """A key added with ssh-add -c: while the agent waits for the person
    (askpass), the daemon answers tunctl at once and another host's tunnel
    moves data; the link comes up once askpass says yes."""
    a = agent()
    a.add(akeys.confirm, confirm=True)
    echo = servers(echo_handler)
    pa, pb = free_port(), free_port()
    d = env.start([local("ta", tcp_listen(pa), echo.target, via="a"),
                   local("tb", tcp_listen(pb), echo.target, via="b")],
                  sshd=asshd,
                  hosts=hosts(asshd,
                              a={"agent": True, "identity": [],
                                 "connect_timeout": 30},
                              b={}),
                  daemon_env=agent_env(a.sock))
    deadline = time.monotonic() + 15
    while not a.asked():
        assert time.monotonic() < deadline, "askpass was never run"
        time.sleep(0.05)
    t_asked = time.monotonic()

    # The agent now waits for the person; the daemon does not.
    times = status_times(d)
    note("tunctl status while the agent waits for a confirmation: "
         "max %.3f s" % max(times))
    assert max(times) < SLACK, times
    d.wait_tunnel("tb", "up", timeout=10)
    assert echo_roundtrip(("127.0.0.1", pb), b"other host") == b"other host"
    assert d.link("a")["state"] == "connecting", d.link("a")
    assert d.tunnel("ta")["state"] != "up"
    time.sleep(max(0.0, t_asked + 2.0 - time.monotonic()))
    times = status_times(d, 3)
    assert max(times) < SLACK, times

    a.answer("yes")
    dt = d.wait_tunnel("ta", "up", timeout=10)
    note("link up %.2f s after the confirmation (agent waited %.1f s)" %
         (dt, time.monotonic() - t_asked - dt))
    assert echo_roundtrip(("127.0.0.1", pa), b"confirmed") == b"confirmed"
    with open(os.path.join(a.dir, "asked")) as f:
        assert f.read().startswith("confirm ")


@pytest.mark.limit(60)
def test_agent_confirm_refused(asshd, akeys, agent, env):
    """askpass says no: the note says the agent refused to sign, and the
    link, with nothing else to offer, is refused with that note."""
    a = agent()
    a.add(akeys.confirm, confirm=True)
    a.answer("no")
    port = free_port()
    d = env.start([local("t", tcp_listen(port), "127.0.0.1:9", via="a")],
                  sshd=asshd,
                  hosts=hosts(asshd, a={"agent": True, "identity": []}),
                  daemon_env=agent_env(a.sock))
    d.wait_for(lambda: "refused to sign" in
               (d.link("a")["last_error"] or ""), 15,
               what="the refusal in the link's error")
    err = d.link("a")["last_error"]
    assert "authentication as root refused" in err, err
    assert "agent: ssh-ed25519 SHA256:" in err, err


@pytest.mark.limit(60)
def test_agent_next_key_after_refusal(asshd, akeys, agent, env, servers):
    """The agent refuses to sign with its first key (not confirmed): the
    next pass offers the keys after it, and the second one logs in."""
    a = agent()
    a.add(akeys.confirm, confirm=True)
    a.add(akeys.good)
    a.answer("no")
    echo = servers(echo_handler)
    port = free_port()
    d = env.start([local("t", tcp_listen(port), echo.target, via="a")],
                  sshd=asshd,
                  hosts=hosts(asshd, a={"agent": True, "identity": []}),
                  daemon_env=agent_env(a.sock))
    code, out, err = d.tunctl("wait", "t", "--timeout", "15")
    assert code == 0, (code, out, err, d.link("a"))
    assert echo_roundtrip(("127.0.0.1", port), b"second key") == \
        b"second key"
    refused = log_event(d.log, r"^link a: the agent refused to sign with "
                        r"ssh-ed25519 SHA256:", timeout=1)
    assert log_event(d.log, r"^link a: authenticated with the agent's key",
                     timeout=1) >= refused
    assert a.asked()


@pytest.mark.limit(60)
def test_agent_confirm_timeout(asshd, akeys, agent, env):
    """Nobody confirms: connect_timeout ends the attempt, and the link's
    error says what it waited for; the loop ran all along."""
    a = agent()
    a.add(akeys.confirm, confirm=True)
    port = free_port()
    d = env.start([local("t", tcp_listen(port), "127.0.0.1:9", via="a")],
                  sshd=asshd,
                  hosts=hosts(asshd, a={"agent": True, "identity": [],
                                        "connect_timeout": 3}),
                  daemon_env=agent_env(a.sock))
    times = status_times(d, 3)
    assert max(times) < SLACK, times
    d.wait_for(lambda: "did not sign" in (d.link("a")["last_error"] or ""),
               3 + 5 * SLACK, what="the timeout in the link's error")
    err = d.link("a")["last_error"]
    assert "timed out after 3 s" in err, err
    assert "ssh-add -c" in err, err


@pytest.mark.limit(90)
def test_agent_stopped(asshd, akeys, agent, env, servers):
    """A SIGSTOPped agent: the daemon stays responsive, a host with an
    identity file falls back to it after the agent's deadline, a host with
    only the agent reports why, and logs in once the agent runs again."""
    a = agent()
    a.add(akeys.good)
    a.stop_signal()
    echo = servers(echo_handler)
    pa, pc = free_port(), free_port()
    fast = {"connect_timeout": 4, "backoff_initial": 0.5,
            "backoff_max": 2.0}
    t0 = time.monotonic()
    d = env.start([local("ta", tcp_listen(pa), echo.target, via="a"),
                   local("tc", tcp_listen(pc), echo.target, via="c")],
                  sshd=asshd,
                  hosts=hosts(asshd, a=dict(fast, agent=True),
                              c=dict(fast, agent=True, identity=[])),
                  daemon_env=agent_env(a.sock))
    try:
        times = status_times(d)
        note("tunctl status while the agent is stopped: max %.3f s" %
             max(times))
        assert max(times) < SLACK, times
        # The key list's deadline is connect_timeout / 2 = 2 s.
        d.wait_tunnel("ta", "up", timeout=2 + 5 * SLACK)
        note("agent stopped: the identity file logged in %.2f s after "
             "the daemon started" % (time.monotonic() - t0))
        log_event(d.log, r"^link a: agent: .*agent\.sock did not answer "
                  r"within 2\.0 s", timeout=1)
        assert echo_roundtrip(("127.0.0.1", pa), b"fallback") == \
            b"fallback"
        d.wait_for(lambda: "did not answer within 2.0 s" in
                   (d.link("c")["last_error"] or ""), 10,
                   what="the agent's deadline in c's error")
        err = d.link("c")["last_error"]
        assert "authentication as root refused" in err, err
        times = status_times(d, 3)
        assert max(times) < SLACK, times
    finally:
        a.cont()
    d.wait_tunnel("tc", "up", timeout=15)
    assert echo_roundtrip(("127.0.0.1", pc), b"agent back") == b"agent back"


@pytest.mark.limit(60)
def test_agent_without_keys(asshd, agent, env):
    """An agent with no keys: the current note."""
    a = agent()
    port = free_port()
    d = env.start([local("t", tcp_listen(port), "127.0.0.1:9", via="a")],
                  sshd=asshd,
                  hosts=hosts(asshd, a={"agent": True, "identity": []}),
                  daemon_env=agent_env(a.sock))
    d.wait_for(lambda: d.link("a")["last_error"], 10,
               what="an error on link a")
    err = d.link("a")["last_error"]
    assert "(agent: no key accepted)" in err, err


@pytest.mark.limit(60)
def test_agent_socket_unset(asshd, env, monkeypatch):
    """SSH_AUTH_SOCK not set: the current note, and the identity file
    still logs in where there is one."""
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    port = free_port()
    d = env.start([local("t", tcp_listen(port), "127.0.0.1:9", via="a"),
                   local("u", tcp_listen(free_port()), "127.0.0.1:9",
                         via="b")],
                  sshd=asshd,
                  hosts=hosts(asshd, a={"agent": True, "identity": []},
                              b={"agent": True}))
    d.wait_tunnel("u", "up", timeout=10)
    d.wait_for(lambda: d.link("a")["last_error"], 10,
               what="an error on link a")
    err = d.link("a")["last_error"]
    assert "(agent: SSH_AUTH_SOCK is not set)" in err, err


@pytest.mark.limit(60)
def test_agent_socket_missing(asshd, env, tdir):
    """SSH_AUTH_SOCK names no socket: the note says so at once, and the
    identity file logs in where there is one."""
    missing = os.path.join(tdir, "no-agent.sock")
    d = env.start([local("t", tcp_listen(free_port()), "127.0.0.1:9",
                         via="a"),
                   local("u", tcp_listen(free_port()), "127.0.0.1:9",
                         via="b")],
                  sshd=asshd,
                  hosts=hosts(asshd, a={"agent": True, "identity": []},
                              b={"agent": True}),
                  daemon_env=agent_env(missing))
    d.wait_tunnel("u", "up", timeout=10)
    d.wait_for(lambda: d.link("a")["last_error"], 10,
               what="an error on link a")
    err = d.link("a")["last_error"]
    assert "agent: cannot connect to %s: No such file" % missing in err, err
