#!/bin/sh
# make deb: the Debian package of this tree (debian/), built from a copy of
# it in DIR (default build-deb), so that nothing is written in the tree:
#   DIR/tunneld_VERSION_ARCH.deb           the package
#   DIR/tunneld-dbgsym_VERSION_ARCH.deb    its debugging symbols
#   DIR/tunneld_VERSION.dsc, .tar.xz       the source package
#   DIR/tunneld_VERSION_ARCH.changes       what lintian then checks
# The copy holds the files git knows or would add (the work tree as it is,
# edits included; what .gitignore excludes, the build directories, is left
# out). When they have not changed since the last build in DIR, the build
# is skipped (and lintian too, if it passed on it). LINTIAN=no skips
# lintian; otherwise an error, or a warning that no
# debian/*.lintian-overrides explains, fails.
#
#   sh scripts/deb.sh [DIR]
set -eu

dir=${1:-build-deb}
lint=${LINTIAN:-yes}
cd "$(dirname "$0")/.."

ver=$(dpkg-parsechangelog -l debian/changelog -S Version)
arch=$(dpkg-architecture -q DEB_HOST_ARCH)
src="$dir/tunneld-$ver"
changes="$dir/tunneld_${ver}_$arch.changes"
deb="$dir/tunneld_${ver}_$arch.deb"

# The tree's files as one tar stream on stdout (tar options in "$@").
tree() {
	if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
		git ls-files -z --cached --others --exclude-standard |
		    LC_ALL=C sort -z |
		    tar -c --null --ignore-failed-read --no-recursion \
			--owner=0 --group=0 --numeric-owner "$@" \
			-T - -f - 2>/dev/null
	else
		tar -c --exclude='./build*' --exclude=./.git \
		    --exclude=./.pytest_cache --sort=name \
		    --owner=0 --group=0 --numeric-owner "$@" -f - .
	fi
}

mkdir -p "$dir"
# One build at a time in DIR (the test of the package shares it).
exec 9>"$dir/.lock"
flock 9
# What the files hold, whatever their times.
sum=$(tree --mtime=@0 | sha256sum | cut -d' ' -f1)
if [ -f "$deb" ] && [ -f "$changes" ] && [ "$(cat "$dir/.tree" 2>/dev/null)" = "$sum" ]; then
	echo "deb: $deb is up to date"
else
	rm -rf "$src" "$dir/.tree" "$dir/.lintian"
	rm -f "$dir"/tunneld_* "$dir"/tunneld-dbgsym_*
	mkdir -p "$src"
	tree | tar -x -C "$src" -f -
	# -us -uc: unsigned; source and binary packages.
	(cd "$src" && dpkg-buildpackage -us -uc)
	echo "$sum" > "$dir/.tree"
	echo "deb: $deb"
fi

if [ "$lint" = no ]; then
	:
elif [ "$(cat "$dir/.lintian" 2>/dev/null)" = "$sum" ]; then
	echo "deb: lintian passed on this build before"
else
	# -I: the informational tags too; only errors and warnings fail.
	lintian -I --fail-on error,warning "$changes"
	echo "$sum" > "$dir/.lintian"
	echo "deb: lintian: no error, no unexplained warning"
fi
