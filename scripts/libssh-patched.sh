#!/bin/sh
# libssh-patched.sh: Debian's libssh source for this release, with the
# series of third_party/libssh/patches/ applied, built as a static library
# beside the tree (never installed). Used by `make LIBSSH=patched` and
# `make libssh-test`.
#
#   sh scripts/libssh-patched.sh DIR build    fetch, patch, build DIR/build/src/libssh.a
#   sh scripts/libssh-patched.sh DIR test     the same, then libssh's unit tests
#   sh scripts/libssh-patched.sh DIR flags    print -I flags and libraries to link with
#
# DIR (build-libssh by default) keeps:
#   DIR/src/      what `apt-get source libssh=VERSION` fetched and unpacked
#                 (Debian's patches, its CVE fixes among them, applied);
#                 fetched once per VERSION, the installed libssh-4's
#   DIR/tree/     a copy of it with our series applied
#   DIR/build/    the cmake build (static library, cmocka unit tests)
# A second run with the same VERSION and the same series fetches and builds
# nothing: DIR/tree/.series holds the checksum of the series it was made
# with, and cmake rebuilds only what changed.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-build-libssh}
what=${2:-build}
case $dir in /*) ;; *) dir=$top/$dir ;; esac
pdir=$top/third_party/libssh/patches

# The libssh-4 this machine runs: the patched build is the same release.
version=$(dpkg-query -W -f='${Version}' libssh-4 2>/dev/null || true)
if [ -z "$version" ]; then
	echo "libssh-patched: libssh-4 is not installed (scripts/install-deps.sh)" >&2
	exit 1
fi
upver=${version%%-*}
upver=${upver#*:}

log() { echo "libssh-patched: $*" >&2; }

# Add deb-src entries for the mirrors apt already uses, when none exist.
add_deb_src() {
	if grep -Eqs '^[[:space:]]*(deb-src|Types:.*deb-src)' \
	    /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
	    /etc/apt/sources.list.d/*.sources; then
		return 0
	fi
	if [ "$(id -u)" != 0 ]; then
		log "no deb-src line in apt's sources (run as root to add one)"
		exit 1
	fi
	f=/etc/apt/sources.list.d/tunneld-deb-src
	if [ -f /etc/apt/sources.list.d/debian.sources ]; then
		sed -e 's/^Types:.*/Types: deb-src/' \
		    /etc/apt/sources.list.d/debian.sources > $f.sources
		log "added $f.sources"
	elif [ -f /etc/apt/sources.list ]; then
		sed -n -e 's/^[[:space:]]*deb[[:space:]]/deb-src /p' \
		    /etc/apt/sources.list > $f.list
		log "added $f.list"
	else
		log "no apt source to derive a deb-src line from"
		exit 1
	fi
	apt-get update -qq
}

# apt-get source libssh=$1 into $dir/src; 1 when apt could not fetch it.
get_source() {
	rm -rf "$dir/src"
	mkdir -p "$dir/src"
	log "apt-get source libssh=$1"
	(cd "$dir/src" && apt-get source -qq "libssh=$1" >"$dir/src.log" 2>&1)
}

# Fetch the source of the installed version once. Some mirrors do not
# serve the security archive's sources: then the newest version apt can
# fetch is used, and what it lacks (the installed package's changelog
# entries above its own) is printed and kept in $dir/src/MISSING.
fetch() {
	if [ -f "$dir/src/.version" ] && [ "$(cat "$dir/src/.version")" = "$version" ]; then
		return 0
	fi
	add_deb_src
	got=$version
	if ! get_source "$version"; then
		apt-get update -qq || true
		if ! get_source "$version"; then
			log "cannot fetch libssh $version's source:"
			grep -E '^(E|W):' "$dir/src.log" | head -3 >&2
			got=$(apt-cache showsrc libssh | sed -n 's/^Version: //p' |
			    sort -V -r | while read -r v; do
				[ "$v" != "$version" ] && echo "$v" && break
			    done)
			[ -n "$got" ] && get_source "$got" || {
				cat "$dir/src.log" >&2; exit 1; }
		fi
	fi
	[ -d "$dir/src/libssh-$upver" ] || { log "no $dir/src/libssh-$upver"; exit 1; }
	if [ "$got" != "$version" ]; then
		zcat /usr/share/doc/libssh-4/changelog.Debian.gz |
		    sed -n "1,/^libssh ($got)/p" | sed '$d' > "$dir/src/MISSING"
		log "WARNING: built from libssh $got, not the installed $version;"
		log "WARNING: it lacks these changes ($dir/src/MISSING):"
		grep -E '^\s+\* ' "$dir/src/MISSING" >&2 || true
	fi
	echo "$version" > "$dir/src/.version"
	echo "$got" > "$dir/src/.fetched"
}

