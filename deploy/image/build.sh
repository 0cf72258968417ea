#!/usr/bin/env bash
# Builds the novanet-agent container image (novanet-agent, novanetctl and
# novanet-cni)
# from this checkout, without pulling a base image: a release build, the
# binaries with exactly the shared libraries they load (ldd), CA
# certificates for an https API server, assembled with buildah from
# scratch. Then runs `novanet-agent --version` inside it with podman.
#
#   deploy/image/build.sh [TAG]     (default novanet-agent:dev)
#
# Needs root, buildah and podman (Debian packages). The Dockerfile beside
# this script builds the same image where base images can be pulled.
set -euo pipefail
cd "$(dirname "$0")/../.."
tag=${1:-novanet-agent:dev}
cargo build --release -q -p novanet-agent -p novanetctl -p novanet-cni
target=${CARGO_TARGET_DIR:-target}/release
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/bin" "$root/etc/ssl/certs" "$root/tmp" "$root/run/novaroute" "$root/etc/novanet"
for bin in novanet-agent novanetctl novanet-cni; do
  install -m 0755 "$target/$bin" "$root/usr/bin/$bin"
  # The dynamic loader and every library the binary loads, at their paths.
  for lib in $(ldd "$target/$bin" | grep -o '/[^ ]*'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
done
cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/" 2>/dev/null || true
printf 'root:x:0:0:root:/root:/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\n' > "$root/etc/group"
chmod 1777 "$root/tmp"
version=$("$target/novanet-agent" --version | awk '{print $2}')
ctr=$(buildah from scratch)
trap 'rm -rf "$root"; buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
buildah copy "$ctr" "$root" / >/dev/null
buildah config \
  --entrypoint '["/usr/bin/novanet-agent"]' \
  --cmd '--config /etc/novanet/novanet.json' \
  --env PATH=/usr/bin \
  --label org.opencontainers.image.title=novanet-agent \
  --label org.opencontainers.image.version="$version" \
  --label org.opencontainers.image.description="NovaNet native routing node agent (BGP, BFD, kernel FIB), novanetctl and novanet-cni" \
  "$ctr"
buildah commit -q "$ctr" "$tag" >/dev/null
echo "built $tag ($version)"
# runc, and no default ulimits: sandboxes whose hard limits are below
# podman's defaults refuse them, and crun refuses hybrid cgroup hierarchies.
conf=$(mktemp)
trap 'rm -rf "$root" "$conf"; buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
printf '[containers]\ndefault_ulimits = []\n' > "$conf"
run() { CONTAINERS_CONF=$conf podman --runtime runc run --rm --network none "$@"; }
echo "--- podman run --rm $tag --version"
out=$(run "$tag" --version)
echo "$out"
[ "$out" = "novanet-agent $version" ] || { echo "unexpected: $out" >&2; exit 1; }
run --entrypoint /usr/bin/novanetctl "$tag" --version
run --entrypoint /usr/bin/novanet-cni "$tag" --version
run "$tag" --help > /dev/null
