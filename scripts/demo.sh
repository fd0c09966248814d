#!/bin/sh
# demo.sh: a throw-away sshd on loopback, an echo server, a tiny HTTP
# server, and tunneld with conf/demo.conf (local, remote, dynamic and
# remote-dynamic tunnels); shows tunctl status and links, moves data through
# every tunnel (socat for the plain ones, curl through the SOCKS ones), and
# stops everything it started.  Run as root (make demo).
set -eu

cd "$(dirname "$0")/.."
TOP=$(pwd)
D=/tmp/tunneld-demo
SOCK=$D/control.sock
TUNNELD=${TUNNELD:-$TOP/build/tunneld}
TUNCTL=${TUNCTL:-$TOP/build/tunctl}
SSHD=/usr/sbin/sshd
SSH_PORT=2222
ECHO_PORT=18081
HTTP_PORT=18086
PIDS=""		# everything we started, stopped in reverse order
TUNNELD_PID=""
FAILED=0

say() { printf '\n== %s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

# port_busy PORT [HOST]: true if something accepts connections there.
port_busy() { nc -z -w 1 "${2:-127.0.0.1}" "$1" >/dev/null 2>&1; }

# wait_port HOST PORT: wait up to 10 s for a listener.
wait_port() {
	i=0
	while ! nc -z -w 1 "$1" "$2" >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -lt 100 ] || die "nothing listens on $1 port $2"
		sleep 0.1
	done
}

# shellcheck disable=SC2317  # (called by the EXIT trap)
cleanup() {
	set +e
	if [ -n "$TUNNELD_PID" ] && kill -0 "$TUNNELD_PID" 2>/dev/null; then
		kill -TERM "$TUNNELD_PID"
		wait "$TUNNELD_PID"
		echo "tunneld stopped (exit $?)"
	fi
	for p in $PIDS; do
		kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null
	done
	rm -rf "$D"
}

[ "$(id -u)" = 0 ] || die "run me as root (the demo starts an sshd)"
if [ ! -x "$TUNNELD" ] || [ ! -x "$TUNCTL" ]; then
	die "build first: make"
fi
for t in ssh-keygen socat nc curl python3 sha256sum "$SSHD"; do
	command -v "$t" >/dev/null || die "$t is missing (make deps)"
done
[ -f conf/demo.conf ] || die "conf/demo.conf is missing"

rm -rf "$D"
mkdir -p "$D" /run/sshd
chmod 700 "$D"
trap cleanup EXIT
trap 'exit 130' INT TERM

say "keys"
ssh-keygen -q -t ed25519 -N '' -C tunneld-demo-host -f "$D/ssh_host_ed25519_key"
ssh-keygen -q -t ed25519 -N '' -C tunneld-demo -f "$D/id_ed25519"
cp "$D/id_ed25519.pub" "$D/authorized_keys"
ssh-keygen -l -f "$D/ssh_host_ed25519_key.pub"

# The demo's configuration, with another sshd port if 2222 is taken.
cp conf/demo.conf "$D/demo.conf"
if port_busy $SSH_PORT; then
	p=$SSH_PORT
	while port_busy $p; do p=$((p + 1)); done
	echo "port $SSH_PORT is taken: the demo sshd uses $p"
	sed -i "s/\\b$SSH_PORT\\b/$p/g" "$D/demo.conf"
	SSH_PORT=$p
fi
# The inner sshd (reached through the first: host inner, jump demo).
INNER_PORT=$((SSH_PORT + 1))
while port_busy $INNER_PORT; do INNER_PORT=$((INNER_PORT + 1)); done
sed -i "/^  inner: {/,/};/ s/port *= *[0-9]*;/port            = $INNER_PORT;/" \
    "$D/demo.conf"
for p in 18080 18082 18083 18084 18085 18087 $ECHO_PORT $HTTP_PORT; do
	! port_busy "$p" || die "port $p is taken; conf/demo.conf needs it"
done

say "sshd on 127.0.0.1:$SSH_PORT"
cat >"$D/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $SSH_PORT
HostKey $D/ssh_host_ed25519_key
PidFile $D/sshd.pid
AuthorizedKeysFile $D/authorized_keys
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowTcpForwarding yes
AllowStreamLocalForwarding yes
PermitTTY no
LogLevel VERBOSE
EOF
$SSHD -D -e -f "$D/sshd_config" 2>"$D/sshd.log" &
PIDS="$! $PIDS"
wait_port 127.0.0.1 $SSH_PORT

say "a second sshd on 127.0.0.1:$INNER_PORT, reached through the first"
sed -e "s/^Port .*/Port $INNER_PORT/" -e "s|^PidFile .*|PidFile $D/sshd2.pid|" \
    "$D/sshd_config" >"$D/sshd2_config"
$SSHD -D -e -f "$D/sshd2_config" 2>"$D/sshd2.log" &
PIDS="$! $PIDS"
wait_port 127.0.0.1 $INNER_PORT

say "echo servers on 127.0.0.1:$ECHO_PORT and [::1]:$ECHO_PORT (socat)"
socat TCP4-LISTEN:$ECHO_PORT,bind=127.0.0.1,reuseaddr,fork EXEC:cat &
PIDS="$! $PIDS"
socat TCP6-LISTEN:$ECHO_PORT,bind='[::1]',reuseaddr,fork,ipv6only=1 EXEC:cat &
PIDS="$! $PIDS"
wait_port 127.0.0.1 $ECHO_PORT
wait_port ::1 $ECHO_PORT

