#!/bin/sh
# libssh-patched.sh: Debian's libssh source for this release, with the
# series of third_party/libssh/patches/ applied, built as a static library
# beside the tree (never installed). Used by `make LIBSSH=patched` and
# `make libssh-test`.
#
#   sh scripts/libssh-patched.sh DIR build    fetch, patch, build DIR/build/src/libssh.a
#   sh scripts/libssh-patched.sh DIR test     the same, then libssh's unit tests
#                                  on an ASan build of it (DIR/build-asan)
#   sh scripts/libssh-patched.sh DIR flags    print -I flags and libraries to link with
#   sh scripts/libssh-patched.sh DIR scope BIN
#                                  check that BIN holds no SFTP/SCP code
#
# DIR (build-libssh by default) keeps:
#   DIR/src/      what `apt-get source libssh=VERSION` fetched and unpacked
#                 (Debian's patches, its CVE fixes among them, applied);
#                 fetched once per VERSION, the installed libssh-4's
#   DIR/tree/     a copy of it with our series applied: first, when the
#                 source fetched is the one third_party/libssh/security/
#                 was written for (the mirror lacked the installed
#                 version's), our own fixes for the CVEs it lacks; then
#                 the receive-path series
#   DIR/build/    the cmake build tunneld links (static library, -O2)
#   DIR/build-asan/ the same under AddressSanitizer, with libssh's cmocka
#                 unit tests (make libssh-test only)
# A second run with the same VERSION and the same series fetches and builds
# nothing: DIR/tree/.series holds the checksum of the series it was made
# with, and cmake rebuilds only what changed.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-build-libssh}
what=${2:-build}
case $dir in /*) ;; *) dir=$top/$dir ;; esac
pdir=$top/third_party/libssh/patches
sdir=$top/third_party/libssh/security

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
# entries above its own) is kept in $dir/src/MISSING (report_missing
# prints it, with what third_party/libssh/security/ covers of it).
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
	rm -f "$dir/src/MISSING"
	if [ "$got" != "$version" ]; then
		zcat /usr/share/doc/libssh-4/changelog.Debian.gz |
		    sed -n "1,/^libssh ($got)/p" | sed '$d' > "$dir/src/MISSING"
	fi
	echo "$version" > "$dir/src/.version"
	echo "$got" > "$dir/src/.fetched"
}

# The source fetched, and the one the security series was written for.
fetched() { cat "$dir/src/.fetched" 2>/dev/null || echo "$version"; }
security_base() {
	sed -n 's/^#[[:space:]]*base:[[:space:]]*//p' "$sdir/series"
}

# Our own CVE fixes to apply first: the security series when the source
# fetched is its base (the mirror had not the installed version's source),
# none otherwise (the installed version's source carries Debian's fixes).
security_patches() {
	[ "$(fetched)" != "$version" ] &&
	    [ "$(fetched)" = "$(security_base)" ] || return 0
	grep -v '^#' "$sdir/series"
}

# The patches to apply: the series, or its first $LIBSSH_PATCHES (to
# measure the series patch by patch).
patches() {
	grep -v '^#' "$pdir/series" | head -n "${LIBSSH_PATCHES:-10000}"
}

# What the tree and its build are made from: both series, their patches
# and this script.
series_sum() {
	( (cd "$sdir" && cat series $(security_patches) /dev/null)
	  security_patches
	  (cd "$pdir" && cat $(patches) /dev/null); patches
	  cat "$top/scripts/libssh-patched.sh" ) |
	    sha256sum | cut -d' ' -f1
}

# When the source is not the installed version's: say what it lacks
# (DIR/src/MISSING, the installed package's changelog entries above its
# own) and, CVE by CVE, what of it the security series replaces.
report_missing() {
	[ -s "$dir/src/MISSING" ] || return 0
	log "WARNING: built from libssh $(fetched), not the installed $version:"
	log "WARNING: the mirror serves no source of the latter. What it lacks"
	log "WARNING: is in $dir/src/MISSING."
	cves=$(grep -oE 'CVE-[0-9]+-[0-9]+' "$dir/src/MISSING" | sort -u)
	if [ -z "$(security_patches)" ]; then
		log "WARNING: third_party/libssh/security/ is written for libssh"
		log "WARNING: $(security_base), not $(fetched): not applied; none"
		log "WARNING: of these fixes is in this build: $(echo $cves)"
		return 0
	fi
	log "WARNING: its CVE fixes are replaced by the project's own patches,"
	log "WARNING: third_party/libssh/security/series (not Debian's code):"
	uncovered=0
	for c in $cves; do
		p=$(security_patches | grep -F -- "$c-" | head -1)
		r=$(sed -n "s/^#[[:space:]]*not-patched:[[:space:]]*$c[[:space:]]*//p" \
		    "$sdir/series")
		if [ -n "$p" ]; then
			log "  $c: fixed by security/$p"
		elif [ -n "$r" ]; then
			log "  $c: not patched: $r"
		else
			log "  $c: NOT COVERED"
			uncovered=$((uncovered + 1))
		fi
	done
	[ "$uncovered" = 0 ] ||
	    log "WARNING: $uncovered CVE fix(es) of $version missing from this build"
}

