#!/usr/bin/env bash
# Installs what the lab and the tests need on a Debian 12 machine: the real
# peers (FRR, BIRD, GoBGP, ExaBGP), iproute2, nftables, ping, clang.
# Idempotent: does nothing when everything is there.
set -euo pipefail
pkgs=(frr bird2 gobgpd exabgp nftables iputils-ping iproute2 clang)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The packaged FRR service is not used; the lab starts its own daemons.
systemctl disable --now frr >/dev/null 2>&1 || true
