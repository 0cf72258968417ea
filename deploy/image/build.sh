#!/usr/bin/env bash
# Builds the novanet-agent container image (novanet-agent, novanetctl,
# novanet-cni, and FRR's vtysh, which the OSPF mode drives the ospfd
# sidecar with) from this checkout, without pulling a base image: a release
# build, the binaries with exactly the shared libraries they load (ldd), CA
# certificates for an https API server, assembled with buildah from
# scratch. Then runs `novanet-agent --version` inside it with podman.
#
#   deploy/image/build.sh [TAG]     (default novanet-agent:dev)
#
# Needs root, buildah, podman and frr (Debian packages). The Dockerfile beside
# this script builds the same image where base images can be pulled.
set -euo pipefail
cd "$(dirname "$0")/../.."
tag=${1:-novanet-agent:dev}
cargo build --release -q -p novanet-agent -p novanetctl -p novanet-cni
target=${CARGO_TARGET_DIR:-target}/release
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/bin" "$root/etc/ssl/certs" "$root/tmp" "$root/run/novaroute" "$root/etc/novanet"
vtysh=$(command -v vtysh) || { echo "vtysh (Debian package frr) is needed for the OSPF mode" >&2; exit 1; }
for bin in "$target/novanet-agent" "$target/novanetctl" "$target/novanet-cni" "$vtysh"; do
  install -m 0755 "$bin" "$root/usr/bin/$(basename "$bin")"
  # The dynamic loader and every library the binary loads, at their paths.
  for lib in $(ldd "$bin" | grep -o '/[^ ]*'); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
done
# vtysh reads /etc/frr/vtysh.conf when it starts; without PAM in the
# image, root is let in without a password (the agent runs vtysh as root).
mkdir -p "$root/etc/frr"
printf 'username root nopassword\n' > "$root/etc/frr/vtysh.conf"
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
  --label org.opencontainers.image.description="NovaNet native routing node agent (BGP, BFD, kernel FIB, OSPF through an ospfd sidecar), novanetctl, novanet-cni and vtysh" \
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
# The image's vtysh talks to a real ospfd through a mounted socket
# directory, as the agent container does to the sidecar's.
inst=novanet-image-$$
frr_dir=/var/run/frr/$inst
mkdir -p "$frr_dir" "/etc/frr/$inst"
: > "/etc/frr/$inst/ospfd.conf"
chown -R frr:frr "$frr_dir" "/etc/frr/$inst"
stop_ospfd() { [ -f "$frr_dir/ospfd.pid" ] && kill "$(cat "$frr_dir/ospfd.pid")" 2>/dev/null; rm -rf "$frr_dir" "/etc/frr/$inst"; }
trap 'stop_ospfd; rm -rf "$root" "$conf"; buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
/usr/lib/frr/ospfd -d -N "$inst" -u frr -g frr -f "/etc/frr/$inst/ospfd.conf" -i "$frr_dir/ospfd.pid" --log syslog
for _ in $(seq 100); do [ -S "$frr_dir/ospfd.vty" ] && break; sleep 0.1; done
vty=$(run -v "$frr_dir:/run/frr" --entrypoint /usr/bin/vtysh "$tag" --vty_socket /run/frr -c 'show ip ospf neighbor json' -c 'show version' 2>&1) \
  || { echo "vtysh in the image cannot drive ospfd: $vty" >&2; exit 1; }
echo "$vty" | grep -m1 '^FRRouting' || { echo "no version from vtysh: $vty" >&2; exit 1; }
