#!/bin/sh
# Entrypoint of the vnum Asterisk image: turns AMI on for the router, then
# runs the command (CMD: Asterisk in the foreground).
#
# With VNUM_AMI_SECRET set (docker/compose.yaml passes it), writes the parts of
# manager.conf that belong to the deployment, into $VNUM_AMI_CONF_DIR
# (/var/lib/asterisk/vnum-ami), owner-only; manager.conf #tryincludes them:
#   general.conf  enabled = yes, bindaddr = $VNUM_ASTERISK_IP (the private
#                 network Asterisk shares with the router, nothing else)
#   user.conf     secret = $VNUM_AMI_SECRET, permit = $VNUM_ROUTER_IP only
# Everything else about the AMI user (read = call, write = call,reporting,
# the event filters) is fixed in manager.conf, as in
# dialplan/manager.sample.conf. Without VNUM_AMI_SECRET, AMI stays off.
# The secret leaves the environment before Asterisk starts.
#
# CI cannot run Docker: test/unit/ship-asterisk.test.ts runs this script as
# written, boots the image's configuration in a real Asterisk 22, and logs in
# with `vnum serve` as the compose file configures it.
set -eu

dir=${VNUM_AMI_CONF_DIR:-/var/lib/asterisk/vnum-ami}
umask 077
mkdir -p "$dir"
rm -f "$dir/general.conf" "$dir/user.conf"

fail() {
  echo "vnum-asterisk: $*" >&2
  exit 1
}

is_ipv4() {
  printf '%s' "$1" | grep -Eqx '([0-9]{1,3}\.){3}[0-9]{1,3}'
}

if [ -n "${VNUM_AMI_SECRET:-}" ]; then
  is_ipv4 "${VNUM_ASTERISK_IP:-}" || fail "VNUM_ASTERISK_IP must be Asterisk's IPv4 address on the router's network, got '${VNUM_ASTERISK_IP:-}'"
  is_ipv4 "${VNUM_ROUTER_IP:-}" || fail "VNUM_ROUTER_IP must be the router's IPv4 address, got '${VNUM_ROUTER_IP:-}'"
  # manager.conf syntax: ';' starts a comment, blanks are trimmed. What
  # `openssl rand -hex 24` prints is always safe.
  case $VNUM_AMI_SECRET in
    *[!A-Za-z0-9._~+/=-]*) fail 'VNUM_AMI_SECRET may hold only letters, digits and ._~+/=- (e.g. openssl rand -hex 24)' ;;
  esac
  [ "${#VNUM_AMI_SECRET}" -ge 16 ] || fail 'VNUM_AMI_SECRET must be at least 16 characters (e.g. openssl rand -hex 24)'
  printf 'enabled = yes\nbindaddr = %s\n' "$VNUM_ASTERISK_IP" >"$dir/general.conf"
  printf 'secret = %s\npermit = %s/255.255.255.255\n' "$VNUM_AMI_SECRET" "$VNUM_ROUTER_IP" >"$dir/user.conf"
fi
unset VNUM_AMI_SECRET

exec "$@"
