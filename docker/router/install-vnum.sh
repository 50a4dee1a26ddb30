#!/bin/sh
# Installs vnum from its packed tarball with production dependencies only, at
# exactly the versions of the project's package-lock.json. One recipe, three
# users: the router image (docker/router/Dockerfile runs it in its build
# stage), an install beside an existing Asterisk (docs/operator-guide.md), and
# CI (test/unit/ship-router.test.ts replays it in a temporary folder).
#
#   install-vnum.sh <vnum-x.y.z.tgz> <package-lock.json> <prefix> [<bindir>]
#
# <prefix> gets the package (dist/, dialplan/, ...) and node_modules/; with
# <bindir>, <bindir>/vnum links to the CLI. Replaces a previous <prefix>.
#
# better-sqlite3 is the one dependency with native code: its install step
# fetches a prebuilt binary when it can and otherwise compiles (python3, make
# and a C++ compiler needed then; the router image's build stage has them).
set -eu

if [ $# -lt 3 ] || [ $# -gt 4 ]; then
  echo "usage: $0 <vnum-x.y.z.tgz> <package-lock.json> <prefix> [<bindir>]" >&2
  exit 2
fi
tarball=$1
lock=$2
prefix=$3
bindir=${4:-}

[ -f "$tarball" ] || { echo "install-vnum: no tarball $tarball" >&2; exit 1; }
[ -f "$lock" ] || { echo "install-vnum: no lockfile $lock" >&2; exit 1; }

# Absolute, so that the link in <bindir> works from anywhere.
mkdir -p "$(dirname "$prefix")"
prefix="$(cd "$(dirname "$prefix")" && pwd)/$(basename "$prefix")"
staging="$prefix.installing.$$"
rm -rf "$staging"
mkdir -p "$staging"
trap 'rm -rf "$staging"' EXIT

tar -xzf "$tarball" -C "$staging" --strip-components=1 --no-same-owner
cp "$lock" "$staging/package-lock.json"

# npm ci: the lockfile's versions or a failure, never a fresh resolution.
# --ignore-scripts: the package's own `prepare` (a TypeScript build) must not
# run, dist/ is already in the tarball; then only better-sqlite3's install
# step runs, through `npm rebuild`.
(
  cd "$staging"
  npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error
  npm rebuild better-sqlite3 --loglevel=error
)
chmod 0755 "$staging/dist/src/cli/main.js"

rm -rf "$prefix"
mv "$staging" "$prefix"
trap - EXIT

if [ -n "$bindir" ]; then
  mkdir -p "$bindir"
  ln -sfn "$prefix/dist/src/cli/main.js" "$bindir/vnum"
fi
echo "installed: vnum $(node "$prefix/dist/src/cli/main.js" --version) in $prefix"
