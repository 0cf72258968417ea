#!/usr/bin/env bash
# Builds the upstream kube-apiserver and etcd from their published Go
# modules (conformance/kube-apiserver: k8s.io/kubernetes with every staging
# module pinned to its release) into a cache keyed by the module's files,
# and links them as /usr/local/lib/novanet-tools/bin/{kube-apiserver,etcd}.
# A second run with the same files builds nothing.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
src="$here/conformance/kube-apiserver"
key="$(cat "$src/go.mod" "$src/go.sum" "$src"/cmd/*/main.go | sha256sum | cut -c1-16)"
cache="${NOVANET_KUBE_CACHE:-/var/cache/novanet/kube-apiserver}/$key"
bin=/usr/local/lib/novanet-tools/bin
if [ ! -x "$cache/kube-apiserver" ] || [ ! -x "$cache/etcd" ]; then
  echo "building kube-apiserver and etcd from Go modules (once per version)"
  mkdir -p "$cache.tmp"
  (cd "$src" && GOFLAGS=-mod=readonly go build -trimpath -ldflags='-s -w' -o "$cache.tmp/" ./cmd/kube-apiserver ./cmd/etcd)
  rm -rf "$cache" && mv "$cache.tmp" "$cache"
fi
mkdir -p "$bin"
ln -sf "$cache/kube-apiserver" "$bin/kube-apiserver"
ln -sf "$cache/etcd" "$bin/etcd"
