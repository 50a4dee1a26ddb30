#!/usr/bin/env bash
# Installs Debian's prometheus package (prometheus and promtool) for the
# tests that check the alert rules and scrape vnum with a real Prometheus.
# Idempotent: nothing is done when both commands are there. Run as root.
#
#   sudo test/support/prometheus/install.sh
#
# Without recommends (12 packages instead of 37: no node-exporter, smartmontools
# or ipmitool). The package's own service is never started: Debian's
# policy-rc.d stops it here, and the tests run the binary themselves, on
# their own port and data folder. apt waits up to VNUM_APT_LOCK_WAIT seconds
# (default 600) for another apt or dpkg (a second test run, an unattended
# upgrade) to let go of its locks.
#
# Exit status: 0 ready; 1 impossible here (the message says why).
set -euo pipefail

fail() { echo "install-prometheus: $*" >&2; exit 1; }
log() { echo "install-prometheus: $*" >&2; }

if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  log "already installed: $(prometheus --version 2>&1 | head -1)"
  exit 0
fi
[[ $(id -u) -eq 0 ]] || fail "must run as root to install the prometheus package (or install it: apt-get install --no-install-recommends prometheus)"
command -v apt-get >/dev/null || fail "no apt-get: this script installs Debian's prometheus package"

wait_s=${VNUM_APT_LOCK_WAIT:-600}
[[ $wait_s =~ ^[0-9]{1,5}$ ]] || fail "VNUM_APT_LOCK_WAIT must be a whole number of seconds, got '$wait_s'"
export DEBIAN_FRONTEND=noninteractive
# Two of our own runs at once queue here, then re-check.
exec 9>/tmp/vnum-install-prometheus.lock
flock -w "$wait_s" 9 || fail "another install held /tmp/vnum-install-prometheus.lock for ${wait_s}s"
if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  log "installed meanwhile by another run"
  exit 0
fi

apt_opts=(-o "DPkg::Lock::Timeout=$wait_s" -o Acquire::Retries=3)
# apt-get update takes the lists lock, which DPkg::Lock::Timeout does not cover: try again while another apt holds it.
deadline=$((SECONDS + wait_s))
until out=$(apt-get "${apt_opts[@]}" update -qq 2>&1); do
  if grep -q 'Could not get lock' <<<"$out" && ((SECONDS < deadline)); then
    log "apt lists locked by another process; waiting"
    sleep 5
    continue
  fi
  fail "apt-get update failed: is the Debian mirror reachable?
$out"
done
log "installing prometheus (--no-install-recommends)"
apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends prometheus >/dev/null ||
  fail "apt-get install prometheus failed"
command -v prometheus >/dev/null && command -v promtool >/dev/null || fail "prometheus installed, but prometheus or promtool is not on PATH"
log "installed: $(prometheus --version 2>&1 | head -1)"
