"""Helpers for the tunneld end-to-end tests.

Everything here talks to loopback only, and everything that runs (servers,
sshd, tunneld) is bounded in time and stopped by the fixture that started it.
Only processes started by these helpers are ever signalled, by PID.
"""

import hashlib
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import threading
import time

TUNNELD_BIN = os.environ.get("TUNNELD_BIN", "build/tunneld")
TUNCTL_BIN = os.environ.get("TUNCTL_BIN", "build/tunctl")
SSHD_BIN = "/usr/sbin/sshd"

# Upper bound for any single blocking socket operation in a test.
IO_TIMEOUT = 60.0

# SLACK: the one allowance for scheduling delay on a busy machine, in
# seconds, added to every time limit that is not itself the point of a test
# (a SPEC bound such as "dead after interval x count" is checked as written,
# from the daemon's own log stamps; SLACK covers only our polling and the
# machine's noise around it).  CI runs the suite on 2 shared cores, once on
# the -O2 build and once under ASan/UBSan, which is 2-4x slower: there SLACK
# is doubled.  E2E_SLACK overrides it.
def _slack():
    if os.environ.get("E2E_SLACK"):
        return float(os.environ["E2E_SLACK"])
    try:
        with open(TUNNELD_BIN, "rb") as f:
            asan = b"__asan_init" in f.read()
    except OSError:
        asan = False
    return 2.0 if asan else 1.0


SLACK = _slack()

# Sanitizer reports: the ASan make target sets ASAN_OPTIONS/UBSAN_OPTIONS
# with log_path under this directory; conftest fails any test after which a
# new report file appears, whatever the daemon's exit status.
SAN_LOG_DIR = os.environ.get("E2E_SAN_LOG_DIR", "")

# Measurements the tests made, printed at the end of the run.
NOTES = []


def note(text):
    """Print a measurement and keep it for the run's summary."""
    print(text)
    NOTES.append(text)


_ports_given = set()


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    """Return a TCP port that nothing listens on right now and that this
    run has not handed out before (the kernel may offer a port it just
    gave back, so two calls in one test could otherwise get the same)."""
    for _ in range(1000):
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port
    raise RuntimeError("free_port: no port not handed out before")