patch_tree() {
	sum=$(series_sum)-$version-$(fetched)
	if [ -f "$dir/tree/.series" ] && [ "$(cat "$dir/tree/.series")" = "$sum" ]; then
		return 0
	fi
	report_missing
	rm -rf "$dir/tree" "$dir/build" "$dir/build-asan"
	cp -a "$dir/src/libssh-$upver" "$dir/tree"
	for p in $(security_patches); do
		log "applying security/$p"
		patch -d "$dir/tree" -p1 -s --no-backup-if-mismatch < "$sdir/$p"
	done
	for p in $(patches); do
		log "applying $p"
		patch -d "$dir/tree" -p1 -s --no-backup-if-mismatch < "$pdir/$p"
	done
	echo "$sum" > "$dir/tree/.series"
}

# The SFTP and SCP CVEs of deb12u3 are not patched (security/series)
# because that code is not in tunneld: fail if BIN defines any of it.
scope() {
	bin=$1
	[ -f "$bin" ] || { log "scope: no $bin (build it first)"; exit 1; }
	found=$(nm "$bin" | awk '$2 != "U" && $2 != "w" && $2 != "v" &&
	    $3 ~ /^(sftp_|ssh_scp_|scp_)/ { print $3 }' | sort -u)
	if [ -n "$found" ]; then
		log "scope: $bin holds SFTP/SCP code, whose CVE fixes of"
		log "scope: libssh $version third_party/libssh/security/ does not"
		log "scope: carry (CVE-2026-0964, -0968, -3731, -59844, -59848):"
		echo "$found" | head -20 >&2
		exit 1
	fi
	echo "libssh-patched: scope: $bin holds no sftp_/ssh_scp_/scp_ symbol" >&2
}

# cmake_build SUBDIR ARGS...: configure $dir/SUBDIR once, as Debian does
# less GSSAPI (tunneld does not use it), then build it. (Not
# BUILD_SHARED_LIBS=OFF: the shared and the static targets would then
# both write libssh.a, at the same time under -j.)
cmake_build() {
	b=$dir/$1
	shift
	if [ ! -f "$b/CMakeCache.txt" ]; then
		mkdir -p "$b"
		(cd "$b" && cmake -S "$dir/tree" -B . -DBUILD_STATIC_LIB=ON \
		    -DWITH_GSSAPI=OFF -DWITH_EXAMPLES=OFF -DWITH_SFTP=ON \
		    -DWITH_SERVER=ON -DWITH_PCAP=ON -DWITH_ZLIB=ON \
		    -DCLIENT_TESTING=OFF -DSERVER_TESTING=OFF "$@" \
		    >cmake.log 2>&1) || { tail -30 "$b/cmake.log" >&2; exit 1; }
	fi
	cmake --build "$b" -j "$(nproc)" >"$b/make.log" 2>&1 || {
		grep -E 'error|Error' "$b/make.log" | head -30 >&2; exit 1; }
	[ -f "$b/src/libssh.a" ] || { log "no $b/src/libssh.a built"; exit 1; }
}

# The static library tunneld links (-O2, no unit tests).
build() {
	cmake_build build -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DCMAKE_C_FLAGS_RELWITHDEBINFO="-O2 -g -DNDEBUG" -DUNIT_TESTING=OFF
}

# The same source under AddressSanitizer (and LeakSanitizer), with
# libssh's cmocka unit tests: libssh's own AddressSanitizer build type.
build_asan() {
	cmake_build build-asan -DCMAKE_BUILD_TYPE=AddressSanitizer \
	    -DUNIT_TESTING=ON
}

case $what in
build)
	fetch; patch_tree; build
	;;
test)
	fetch; patch_tree; build; build_asan
	# torture_misc's timeout tests sleep 30-50 ms and allow a few ms
	# of slack: on a loaded machine they fail alone; a test passes if
	# one of three runs does. A sanitizer report fails its test.
	cd "$dir/build-asan" && ASAN_OPTIONS=detect_leaks=1 \
	    ctest --output-on-failure -R '^torture_' -j "$(nproc)" \
	    --repeat until-pass:3
	;;
flags)
	echo "-I$dir/tree/include -I$dir/build/include"
	echo "$dir/build/src/libssh.a -lcrypto -lz"
	;;
scope)
	scope "${3:-build-patched/tunneld}"
	;;
*)
	echo "usage: libssh-patched.sh DIR build|test|flags|scope [BIN]" >&2
	exit 2
	;;
esac
