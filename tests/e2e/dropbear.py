"""Dropbear (Debian's dropbear-bin), the second SSH server the tests run
against: the server of OpenWrt routers and many small boxes.

Dropbear has no AuthorizedKeysFile option: it reads ~/.ssh/authorized_keys
of the user logging in (root here). So it runs in a mount namespace of its
own (unshare -m) with a private tmpfs on /root holding the test's
authorized_keys: the machine's /root is never touched, and every session
process (Dropbear forks one per connection) inherits that namespace.
The host key is the test's OpenSSH one, converted with dropbearconvert, so
the same known_hosts line serves both servers.

Like Sshd: start(), stop() (the listener and every session process),
restart(), freeze()/thaw(), sessions(), port and log.
"""

import os
import re
import subprocess
import time

from e2elib import Sshd, free_port, tail, wait_port

DROPBEAR_BIN = "/usr/sbin/dropbear"
CONVERT_BIN = "/usr/bin/dropbearconvert"

# unshare execs sh, sh execs dropbear: one PID from Popen to the listener.
_PRIVATE_ROOT = (
    'mount -t tmpfs -o mode=0700 tmpfs /root && '
    'mkdir -m 700 /root/.ssh && '
    'cp "$0" /root/.ssh/authorized_keys && '
    'chmod 600 /root/.ssh/authorized_keys && '
    'exec "$@"')


def available():
    """None, or why Dropbear cannot run here."""
    for b in (DROPBEAR_BIN, CONVERT_BIN):
        if not os.access(b, os.X_OK):
            return "%s is missing (make deps installs dropbear-bin)" % b
    return None


def version():
    """Dropbear's version, e.g. "2022.83"."""
    p = subprocess.run([DROPBEAR_BIN, "-V"], capture_output=True, text=True,
                       timeout=10)
    m = re.search(r"v(\d+\.\d+)", p.stdout + p.stderr)
    return m.group(1) if m else "?"


class Dropbear(Sshd):
    """A private Dropbear on 127.0.0.1:port, run with -F -E.

    options: Dropbear's own flags, e.g. ["-j"] (no local forwarding),
    ["-k"] (no remote forwarding), ["-a"] (remote forwards on every
    address)."""

    def __init__(self, workdir, host_key, authorized_keys, port=None,
                 options=()):
        os.makedirs(workdir, exist_ok=True)
        self.dir = workdir
        self.port = port or free_port()
        self.host_key = os.path.join(workdir, "dropbear_host_key")
        self.authorized_keys = authorized_keys
        self.options = list(options)
        self.log = os.path.join(workdir, "dropbear.log")
        self.pidfile = os.path.join(workdir, "dropbear.pid")
        self.proc = None
        self.frozen = []
        p = subprocess.run([CONVERT_BIN, "openssh", "dropbear", host_key,
                            self.host_key], capture_output=True, text=True,
                           timeout=30)
        assert p.returncode == 0, "dropbearconvert: %s" % p.stderr

    def start(self, timeout=10.0):
        assert self.proc is None, "dropbear already running"
        logf = open(self.log, "a")
        logf.write("=== dropbear start %s\n" % time.strftime("%T"))
        logf.flush()
        argv = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                _PRIVATE_ROOT, self.authorized_keys, DROPBEAR_BIN, "-F",
                "-E", "-s", "-p", "127.0.0.1:%d" % self.port, "-r",
                self.host_key, "-P", self.pidfile] + self.options
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=logf, stderr=logf)
        logf.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("dropbear exited %s:\n%s" %
                                   (self.proc.returncode, tail(self.log)))
            if wait_port(self.port, timeout=0.2):
                return self
            time.sleep(0.05)
        raise RuntimeError("dropbear did not listen on %d:\n%s" %
                           (self.port, tail(self.log)))

    def forward_ports(self):
        """The ports the session processes listen on for remote forwards."""
        return listening_ports(self.sessions())


def _socket_inodes(pid):
    inodes = set()
    try:
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                t = os.readlink("/proc/%d/fd/%s" % (pid, fd))
            except OSError:
                continue
            if t.startswith("socket:["):
                inodes.add(t[8:-1])
    except OSError:
        pass
    return inodes


def listening_ports(pids):
    """The TCP ports (IPv4 and IPv6) on which the processes pids listen."""
    inodes = set()
    for p in pids:
        inodes |= _socket_inodes(p)
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    col = line.split()
                    if col[3] == "0A" and col[9] in inodes:    # LISTEN
                        ports.add(int(col[1].rsplit(":", 1)[1], 16))
        except OSError:
            pass
    return ports