say "a tiny HTTP server on 127.0.0.1:$HTTP_PORT (python3 -m http.server)"
mkdir -p "$D/www"
python3 -m http.server --bind 127.0.0.1 --directory "$D/www" $HTTP_PORT \
    >"$D/http.log" 2>&1 &
PIDS="$! $PIDS"
wait_port 127.0.0.1 $HTTP_PORT

say "tunneld -d -f $D/demo.conf"
"$TUNNELD" -d -f "$D/demo.conf" 2>"$D/tunneld.log" &
TUNNELD_PID=$!
i=0
until [ -S "$SOCK" ]; do
	i=$((i + 1))
	if [ $i -ge 100 ] || ! kill -0 $TUNNELD_PID 2>/dev/null; then
		cat "$D/tunneld.log" >&2
		die "tunneld did not start"
	fi
	sleep 0.1
done

# Every enabled tunnel of the file, by name.
NAMES=$(sed -n '/^[[:space:]]*#/d; s/.*name *= *"\([^"]*\)".*/\1/p' "$D/demo.conf" | tr '\n' ' ')
say "tunctl wait $NAMES--timeout 20"
# shellcheck disable=SC2086
if ! "$TUNCTL" -s "$SOCK" wait $NAMES --timeout 20; then
	FAILED=1
	echo "not all tunnels came up; the daemon log says:"
	tail -n 30 "$D/tunneld.log"
fi

say "tunctl status"
"$TUNCTL" -s "$SOCK" status || true
say "tunctl links"
"$TUNCTL" -s "$SOCK" links || true
say "known_hosts learned under host_key_policy accept-new"
if grep -q "$(cut -d' ' -f2 "$D/ssh_host_ed25519_key.pub")" \
    "$D/known_hosts" 2>/dev/null; then
	cat "$D/known_hosts"
else
	echo "FAILED: the sshd's host key was not written to $D/known_hosts"
	FAILED=1
fi

# socat address for a LISTEN column value: path, [v6]:port or v4:port.
addr_of() {
	case "$1" in
	/*) echo "UNIX-CONNECT:$1" ;;
	\[*) echo "TCP6:$1" ;;
	*:*) echo "TCP4:$1" ;;
	*) echo "TCP4:127.0.0.1:$1" ;;
	esac
}

say "data through each tunnel"
head -c 4194304 /dev/urandom >"$D/blob"
want=$(sha256sum <"$D/blob" | cut -d' ' -f1)
cp "$D/blob" "$D/www/blob"
# The SOCKS tunnels fetch it from the HTTP server, the name "localhost"
# resolved by whoever makes the connection: the sshd for dynamic, this
# machine for remote-dynamic.
URL=http://localhost:$HTTP_PORT/blob
"$TUNCTL" -s "$SOCK" status | awk 'NR > 1 && $1 != "" { print $1, $2, $4 }' |
while read -r name type listen; do
	case "$type" in
	local|remote)
		a=$(addr_of "$listen")
		got=$(printf 'hello through %s\n' "$name" |
		    socat -t 5 -T 10 - "$a" 2>&1) || true
		printf '%-8s %-6s %-24s sent "hello through %s", got back "%s"\n' \
		    "$name" "$type" "$listen" "$name" "$got"
		sum=$(socat -t 5 -T 20 - "$a" <"$D/blob" 2>/dev/null |
		    sha256sum | cut -d' ' -f1)
		if [ "$got" = "hello through $name" ] && [ "$sum" = "$want" ]; then
			echo "         4 MiB of random bytes echoed intact"
		else
			echo "         FAILED (4 MiB: sha256 $sum, want $want)"
			echo x >>"$D/failed"
		fi
		;;
	dynamic|remote-dynamic)
		case "$listen" in
		*:*) proxy=$listen ;;
		*) proxy=127.0.0.1:$listen ;;
		esac
		for how in --socks5-hostname --socks4a; do
			sum=$(curl -sS --max-time 20 "$how" "$proxy" "$URL" |
			    sha256sum | cut -d' ' -f1)
			printf '%-8s %-14s curl %s %s %s\n' "$name" "$type" \
			    "$how" "$proxy" "$URL"
			if [ "$sum" = "$want" ]; then
				echo "         4 MiB fetched intact"
			else
				echo "         FAILED (sha256 $sum, want $want)"
				echo x >>"$D/failed"
			fi
		done
		# A closed port: the SOCKS server answers with a failure.
		if curl -sS --max-time 10 --socks5-hostname "$proxy" \
		    http://localhost:9/ >/dev/null 2>"$D/curl.err"; then
			echo "         FAILED: a closed port was reported open"
			echo x >>"$D/failed"
		else
			echo "         closed port 9: $(cat "$D/curl.err")"
		fi
		;;
	*)
		echo "$name: no data test for type $type in this demo"
		;;
	esac
done
[ ! -f "$D/failed" ] || FAILED=1

say "tunctl status (bytes counted)"
"$TUNCTL" -s "$SOCK" status || true

say "stopping"
kill -TERM $TUNNELD_PID
if wait $TUNNELD_PID; then
	echo "tunneld exited 0"
else
	echo "tunneld exited $?"
	FAILED=1
fi
TUNNELD_PID=""
[ ! -e "$SOCK" ] || { echo "control socket left behind"; FAILED=1; }

if [ $FAILED = 0 ]; then
	say "demo ok"
else
	say "demo FAILED (daemon log below)"
	tail -n 40 "$D/tunneld.log"
fi
exit $FAILED
