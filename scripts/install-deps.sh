#!/bin/sh
# Install the Debian packages tunneld needs to build and test, when missing.
# Used by `make check`, `make demo` and .ci/run; safe to run again.
set -e
# systemd: systemd.pc (make install's unit, sysusers.d and tmpfiles.d
# directories), and systemd-analyze, -sysusers and -tmpfiles, which
# tests/e2e/test_install.py runs offline on a staged install.
# systemd-container: systemd-nspawn, which boots the host's /usr in a
# container for tests/e2e/test_systemd.py (tunneld under a real systemd).
# dropbear-bin: the second SSH server of the end-to-end tests (only the
# programs; the package "dropbear" would add a service).
# debhelper, dpkg-dev, lintian: make deb (debian/; Rules-Requires-Root: no,
# so no fakeroot), which tests/e2e/test_deb.py installs in such a
# container; util-linux: flock. nftables: the loss of make bench's WAN
# section. cmake, libssl-dev, zlib1g-dev, patch, xz-utils: make
# LIBSSH=patched (scripts/libssh-patched.sh builds Debian's libssh source,
# fetched with apt-get source, with third_party/libssh/patches); strace:
# bench/libssh_bench.py profile. prometheus: promtool, which
# tests/e2e/test_metrics.py runs on tunneld's metrics (the package's
# service is kept down by policy-rc.d, below).
PKGS="build-essential pkg-config clang libssh-dev libevent-dev libconfig-dev
libsystemd-dev libcmocka-dev openssh-server openssh-client socat
netcat-openbsd curl python3-pytest iproute2 procps autossh
systemd systemd-container dropbear-bin
debhelper dpkg-dev lintian util-linux nftables
cmake libssl-dev zlib1g-dev patch xz-utils strace prometheus"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "install-deps: missing packages:$missing (run as root to install)" >&2
	exit 1
fi
echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# openssh-server's postinst may try to start sshd; policy-rc.d keeps it down.
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -qq --no-install-recommends $missing
