#!/usr/bin/env bash
# Installs Asterisk 22 into a Debian sid system: the debootstrap root that the
# end-to-end tests run (test/e2e/provision.sh chroots into it and runs this),
# and later a Docker image `FROM debian:sid` (RUN this file). One file, so the
# tests exercise exactly what the image will ship.
#
# Idempotent: when every package is already installed it changes nothing.
set -euo pipefail

# asterisk-core-sounds-en-gsm: the stock English prompts (ss-noservice and
# friends) that the dialplan plays when it refuses a call. GSM is the format
# the Debian asterisk package itself recommends; codec_gsm (asterisk-modules)
# transcodes it to whatever the caller negotiated.
PACKAGES=(asterisk asterisk-modules asterisk-core-sounds-en-gsm)

export DEBIAN_FRONTEND=noninteractive

missing=()
for pkg in "${PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done

if ((${#missing[@]} > 0)); then
  # A chroot or image has no init: keep maintainer scripts from starting a
  # daemon that nothing would ever stop. Only ours is removed afterwards.
  policy=/usr/sbin/policy-rc.d
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    trap 'rm -f "$policy"' EXIT
  fi
  # sid's Release file is often past its Valid-Until date on mirrors and
  # snapshots; apt refuses such a file unless told not to check.
  apt-get -o Acquire::Check-Valid-Until=false update
  apt-get install -y --no-install-recommends "${missing[@]}"
  apt-get clean
  rm -rf /var/lib/apt/lists/*
fi

# The daemon runs as the package's own user and needs its run directory.
install -d -o asterisk -g asterisk -m 0750 /var/run/asterisk

echo "installed: $(asterisk -V)"
