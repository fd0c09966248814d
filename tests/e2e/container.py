"""A real systemd, booted in a container, for the tunneld end-to-end tests.

    ctr = Container(dir, overlays=[("/usr", stage + "/usr")],
                    binds=[(keys_dir, "/e2e/keys")])
    ctr.boot()                     # returns once systemd has finished start-up
    ctr.run("systemctl", "start", "tunneld")
    ctr.write("/etc/tunnels.conf", text)
    s = ctr.in_net(socket.create_connection, ("127.0.0.1", 7))
    ctr.stop()                     # always: by PID, the container goes away

systemd-nspawn (package systemd-container) boots the host's own /usr with
a tmpfs root (--volatile=yes): /etc and /var start empty, and systemd fills
them at its first boot (sysusers, tmpfiles, the presets), so nothing of the
host's /etc or /var is seen or changed.  --private-network: the container
has its own loopback only.  --register=no --keep-unit: no machined, no new
scope; the container is stopped by signalling the nspawn process we
started, and every process inside dies with the container's PID namespace.

Files come in read-only: an overlay on /usr (a staged "make install" on top
of the host's /usr, so that the units' /usr/sbin/tunneld exists) and bind
mounts of test directories.  A bind mount needs its target to exist in the
image, and the image's /usr is the host's: /usr/sbin/tunneld does not exist
there, hence the overlay.

At first boot the presets enable what the host's packages install (ssh,
systemd-networkd-wait-online, ...).  Given to PID 1 on its command line,
systemd.mask= masks a unit from the start (in a container, systemd reads
its "kernel command line" from PID 1's arguments): ssh.service and
ssh.socket (the tests run their own sshd), and
systemd-networkd-wait-online.service, which network-online.target pulls in
(tunneld.service wants that target) and which would hold the start of
tunneld for its 2-minute timeout, the container's only link being lo.
systemd.firstboot=off skips the first-boot wizard, which would wait for an
answer on the console.

Commands run inside with nsenter into the container's mount, UTS, IPC,
network and PID namespaces (not its cgroup: they are short-lived and
bounded in time; long-running programs inside are started with systemd-run
and so belong to the container's systemd).  in_net() runs a Python
function in a thread that joined the container's network namespace:
sockets it creates live there (an echo server, a client) whichever thread
uses them afterwards.
"""

import ctypes
import os
import signal
import subprocess
import threading
import time

import e2elib

NSPAWN = "/usr/bin/systemd-nspawn"
NSENTER = "/usr/bin/nsenter"
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
MASKED = ("ssh.service", "ssh.socket",
          "systemd-networkd-wait-online.service",
          # Nothing of these is needed; the first would hold the console.
          "console-getty.service", "apt-daily.timer",
          "apt-daily-upgrade.timer", "man-db.timer",
          "e2scrub_all.timer", "fstrim.timer", "dpkg-db-backup.timer")

