#!/bin/sh
# libssh_steps.sh: the patched libssh after each patch of the series, for
# the profile of docs/benchmarks.md ("libssh receive path"): for K = 0 (no
# patch) .. N, libssh with the first K patches in build-libssh-pK (libssh's
# unit tests run on each), and tunneld linked against it in
# build-patched-pK. Then, with STEPS_PROFILE=1, bench/libssh_bench.py
# profile over all of them and the system's libssh (build-patched-sys).
#
#   sh bench/libssh_steps.sh [FIRST [LAST]]     (K from FIRST to LAST)
set -eu
cd "$(dirname "$0")/.."
n=${2:-$(grep -vc '^#' third_party/libssh/patches/series)}
# One fetch for all: the source build-libssh/ already holds.
[ -f build-libssh/src/.version ] || sh scripts/libssh-patched.sh build-libssh build
k=${1:-0}
bins=""
while [ "$k" -le "$n" ]; do
	d=build-libssh-p$k
	b=build-patched-p$k
	if [ ! -f "$d/src/.version" ]; then
		mkdir -p "$d"
		cp -a build-libssh/src "$d/src"
	fi
	echo "== $k patch(es): $d"
	LIBSSH_PATCHES=$k sh scripts/libssh-patched.sh "$d" test >"$d/test.log" 2>&1 ||
	    echo "!! libssh's unit tests failed with $k patch(es): $d/test.log"
	grep -E 'tests passed|tests failed' "$d/test.log" || true
	[ -f "$d/build/src/libssh.a" ] || exit 1
	make -s LIBSSH=patched B="$b" BA="build-asan-patched-p$k" \
	    LIBSSH_DIR="$d" "$b/tunneld" "$b/tunctl"
	bins="$bins p$k=$b/tunneld"
	k=$((k + 1))
done
if [ "${STEPS_PROFILE:-0}" = 1 ]; then
	make -s B=build-patched-sys BA=build-asan-patched-sys \
	    build-patched-sys/tunneld build-patched-sys/tunctl \
	    build-patched-sys/loadgen
	mkdir -p build-patched
	cc -O2 -Wall -Wextra -shared -fPIC -o build-patched/copycount.so \
	    bench/copycount.c -ldl
	LOADGEN_BIN=$PWD/build-patched-sys/loadgen \
	    python3 bench/libssh_bench.py profile sys=build-patched-sys/tunneld \
	    $bins --bytes "${STEPS_MIB:-1024}"
fi
