#!/usr/bin/env bash
# Prepares this host for the end-to-end tests: a Debian sid root holding
# Asterisk 22 (Debian 12 has no asterisk package, and sid's packages need a
# newer libc than the host's, so they live in a debootstrap root run via
# chroot), plus sipp on the host as the carrier on both sides of a call.
#
# Idempotent and safe to interrupt: the root is built in a temporary folder
# and renamed into place only when complete; a stamp holding the hash of the
# install script says which recipe built it, and a different hash rebuilds.
#
#   sudo test/support/asterisk/provision.sh   # builds or reuses .cache/asterisk-root
#   VNUM_ASTERISK_ROOT=/x test/support/asterisk/provision.sh
#   VNUM_DEBIAN_MIRROR=http://... test/support/asterisk/provision.sh
#
# Exit status: 0 ready; 1 impossible here (the message says why).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)
install_script="$repo/docker/asterisk/install-asterisk.sh"
root=${VNUM_ASTERISK_ROOT:-$repo/.cache/asterisk-root}
cache=$(dirname "$root")
stamp_name=.vnum-provisioned

fail() { echo "provision: $*" >&2; exit 1; }
log() { echo "provision: $*" >&2; }

[[ $(id -u) -eq 0 ]] || fail "must run as root (debootstrap, chroot and mount need it)"
[[ -f "$install_script" ]] || fail "missing $install_script"

want_stamp="install-asterisk.sh sha256 $(sha256sum "$install_script" | cut -d' ' -f1)"

# Fast path: a finished root built by this very recipe, and sipp on the host.
if [[ -f "$root/$stamp_name" && "$(cat "$root/$stamp_name")" == "$want_stamp" ]] &&
  command -v sipp >/dev/null && command -v debootstrap >/dev/null; then
  log "reusing $root"
  exit 0
fi

mkdir -p "$cache"
# Two runs at once (two test processes) must not build over each other.
exec 9>"$cache/.provision.lock"
flock 9

# --- host packages ---------------------------------------------------------
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v sipp >/dev/null || need+=(sip-tester)
if ((${#need[@]} > 0)); then
  log "installing host packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || fail "apt-get update failed: is the Debian mirror reachable?"
  apt-get install -y -qq --no-install-recommends "${need[@]}" ||
    fail "could not install ${need[*]}"
fi

# Another run may have finished the root while we waited for the lock.
if [[ -f "$root/$stamp_name" && "$(cat "$root/$stamp_name")" == "$want_stamp" ]]; then
  log "reusing $root"
  exit 0
fi

# --- mirror ----------------------------------------------------------------
mirror=${VNUM_DEBIAN_MIRROR:-}
if [[ -z "$mirror" ]]; then
  sources=/etc/apt/sources.list.d/debian.sources
  [[ -r "$sources" ]] || fail "no $sources to take the Debian mirror from (set VNUM_DEBIAN_MIRROR)"
  # The first URIs: line is the main archive (the security archive comes after).
  mirror=$(awk '/^URIs:/ { print $2; exit }' "$sources")
  [[ -n "$mirror" ]] || fail "no URIs: line in $sources (set VNUM_DEBIAN_MIRROR)"
fi
mirror=${mirror%/}

probe=$(mktemp)
if ! timeout 30 /usr/lib/apt/apt-helper -o Acquire::http::Timeout=10 \
  download-file "$mirror/dists/sid/Release" "$probe" >/dev/null 2>&1; then
  rm -f "$probe"
  fail "Debian mirror $mirror is unreachable (could not fetch dists/sid/Release)"
fi
rm -f "$probe"

# --- build -----------------------------------------------------------------
umount_proc() { if mountpoint -q "$1/proc"; then umount "$1/proc" || umount -l "$1/proc"; fi; }

# Never rm -rf a tree with proc mounted in it.
remove_tree() {
  if [[ -d "$1" ]]; then
    umount_proc "$1"
    rm -rf --one-file-system "$1"
  else
    rm -f "$1"
  fi
}

# Leftovers of interrupted runs.
for old in "$cache"/asterisk-root.build.* "$cache"/asterisk-root.old.*; do
  [[ -e "$old" ]] && remove_tree "$old"
done

build=$(mktemp -d "$cache/asterisk-root.build.XXXXXX")
trap 'remove_tree "$build"; rm -f "$build.log"' EXIT
trap 'exit 130' INT TERM
chmod 755 "$build"

started=$(date +%s)
log "debootstrap sid from $mirror into $build"
debootstrap --variant=minbase sid "$build" "$mirror" >"$build.log" 2>&1 || {
  tail -n 30 "$build.log" >&2
  rm -f "$build.log"
  fail "debootstrap failed"
}
rm -f "$build.log"

# apt inside the root resolves the mirror like the host does...
cp /etc/resolv.conf "$build/etc/resolv.conf"
mount -t proc proc "$build/proc"
install -m 0755 "$install_script" "$build/tmp/install-asterisk.sh"
log "installing Asterisk in the root"
chroot "$build" /tmp/install-asterisk.sh >&2
rm -f "$build/tmp/install-asterisk.sh"
umount_proc "$build"

# ...but Asterisk must not: the stock resolver here never answers, and every
# lookup then blocks PJSIP threads. 127.0.0.1 makes lookups fail at once.
echo "nameserver 127.0.0.1" >"$build/etc/resolv.conf"

echo "$want_stamp" >"$build/$stamp_name"

# Swap in atomically-enough: rename is atomic; the old tree goes afterwards.
if [[ -e "$root" ]]; then
  old="$cache/asterisk-root.old.$$"
  umount_proc "$root"
  mv "$root" "$old"
  mv "$build" "$root"
  remove_tree "$old"
else
  mv "$build" "$root"
fi
trap - EXIT
log "ready: $root ($(($(date +%s) - started)) s)"