_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    """In the child before exec: SIGTERM when the test process dies, so
    that a killed test run does not leave its container behind."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def available():
    """None if a container can be booted here, else why not."""
    if os.geteuid() != 0:
        return "not root"
    if not os.access(NSPAWN, os.X_OK):
        return "%s missing (apt-get install systemd-container)" % NSPAWN
    if not os.access("/usr/lib/systemd/systemd", os.X_OK):
        return "no /usr/lib/systemd/systemd"
    return None


class Container:
    def __init__(self, workdir, name=None, overlays=(), binds=(),
                 masked=MASKED):
        """overlays: [(dest, upper)]: upper read-only over the host's dest.
        binds: [(host path, container path)], read-only."""
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        # The machine name is the hostname and the name of nspawn's
        # /run/systemd/nspawn/propagate/<name>: unique per run, so that
        # parallel runs never share it.
        self.name = name or "tde2e-%d" % os.getpid()
        self.log = os.path.join(workdir, "container.log")
        self.overlays = list(overlays)
        self.binds = list(binds)
        self.masked = list(masked)
        self.proc = None
        self.pid1 = None           # the container's systemd, as seen here
        self.boot_seconds = None

    # -- life ---------------------------------------------------------------

    def argv(self):
        a = [NSPAWN, "-D", "/", "--volatile=yes", "--register=no",
             "--keep-unit", "--private-network", "--machine=" + self.name,
             "--console=read-only"]
        for dest, upper in self.overlays:
            a.append("--overlay-ro=%s:%s:%s" % (dest, upper, dest))
        for src, dst in self.binds:
            a.append("--bind-ro=%s:%s" % (src, dst))
        a += ["/usr/lib/systemd/systemd", "systemd.firstboot=off"]
        a += ["systemd.mask=%s" % u for u in self.masked]
        return a

    def boot(self, timeout=60.0):
        """Start the container and wait until its systemd has finished
        start-up (is-system-running: running or degraded)."""
        assert self.proc is None
        t0 = time.monotonic()
        with open(self.log, "w") as logf:
            logf.write("=== %s\n" % " ".join(self.argv()))
            logf.flush()
            self.proc = subprocess.Popen(self.argv(),
                                         stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=logf,
                                         preexec_fn=_die_with_parent)
        try:
            deadline = t0 + timeout
            while self.pid1 is None:
                if self.proc.poll() is not None:
                    raise RuntimeError("systemd-nspawn exited %s:\n%s" %
                                       (self.proc.returncode, self.tail()))
                if time.monotonic() > deadline:
                    raise RuntimeError("no systemd in the container after "
                                       "%.0fs:\n%s" % (timeout, self.tail()))
                self.pid1 = self._find_pid1()
                if self.pid1 is None:
                    time.sleep(0.05)
            state = ""
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError("systemd-nspawn exited %s:\n%s" %
                                       (self.proc.returncode, self.tail()))
                left = max(1, int(deadline - time.monotonic()))
                r = self.run("systemctl", "is-system-running", "--wait",
                             check=False, timeout=left + 5)
                state = r.stdout.strip()
                if state in ("running", "degraded"):
                    break
                time.sleep(0.1)         # no bus yet: "offline", try again
            else:
                raise RuntimeError("container start-up: %r after %.0fs:\n%s"
                                   % (state, timeout, self.tail()))
            self.state = state
        except BaseException:
            self.stop()
            raise
        self.boot_seconds = time.monotonic() - t0
        return self

    def _find_pid1(self):
        """The systemd that nspawn forked (nspawn's child)."""
        try:
            with open("/proc/%d/task/%d/children" %
                      (self.proc.pid, self.proc.pid)) as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            return None
        for k in kids:
            try:
                with open("/proc/%d/comm" % k) as f:
                    if f.read().strip() == "systemd":
                        return k
            except OSError:
                pass
        return None

    def stop(self, timeout=20.0):
        """Power the container off (SIGRTMIN+4 to its systemd), then
        SIGTERM, then SIGKILL to nspawn: by PID, never by name."""
        if self.proc is None:
            return
        pid = self.proc.pid
        steps = []
        if self.pid1 is not None:
            steps.append((self.pid1, signal.SIGRTMIN + 4, timeout))
        steps += [(pid, signal.SIGTERM, 10.0), (pid, signal.SIGKILL, 10.0)]
        for target, sig, wait in steps:
            if self.proc.poll() is not None:
                break
            try:
                os.kill(target, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                continue
        self.proc.wait(10)
        self.proc = None
        self.pid1 = None

    def tail(self, n=60):
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    # -- inside ---------------------------------------------------------------

    def nsenter(self):
        assert self.pid1 is not None, "container not running"
        return [NSENTER, "-t", str(self.pid1), "-m", "-u", "-i", "-n", "-p",
                "--"]

    def run(self, *cmd, input=None, check=True, timeout=30):
        """Run cmd inside; a CompletedProcess with text stdout/stderr."""
        p = subprocess.run(self.nsenter() + [str(c) for c in cmd],
                           input=input if input is not None else "",
                           capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError("in the container: %s: exit %d\n%s%s" %
                               (" ".join(map(str, cmd)), p.returncode,
                                p.stdout, p.stderr))
        return p

    def sh(self, script, **kw):
        return self.run("/bin/sh", "-ec", script, **kw)

    def write(self, path, text, mode="0644", owner="root:root"):
        """Write a file inside (its directories are made as root)."""
        self.run("/bin/sh", "-ec",
                 'mkdir -p "$(dirname "$1")"; cat > "$1.tmp"; '
                 'chmod "$2" "$1.tmp"; chown "$3" "$1.tmp"; '
                 'mv -f "$1.tmp" "$1"', "sh", path, mode, owner,
                 input=text)

    def systemctl(self, *args, check=True, timeout=60):
        return self.run("systemctl", "--no-pager", *args, check=check,
                        timeout=timeout)

    def show(self, unit, *props):
        """{property: value} of systemctl show."""
        r = self.systemctl("show", unit,
                           *["-p" + p for p in props])
        out = {}
        for line in r.stdout.splitlines():
            k, _, v = line.partition("=")
            out[k] = v
        return out

    def journal(self, unit, lines=80):
        r = self.run("journalctl", "--no-pager", "-o", "short-precise",
                     "-n", str(lines), "-u", unit, check=False)
        return r.stdout + r.stderr

    def in_net(self, fn, *args, timeout=30.0):
        """Call fn(*args) in a thread that joined the container's network
        namespace; return what it returns (or raise what it raised)."""
        out = {}
        path = "/proc/%d/ns/net" % self.pid1

        def go():
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    if _libc.setns(fd, CLONE_NEWNET) != 0:
                        e = ctypes.get_errno()
                        raise OSError(e, "setns %s: %s" %
                                      (path, os.strerror(e)))
                finally:
                    os.close(fd)
                out["v"] = fn(*args)
            except BaseException as e:      # handed to the caller
                out["e"] = e
        t = threading.Thread(target=go, daemon=True, name="ctr-net")
        t.start()
        t.join(timeout)
        if t.is_alive():
            raise TimeoutError("in_net(%s) still running after %.0fs" %
                               (getattr(fn, "__name__", fn), timeout))
        if "e" in out:
            raise out["e"]
        return out["v"]

    def start_sshd(self, port, keys_dir="/e2e/keys"):
        """An OpenSSH sshd inside, on 127.0.0.1:port, as the unit
        test-sshd (systemd-run), with the host key and authorized_keys
        bound in at keys_dir; returns once it listens. The first boot
        locked root's password ("!" in /etc/shadow), which sshd refuses
        even for a key: "*" (no password) opens it."""
        self.run("systemd-sysusers", "--inline",
                 'u sshd - "sshd privilege separation" /run/sshd')
        self.run("usermod", "-p", "*", "root")
        self.write("/etc/ssh/e2e_sshd_config", "\n".join([
            "ListenAddress 127.0.0.1",
            "Port %d" % port,
            "HostKey %s/ssh_host_ed25519_key" % keys_dir,
            "AuthorizedKeysFile %s/authorized_keys" % keys_dir,
            "StrictModes no", "UsePAM no",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no",
            "AllowTcpForwarding yes", "PermitTTY no", "UseDNS no",
            "LogLevel VERBOSE", ""]))
        self.run("systemd-run", "--unit=test-sshd", "-p",
                 "RuntimeDirectory=sshd", "/usr/sbin/sshd", "-D", "-e", "-f",
                 "/etc/ssh/e2e_sshd_config")
        assert self.in_net(e2elib.wait_port, port, "127.0.0.1", 10.0,
                           timeout=20), "sshd in the container does not " \
            "listen:\n" + self.journal("test-sshd.service")

    def wait_for(self, pred, timeout, what, interval=0.1):
        """Poll pred() until it is true; return its value or fail."""
        deadline = time.monotonic() + timeout
        while True:
            v = pred()
            if v:
                return v
            if time.monotonic() > deadline:
                raise AssertionError("timed out after %.1fs waiting for %s"
                                     % (timeout, what))
            time.sleep(interval)