# The patches to apply: the series, or its first $LIBSSH_PATCHES (to
# measure the series patch by patch).
patches() {
	grep -v '^#' "$pdir/series" | head -n "${LIBSSH_PATCHES:-10000}"
}

# What the tree and its build are made from: the patches and this script.
series_sum() {
	(cd "$pdir" && cat $(patches) /dev/null; patches; cat "$top/scripts/libssh-patched.sh") |
	    sha256sum | cut -d' ' -f1
}

patch_tree() {
	sum=$(series_sum)-$version
	if [ -f "$dir/tree/.series" ] && [ "$(cat "$dir/tree/.series")" = "$sum" ]; then
		return 0
	fi
	rm -rf "$dir/tree" "$dir/build"
	cp -a "$dir/src/libssh-$upver" "$dir/tree"
	for p in $(patches); do
		log "applying $p"
		patch -d "$dir/tree" -p1 -s --no-backup-if-mismatch < "$pdir/$p"
	done
	echo "$sum" > "$dir/tree/.series"
}

build() {
	if [ ! -f "$dir/build/CMakeCache.txt" ]; then
		mkdir -p "$dir/build"
		# As Debian configures it, less GSSAPI (tunneld does not use
		# it); with the unit tests, which link the static library
		# (ssh-static, libssh.a) that tunneld links too. (Not
		# BUILD_SHARED_LIBS=OFF: both targets would then write
		# libssh.a, at the same time under -j.)
		(cd "$dir/build" && cmake -S "$dir/tree" -B . \
		    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		    -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 -g -DNDEBUG" \
		    -DBUILD_STATIC_LIB=ON \
		    -DWITH_GSSAPI=OFF -DWITH_EXAMPLES=OFF -DWITH_SFTP=ON \
		    -DWITH_SERVER=ON -DWITH_PCAP=ON -DWITH_ZLIB=ON \
		    -DUNIT_TESTING=ON -DCLIENT_TESTING=OFF \
		    -DSERVER_TESTING=OFF >cmake.log 2>&1) || {
			tail -30 "$dir/build/cmake.log" >&2; exit 1; }
	fi
	cmake --build "$dir/build" -j "$(nproc)" >"$dir/build/make.log" 2>&1 || {
		grep -E 'error|Error' "$dir/build/make.log" | head -30 >&2; exit 1; }
	[ -f "$dir/build/src/libssh.a" ] || { log "no libssh.a built"; exit 1; }
}

case $what in
build)
	fetch; patch_tree; build
	;;
test)
	fetch; patch_tree; build
	# torture_misc's timeout tests sleep 30-50 ms and allow a few ms
	# of slack: on a loaded machine they fail alone; a test passes if
	# one of three runs does.
	cd "$dir/build" && ctest --output-on-failure -R '^torture_' \
	    -j "$(nproc)" --repeat until-pass:3
	;;
flags)
	echo "-I$dir/tree/include -I$dir/build/include"
	echo "$dir/build/src/libssh.a -lcrypto -lz"
	;;
*)
	echo "usage: libssh-patched.sh DIR build|test|flags" >&2
	exit 2
	;;
esac