def wait_port(port, host="127.0.0.1", timeout=10.0, family=socket.AF_INET):
    """Wait until a TCP port accepts connections; True if it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def port_refuses(port, host="127.0.0.1"):
    """True if a TCP connect to the port is refused (nothing listens)."""
    try:
        with socket.create_connection((host, port), timeout=2.0):
            return False
    except ConnectionRefusedError:
        return True


def port_bindable(port, host="127.0.0.1", family=socket.AF_INET):
    """True if we could bind the port ourselves (nobody holds it)."""
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        s.listen(1)
        return True
    except OSError:
        return False
    finally:
        s.close()


def connect(addr, timeout=IO_TIMEOUT):
    """Connect to a (host, port) tuple or a UNIX socket path."""
    if isinstance(addr, str):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(addr)
        return s
    host = addr[0]
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(addr)
    return s


def recv_all(s, limit=None):
    """Read until EOF (or until limit bytes); return the bytes."""
    chunks = []
    n = 0
    while limit is None or n < limit:
        want = 1 << 20 if limit is None else min(1 << 20, limit - n)
        b = s.recv(want)
        if not b:
            break
        chunks.append(b)
        n += len(b)
    return b"".join(chunks)


def recv_exact(s, n):
    """Read exactly n bytes or raise."""
    buf = bytearray()
    while len(buf) < n:
        b = s.recv(min(1 << 20, n - len(buf)))
        if not b:
            raise EOFError("EOF after %d of %d bytes" % (len(buf), n))
        buf += b
    return bytes(buf)


def echo_roundtrip(addr, payload=b"hello through the tunnel\n",
                   timeout=15.0):
    """Send payload, half-close, read the echo back until EOF."""
    with connect(addr, timeout=timeout) as s:
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        return recv_all(s)


def echo_loop(addr, stop, timeout=20.0):
    """Clients one after another until the event stop is set, one echo
    each; returns the counts: ok, refused (ECONNREFUSED), cut (any other
    failure: reset, EOF, a wrong echo) with their errors, and the slowest
    good echo in seconds. Across a restart, refused counts the clients the
    daemon turned away; cut, those in flight when it stopped."""
    r = {"ok": 0, "refused": 0, "cut": 0, "slowest": 0.0, "errors": []}
    i = 0
    while not stop.is_set():
        i += 1
        msg = b"client %d\n" % i
        t0 = time.monotonic()
        try:
            got = echo_roundtrip(addr, msg, timeout=timeout)
        except ConnectionRefusedError:
            r["refused"] += 1
            time.sleep(0.01)
            continue
        except OSError as e:
            got = repr(e)
        if got == msg:
            r["ok"] += 1
            r["slowest"] = max(r["slowest"], time.monotonic() - t0)
        else:
            r["cut"] += 1
            r["errors"].append(got)
    return r


# ---------------------------------------------------------------------------
# Loopback servers


class Server:
    """A threaded stream server on loopback TCP (IPv4/IPv6) or a UNIX path.

    handler(conn) runs in its own thread per connection; the connection is
    closed when it returns.  Everything has timeouts; stop() ends it all.
    """

    def __init__(self, handler, addr=("127.0.0.1", 0), backlog=1024,
                 conn_timeout=IO_TIMEOUT):
        self.handler = handler
        self.conn_timeout = conn_timeout
        self.errors = []
        self.accepted = 0
        self._stop = threading.Event()
        self._threads = []
        self._conns = set()
        self._lock = threading.Lock()
        if isinstance(addr, str):
            if os.path.exists(addr):
                os.unlink(addr)
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(addr)
            self.path = addr
            self.addr = addr
        else:
            fam = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
            self.sock = socket.socket(fam, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind(addr)
            self.path = None
            self.addr = (addr[0], self.sock.getsockname()[1])
        self.sock.listen(backlog)
        self.sock.settimeout(0.2)
        self._accept_thread = threading.Thread(target=self._accept_loop,
                                               daemon=True)
        self._accept_thread.start()

    @property
    def port(self):
        return self.addr[1]

    @property
    def target(self):
        """The address as tunnels.conf writes it."""
        if self.path:
            return self.path
        host, port = self.addr
        if ":" in host:
            return "[%s]:%d" % (host, port)
        return "%s:%d" % (host, port)

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            conn.settimeout(self.conn_timeout)
            with self._lock:
                self.accepted += 1
                self._conns.add(conn)
            t = threading.Thread(target=self._run, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _run(self, conn):
        try:
            self.handler(conn)
        except Exception as e:  # recorded, the test decides
            self.errors.append(repr(e))
        finally:
            with self._lock:
                self._conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def stop(self):
        self._stop.set()
        try:
            self.sock.close()
        except OSError:
            pass
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._accept_thread.join(5)
        for t in self._threads:
            t.join(2)
        if self.path and os.path.exists(self.path):
            os.unlink(self.path)


def echo_handler(conn):
    """Echo everything back; on EOF half-close our side too."""
    while True:
        b = conn.recv(1 << 16)
        if not b:
            break
        conn.sendall(b)
    conn.shutdown(socket.SHUT_WR)


def sink_handler(conn):
    """Read until EOF, then answer '<count> <sha256>\\n' and close."""
    h = hashlib.sha256()
    n = 0
    while True:
        b = conn.recv(1 << 20)
        if not b:
            break
        h.update(b)
        n += len(b)
    conn.sendall(("%d %s\n" % (n, h.hexdigest())).encode())
    conn.shutdown(socket.SHUT_WR)


class Firehose:
    """A Server handler that sends the same random block (1 MiB) over and
    over until stop is set, for the slow-reader tests; sent counts the
    bytes the kernel took."""

    def __init__(self, size=1 << 20):
        self.block = os.urandom(size)
        self.stop = threading.Event()
        self.sent = 0

    def __call__(self, conn):
        while not self.stop.is_set():
            try:
                conn.sendall(self.block)
            except OSError:
                return
            self.sent += len(self.block)


def source_handler(data):
    """A handler that sends data, half-closes, and drains until EOF."""
    def handler(conn):
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        while conn.recv(1 << 16):
            pass
    return handler


class DelayRelay:
    """bench/loadgen.c's delay relay (a WAN in user space: the kernel has
    no netem) in front of 127.0.0.1:to, rtt_ms round trip, at most queue
    bytes held each way; listening on listen inside the network namespace
    netns (a name under /run/netns) when given, else on 127.0.0.1.  It
    ends TCP on both sides: a path through it is two TCP connections.
    A context manager; .port is where it listens."""

    def __init__(self, loadgen, to, rtt_ms, queue=4 << 20, netns=None,
                 listen=None, max_time=300):
        cmd = [loadgen, "delay", "--to", str(to), "--delay",
               str(rtt_ms / 2.0), "--queue", str(queue), "--max-time",
               str(max_time)]
        if netns:
            cmd += ["--netns", "/run/netns/" + netns, "--listen", listen]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("port "):
            self.stop()
            raise RuntimeError("loadgen delay did not start: %r" % line)
        self.port = int(line.split()[1])

    def stop(self):
        terminate(self.proc)
        self.proc.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# ---------------------------------------------------------------------------
# Processes


def proc_children(pid):
    """PIDs whose parent is pid (read from /proc/*/stat)."""
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        # comm may contain spaces and parentheses: split after the last ')'
        rest = st[st.rfind(")") + 2:].split()
        if len(rest) > 1 and int(rest[1]) == pid:
            kids.append(int(d))
    return kids


def proc_descendants(pid):
    """Every descendant PID of pid, breadth first."""
    out = []
    todo = [pid]
    while todo:
        p = todo.pop(0)
        for c in proc_children(p):
            if c not in out:
                out.append(c)
                todo.append(c)
    return out


def terminate(proc, timeout=5):
    """SIGTERM a subprocess we started, SIGKILL it if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def proc_fds(pid):
    """How many descriptors a process has open."""
    return len(os.listdir("/proc/%d/fd" % pid))


def small_quarantine():
    """daemon_env for a memory test under ASan: a 16 MB quarantine, so
    that RSS shows what the daemon keeps, not the freed chunks of
    thousands of connections that ASan holds back (256 MB by default).
    None for the -O2 build."""
    if os.environ.get("ASAN_OPTIONS"):
        return {"ASAN_OPTIONS": os.environ["ASAN_OPTIONS"] +
                ":quarantine_size_mb=16"}
    return None


def proc_rss_kb(pid):
    """VmRSS of a process in kB (0 if gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def sanitized():
    """True if tunneld is built with ASan.  Its allocator keeps freed chunks
    in a quarantine and adds shadow memory, so RSS grows with the bytes that
    passed through the heap, not only with what is held: memory tests use
    the looser mem_limit() there."""
    with open(TUNNELD_BIN, "rb") as f:
        return b"__asan_init" in f.read()


def mem_limit(plain, asan):
    """The RSS growth a memory test allows: plain for the -O2 build, asan
    (which must stay well below the bytes the test pushes, so unbounded
    buffering still fails) under ASan."""
    return asan if sanitized() else plain


def san_reports(seen=()):
    """Sanitizer report files in SAN_LOG_DIR not in seen: {path: text}."""
    if not SAN_LOG_DIR or not os.path.isdir(SAN_LOG_DIR):
        return {}
    out = {}
    for n in sorted(os.listdir(SAN_LOG_DIR)):
        p = os.path.join(SAN_LOG_DIR, n)
        if p in seen:
            continue
        with open(p, errors="replace") as f:
            out[p] = f.read()
    return out


_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) "
                    r"tunneld\[\w+\]: (.*)$")


def log_events(path, pattern, after=0.0):
    """The daemon's own times of the log lines matching the regular
    expression pattern, as epoch seconds (millisecond stamps of tunneld -d),
    only those at or after the epoch time after."""
    rx = re.compile(pattern)
    out = []
    with open(path, errors="replace") as f:
        for line in f:
            m = _STAMP.match(line.rstrip("\n"))
            if not m or not rx.search(m.group(2)):
                continue
            t = time.mktime(time.strptime(m.group(1)[:19],
                                          "%Y-%m-%d %H:%M:%S")) + \
                int(m.group(1)[20:]) / 1000.0
            if t >= after:
                out.append(t)
    return out


def log_event(path, pattern, after=0.0, timeout=10.0):
    """Wait (bounded) for a log line matching pattern at or after after;
    return the daemon's time of the first one."""
    deadline = time.monotonic() + timeout
    while True:
        ev = log_events(path, pattern, after)
        if ev:
            return ev[0]
        if time.monotonic() > deadline:
            raise AssertionError("no log line /%s/ within %.1fs:\n%s" % (
                pattern, timeout, tail(path, 40)))
        time.sleep(0.05)


def tail(path, lines=150):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as e:
        return "(cannot read %s: %s)" % (path, e)


def ssh_keygen(path, comment="tunneld-e2e"):
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                    comment, "-f", path], check=True, timeout=30,
                   stdin=subprocess.DEVNULL)
    with open(path + ".pub") as f:
        return f.read().strip()


def fingerprint(pubfile):
    """The SHA256:... fingerprint of a public key file."""
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", pubfile],
                         check=True, capture_output=True, text=True,
                         timeout=30).stdout
    return out.split()[1]


class Sshd:
    """A private OpenSSH sshd on 127.0.0.1:port, run with -D -e.

    stop() ends the listener and every session process of this instance,
    start() brings it back on the same port, freeze()/thaw() SIGSTOP/SIGCONT
    the listener and all its descendants.
    """

    def __init__(self, workdir, host_key, authorized_keys, port=None):
        os.makedirs(workdir, exist_ok=True)
        os.makedirs("/run/sshd", exist_ok=True)
        self.dir = workdir
        self.port = port or free_port()
        self.host_key = host_key
        self.cfg = os.path.join(workdir, "sshd_config")
        self.log = os.path.join(workdir, "sshd.log")
        self.pidfile = os.path.join(workdir, "sshd.pid")
        self.proc = None
        self.frozen = []
        with open(self.cfg, "w") as f:
            f.write("\n".join([
                "ListenAddress 127.0.0.1",
                "Port %d" % self.port,
                "HostKey %s" % host_key,
                "PidFile %s" % self.pidfile,
                "AuthorizedKeysFile %s" % authorized_keys,
                "StrictModes no",
                "UsePAM no",
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "AllowTcpForwarding yes",
                "AllowStreamLocalForwarding yes",
                "PermitTTY no",
                "UseDNS no",
                "LogLevel VERBOSE",
                "MaxSessions 1000",
                "MaxStartups 100",
                "ClientAliveInterval 0",
                "",
            ]))

    def start(self, timeout=10.0):
        assert self.proc is None, "sshd already running"
        logf = open(self.log, "a")
        logf.write("=== sshd start %s\n" % time.strftime("%T"))
        logf.flush()
        self.proc = subprocess.Popen([SSHD_BIN, "-D", "-e", "-f", self.cfg],
                                     stdin=subprocess.DEVNULL, stdout=logf,
                                     stderr=logf)
        logf.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("sshd exited %s:\n%s" %
                                   (self.proc.returncode, tail(self.log)))
            if wait_port(self.port, timeout=0.2):
                return self
            time.sleep(0.05)
        raise RuntimeError("sshd did not listen on %d:\n%s" %
                           (self.port, tail(self.log)))

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def sessions(self):
        """PIDs of the session processes (children of the listener)."""
        return proc_children(self.proc.pid) if self.proc else []

    def stop(self):
        """Kill the listener and every session process of this instance."""
        if self.proc is None:
            return
        self.thaw()
        pid = self.proc.pid
        kids = proc_descendants(pid)
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            os.kill(pid, signal.SIGKILL)
            self.proc.wait(5)
        # The session processes outlive the -D listener: end them too, so
        # the peer sees its connection go away as on a real restart.
        for k in kids + proc_descendants(pid):
            try:
                os.kill(k, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(
                os.path.exists("/proc/%d" % k) and
                _state(k) not in ("Z", "X") for k in kids):
            time.sleep(0.05)
        self.proc = None

    def restart(self):
        self.stop()
        return self.start()

    def freeze(self):
        """SIGSTOP the listener, then all its descendants (rescanned)."""
        assert self.proc is not None
        pid = self.proc.pid
        os.kill(pid, signal.SIGSTOP)
        self.frozen = [pid]
        for _ in range(3):      # a child forked just before the stop
            for k in proc_descendants(pid):
                if k not in self.frozen:
                    try:
                        os.kill(k, signal.SIGSTOP)
                        self.frozen.append(k)
                    except ProcessLookupError:
                        pass
            time.sleep(0.05)
        return list(self.frozen)

    def thaw(self):
        for p in self.frozen:
            try:
                os.kill(p, signal.SIGCONT)
            except ProcessLookupError:
                pass
        self.frozen = []


def _state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
        return st[st.rfind(")") + 2:].split()[0]
    except OSError:
        return "X"


# ---------------------------------------------------------------------------
# Configuration


def _cval(v):
    """A Python value as a libconfig scalar."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        r = repr(v)
        return r if ("." in r or "e" in r) else r + ".0"
    if isinstance(v, (list, tuple)):
        return "[ " + ", ".join(_cval(x) for x in v) + " ]"
    return '"%s"' % str(v).replace("\\", "\\\\").replace('"', '\\"')


def render_conf(control_socket, defaults, hosts, tunnels, log_level="debug"):
    """tunnels.conf text.  hosts: {name: {key: value}}, tunnels: [dict]."""
    out = ["version = 1;", "", "daemon: {",
           "  control_socket = %s;" % _cval(control_socket),
           "  log_level = %s;" % _cval(log_level),
           "};", "", "defaults: {"]
    for k, v in defaults.items():
        out.append("  %s = %s;" % (k, _cval(v)))
    out += ["};", "", "hosts: {"]
    for name, h in hosts.items():
        body = " ".join("%s = %s;" % (k, _cval(v)) for k, v in h.items())
        out.append("  %s: { %s };" % (name, body))
    out += ["};", "", "tunnels = ("]
    items = []
    for t in tunnels:
        body = " ".join("%s = %s;" % (k, _cval(v)) for k, v in t.items())
        items.append("  { %s }" % body)
    out.append(",\n".join(items))
    out += [");", ""]
    return "\n".join(out)


def keepalive_midpoint(d, interval, host="srv"):
    """Sleep until half a keepalive interval after a probe of host's link
    was answered (times from the daemon's log).  A server frozen then
    is, by the daemon's rule, declared dead half an interval before the
    SPEC bound interval x (count_max + 1): the half interval is room for
    the daemon's own timer delay, and a daemon that waited one probe more
    than the SPEC allows still misses the bound by half an interval."""
    after = time.time()
    while True:
        t = log_event(d.log, r"^link %s: keepalive answered" % host,
                      after=after, timeout=interval + SLACK)
        wait = t + interval / 2.0 - time.time()
        if wait > 0:
            time.sleep(wait)
            return
        after = t + 0.001           # we were late: take the next probe


# ---------------------------------------------------------------------------
# tunctl and tunneld


def run_tunctl(sock, *args, timeout=30, env=None, json_out=False):
    """Run tunctl; return (exit code, stdout, stderr)."""
    cmd = [TUNCTL_BIN]
    if sock is not None:
        cmd += ["-s", sock]
    if json_out:
        cmd.append("--json")
    cmd += [str(a) for a in args]
    e = dict(os.environ)
    e.pop("TUNCTL_SOCKET", None)
    if env:
        e.update(env)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, env=e)
    return p.returncode, p.stdout, p.stderr


def run_tunctl_pid(sock, *args, env=None, **popen):
    """Run tunctl -s sock ARGS (with popen's extra arguments: user=,
    group=, extra_groups=, preexec_fn=); return (exit code, stdout,
    stderr, its pid), the pid as the daemon logs it."""
    e = dict(os.environ)
    e.pop("TUNCTL_SOCKET", None)
    e.update(env or {})
    p = subprocess.Popen([TUNCTL_BIN, "-s", sock] + [str(a) for a in args],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=e, **popen)
    try:
        out, err = p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise
    return p.returncode, out, err, p.pid


class Tunneld:
    """One tunneld -d -f CONF process and the tunctl helpers around it."""

    def __init__(self, conf_path, sock, log, extra_args=(), env=None,
                 wrap=(), pass_fds=()):
        self.conf = conf_path
        self.sock = sock
        self.log = log
        self.extra_args = list(extra_args)
        self.env = env          # added to the environment, if any
        self.wrap = list(wrap)  # a program that execs tunneld, and its args
        self.pass_fds = tuple(pass_fds)
        self.proc = None
        self.returncode = None

    # How start() names the daemon in its errors, and what it runs.
    where = ""

    def command(self):
        return self.wrap + [TUNNELD_BIN, "-d", "-f", self.conf] + \
            self.extra_args

    def start(self, timeout=10.0, status_timeout=5):
        logf = open(self.log, "a")
        e = None
        if self.env:
            e = dict(os.environ)
            e.update(self.env)
        self.proc = subprocess.Popen(
            self.command(), pass_fds=self.pass_fds,
            stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, env=e)
        logf.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("tunneld%s exited %s at start:\n%s" %
                                   (self.where, self.proc.returncode,
                                    tail(self.log)))
            if os.path.exists(self.sock):
                code, _, _ = self.tunctl("status", timeout=status_timeout)
                if code in (0, 4):
                    return self
            time.sleep(0.05)
        raise RuntimeError("tunneld%s: control socket did not answer:\n%s" %
                           (self.where, tail(self.log)))

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Signal the daemon and return its exit status (None if killed)."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                self.returncode = None
                self.proc = None
                return None
        self.returncode = self.proc.returncode
        self.proc = None
        return self.returncode

    def tunctl(self, *args, **kw):
        return run_tunctl(self.sock, *args, **kw)

    def status(self, *names):
        code, out, err = self.tunctl("status", *names, json_out=True)
        assert code in (0, 4), "tunctl --json status: %d %s %s" % (
            code, out, err)
        return {t["name"]: t for t in json.loads(out)["tunnels"]}

    def links(self):
        code, out, err = self.tunctl("links", json_out=True)
        assert code == 0, "tunctl --json links: %d %s %s" % (code, out, err)
        return {l["host"]: l for l in json.loads(out)["links"]}

    def tunnel(self, name):
        return self.status()[name]

    def link(self, host):
        return self.links()[host]

    def wait_for(self, pred, timeout, interval=0.05, what="condition"):
        """Poll pred() until it is true; return seconds taken or raise."""
        t0 = time.monotonic()
        last = None
        while True:
            last = pred()
            if last:
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                raise AssertionError("timed out after %.1fs waiting for %s "
                                     "(status %s, links %s)" % (
                                         timeout, what, self._safe_status(),
                                         self._safe_links()))
            time.sleep(interval)

    def wait_tunnel(self, name, states, timeout=15.0):
        if isinstance(states, str):
            states = (states,)
        return self.wait_for(lambda: self.tunnel(name)["state"] in states,
                             timeout, what="tunnel %s in %s" % (name, states))

    def wait_link(self, host, states, timeout=15.0):
        if isinstance(states, str):
            states = (states,)
        return self.wait_for(lambda: self.link(host)["state"] in states,
                             timeout, what="link %s in %s" % (host, states))

    def _safe_status(self):
        try:
            return json.dumps(list(self.status().values()))
        except Exception as e:
            return repr(e)

    def _safe_links(self):
        try:
            return json.dumps(list(self.links().values()))
        except Exception as e:
            return repr(e)


class Pump:
    """Drive many non-blocking client sockets at once with one selector.

    Each connection sends its payload, half-closes, and reads until EOF.
    """

    def __init__(self):
        self.sel = selectors.DefaultSelector()
        self.conns = []

    def add(self, sock, payload):
        sock.setblocking(False)
        c = {"sock": sock, "out": memoryview(payload), "in": bytearray(),
             "eof": False, "shut": False, "err": None}
        self.conns.append(c)
        self.sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE,
                          c)

    def run(self, timeout):
        deadline = time.monotonic() + timeout
        open_ = len(self.conns)
        while open_ and time.monotonic() < deadline:
            for key, ev in self.sel.select(0.5):
                c = key.data
                s = c["sock"]
                try:
                    if ev & selectors.EVENT_WRITE and len(c["out"]):
                        n = s.send(c["out"][:1 << 16])
                        c["out"] = c["out"][n:]
                    if not len(c["out"]) and not c["shut"]:
                        s.shutdown(socket.SHUT_WR)
                        c["shut"] = True
                        self.sel.modify(s, selectors.EVENT_READ, c)
                    if ev & selectors.EVENT_READ:
                        b = s.recv(1 << 16)
                        if b:
                            c["in"] += b
                        else:
                            c["eof"] = True
                    if c["eof"] and c["shut"]:
                        self.sel.unregister(s)
                        open_ -= 1
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError as e:
                    c["err"] = e
                    self.sel.unregister(s)
                    open_ -= 1
        for c in self.conns:
            c["sock"].close()
        self.sel.close()
        return self.conns


def start_up(env, sshd, tunnels, timeout=15, **kw):
    """Start tunneld and wait (through tunctl) until every enabled tunnel
    is up."""
    d = env.start(tunnels, sshd=sshd, **kw)
    names = [t["name"] for t in tunnels if t.get("enabled", True)]
    code, out, err = d.tunctl("wait", *names, "--timeout", str(timeout))
    assert code == 0, (code, out, err)
    return d


def transfer_both_ways(p_up, p_down, data):
    """Push data to a sink behind p_up (it answers "LENGTH SHA256") and pull
    it from a source behind p_down; assert both arrived whole. Returns the
    seconds each direction took and the sink's reply."""
    digest = hashlib.sha256(data).hexdigest()
    t0 = time.monotonic()
    with connect(("127.0.0.1", p_up)) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        reply = recv_all(s).decode()
    dt_up = time.monotonic() - t0
    assert reply.split() == [str(len(data)), digest], reply
    t0 = time.monotonic()
    with connect(("127.0.0.1", p_down)) as s:
        got = recv_all(s)
    dt_down = time.monotonic() - t0
    assert len(got) == len(data), len(got)
    assert hashlib.sha256(got).hexdigest() == digest
    return dt_up, dt_down, reply


def local(name, listen, target, via="srv", **kw):
    """A local tunnel definition for tunnels.conf."""
    t = {"name": name, "type": "local", "via": via, "listen": listen,
         "target": target}
    t.update(kw)
    return t


def tcp_listen(port, host="127.0.0.1"):
    """A listen/target string for a TCP address."""
    if ":" in host:
        return "[%s]:%d" % (host, port)
    return "%s:%d" % (host, port)


def known_hosts_line(port, pub):
    """A known_hosts line for 127.0.0.1:port from "ssh-ed25519 AAAA... c"."""
    kt, blob = pub.split()[:2]
    return "[127.0.0.1]:%d %s %s\n" % (port, kt, blob)


# tunnels.conf defaults of the tests (user, identity and known_hosts are
# added per test).
DEFAULTS = {
    "user": "root",
    "host_key_policy": "strict",
    "connect_timeout": 5,
    "keepalive_interval": 5,
    "keepalive_count_max": 3,
    "backoff_initial": 0.2,
    "backoff_max": 2.0,
    "backoff_reset_after": 30,
    "connect_wait": 10,
}

# Short timers for the fault tests.
FAST = {
    "keepalive_interval": 1,
    "keepalive_count_max": 2,
    "connect_timeout": 3,
    "backoff_initial": 0.2,
    "backoff_max": 2.0,
}


# ---------------------------------------------------------------------------
# Remote and dynamic tunnels, SOCKS clients, a loopback HTTP server


def remote(name, listen, target, via="srv", **kw):
    """A remote (ssh -R) tunnel definition for tunnels.conf."""
    t = {"name": name, "type": "remote", "via": via, "listen": listen,
         "target": target}
    t.update(kw)
    return t


def dynamic(name, listen, via="srv", **kw):
    """A dynamic (ssh -D, SOCKS here) tunnel definition."""
    t = {"name": name, "type": "dynamic", "via": via, "listen": listen}
    t.update(kw)
    return t


def remote_dynamic(name, listen, via="srv", **kw):
    """A remote-dynamic (SOCKS on the far side) tunnel definition."""
    t = {"name": name, "type": "remote-dynamic", "via": via,
         "listen": listen}
    t.update(kw)
    return t


def listen_port(text):
    """The port of a LISTEN value such as "127.0.0.1:4242" or "[::1]:22"."""
    return int(str(text).rsplit(":", 1)[-1])


SOCKS5_REPLIES = {0: "succeeded", 1: "general failure",
                  2: "not allowed by ruleset", 3: "network unreachable",
                  4: "host unreachable", 5: "connection refused",
                  6: "TTL expired", 7: "command not supported",
                  8: "address type not supported"}


def _socks5_addr(host):
    """ATYP and address bytes for a SOCKS5 request."""
    try:
        return b"\x01" + socket.inet_pton(socket.AF_INET, host)
    except OSError:
        pass
    try:
        return b"\x04" + socket.inet_pton(socket.AF_INET6, host)
    except OSError:
        pass
    name = host.encode()
    return b"\x03" + bytes([len(name)]) + name


def socks5_handshake(s, host, port):
    """Run a SOCKS5 no-auth CONNECT on socket s.  Return the reply code
    (0 = success); raise EOFError if the server closed instead."""
    s.sendall(b"\x05\x01\x00")
    m = recv_exact(s, 2)
    if m != b"\x05\x00":
        raise AssertionError("SOCKS5 method reply %r" % m)
    s.sendall(b"\x05\x01\x00" + _socks5_addr(host) + port.to_bytes(2, "big"))
    head = recv_exact(s, 4)
    assert head[0] == 5, "SOCKS5 reply version %r" % head
    atyp = head[3]
    if atyp == 1:
        recv_exact(s, 4 + 2)
    elif atyp == 4:
        recv_exact(s, 16 + 2)
    elif atyp == 3:
        n = recv_exact(s, 1)[0]
        recv_exact(s, n + 2)
    else:
        raise AssertionError("SOCKS5 reply address type %d" % atyp)
    return head[1]


def socks5_connect(proxy, host, port, timeout=15.0):
    """Connect to the SOCKS server at proxy (host, port); return
    (socket, reply code).  The socket is closed unless the code is 0."""
    s = connect(proxy, timeout=timeout)
    try:
        rep = socks5_handshake(s, host, port)
    except BaseException:
        s.close()
        raise
    if rep != 0:
        s.close()
        return None, rep
    return s, rep


def socks4_handshake(s, host, port, userid=b"e2e"):
    """SOCKS4 CONNECT (4a when host is not an IPv4 literal); return the
    reply code (90 = granted)."""
    try:
        ip = socket.inet_pton(socket.AF_INET, host)
        tail_ = b""
    except OSError:
        ip = b"\x00\x00\x00\x01"             # SOCKS4a: the name follows
        tail_ = host.encode() + b"\x00"
    s.sendall(b"\x04\x01" + port.to_bytes(2, "big") + ip + userid + b"\x00"
              + tail_)
    r = recv_exact(s, 8)
    assert r[0] == 0, "SOCKS4 reply version byte %r" % r
    return r[1]


def socks4_connect(proxy, host, port, timeout=15.0):
    s = connect(proxy, timeout=timeout)
    try:
        rep = socks4_handshake(s, host, port)
    except BaseException:
        s.close()
        raise
    if rep != 90:
        s.close()
        return None, rep
    return s, rep


def closed_without_reply(s, timeout=10.0):
    """True if the peer closes s (EOF or reset) without sending a byte;
    False if a byte arrives first.  Raises socket.timeout otherwise."""
    s.settimeout(timeout)
    try:
        b = s.recv(1)
    except (ConnectionResetError, ConnectionAbortedError):
        return True
    return b == b""


def run_cmd(cmd, data=None, timeout=30):
    """Run a command bounded in time; return (exit code, stdout, stderr)."""
    p = subprocess.run(cmd, input=data if data is not None else b"",
                       capture_output=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


def curl(*args, timeout=30):
    """curl -sS with a bounded time and no proxy from the environment."""
    e = dict(os.environ)
    for k in list(e):
        if k.lower() in ("http_proxy", "https_proxy", "all_proxy",
                         "no_proxy"):
            del e[k]
    p = subprocess.run(["curl", "-sS", "--noproxy", "",
                        "--max-time", str(int(timeout - 5))] + list(args),
                       capture_output=True, timeout=timeout,
                       stdin=subprocess.DEVNULL, env=e)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


class HttpServer:
    """python http.server on a loopback address, serving a directory with
    a random file "blob.bin" (its bytes in .blob)."""

    def __init__(self, root, host="127.0.0.1", size=256 << 10):
        import functools
        import http.server

        class Quiet(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *a):
                pass

        class V6Server(http.server.ThreadingHTTPServer):
            address_family = socket.AF_INET6

        os.makedirs(root, exist_ok=True)
        self.blob = os.urandom(size)
        with open(os.path.join(root, "blob.bin"), "wb") as f:
            f.write(self.blob)
        cls = V6Server if ":" in host else http.server.ThreadingHTTPServer
        cls.daemon_threads = True
        self.httpd = cls((host, 0),
                         functools.partial(Quiet, directory=root))
        self.host = host
        self.port = self.httpd.server_address[1]
        self._t = threading.Thread(target=self.httpd.serve_forever,
                                   kwargs={"poll_interval": 0.2},
                                   daemon=True)
        self._t.start()

    def url(self, path="/blob.bin", host=None):
        h = host or self.host
        if ":" in h:
            h = "[%s]" % h
        return "http://%s:%d%s" % (h, self.port, path)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self._t.join(5)
