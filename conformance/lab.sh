#!/usr/bin/env bash
# The lab: a small cluster in network namespaces.
#
#   conformance/lab.sh up [--kubernetes]   build, start, show routes and sessions, ping pod to pod
#   conformance/lab.sh status              show routes, sessions and pings again
#   conformance/lab.sh down                stop everything and remove the namespaces
#
# --kubernetes: the nodes find their address, PodCIDR and node mesh in a
# local Kubernetes API server (novanet-kube-api: the upstream kube-apiserver
# and etcd on 10.0.1.100, tor1's LAN) instead of a static list; kubectl
# changes to its Nodes (KUBECONFIG=$RUN/kube/admin.kubeconfig) move the mesh.
#
# Two FRR ToRs (AS 65001 on 10.0.1.0/24, AS 65002 on 10.0.2.0/24), three
# nodes attached to both, each running novanet-agent (per-node AS 65000 +
# last octet), peering with both ToRs and with each other (static node
# mesh), each with a pod wired by novanet-cni (as a runtime calls it) with an
# address from its node's PodCIDR. `status` shows each node's kernel routes
# and `novanetctl routing peers`, then pings pod to pod.
#
#            tor1 10.0.1.1 (br0)              tor2 10.0.2.1 (br0)
#              |        |        |              |        |        |
#   node-1 10.0.1.11  node-2 10.0.1.12  node-3 10.0.1.13   (eth1: 10.0.2.1x)
#      pod 10.244.1.x    pod 10.244.2.x    pod 10.244.3.x
set -euo pipefail
cd "$(dirname "$0")/.."
P=${NOVANET_LAB_PREFIX:-nvlab}
RUN=/tmp/$P
NODES=(1 2 3)
tors=("1 65001 10.0.1" "2 65002 10.0.2")

# The workspace's binaries, wherever cargo puts them (CARGO_TARGET_DIR).
BIN=$(realpath -m "${CARGO_TARGET_DIR:-target}")/debug

ns_of() { echo "$P-$1"; }

down() {
  for f in "$RUN"/*.pid; do
    [ -e "$f" ] || continue
    kill "$(cat "$f")" 2>/dev/null || true
  done
  sleep 1
  for f in "$RUN"/*.pid; do
    [ -e "$f" ] || continue
    kill -9 "$(cat "$f")" 2>/dev/null || true
  done
  for n in tor1 tor2 node1 node2 node3 pod1 pod2 pod3; do
    ip netns del "$(ns_of $n)" 2>/dev/null || true
  done
  rm -rf "/var/run/frr/$P-tor1" "/var/run/frr/$P-tor2" "/etc/frr/$P-tor1" "/etc/frr/$P-tor2" "$RUN"
}

status() {
  for i in "${NODES[@]}"; do
    echo "== node-$i: ip route (proto bgp)"
    ip -n "$(ns_of node$i)" route show proto bgp | sed 's/^/   /'
    echo "== node-$i: novanetctl routing peers"
    "$BIN"/novanetctl --socket "$RUN/node$i.sock" routing peers | sed 's/^/   /'
  done
  echo "== pod to pod across nodes"
  local failed=0
  for a in "${NODES[@]}"; do
    for b in "${NODES[@]}"; do
      [ "$a" = "$b" ] && continue
      local ip; ip=$(cat "$RUN/pod$b.ip" 2>/dev/null || echo "?")
      if ip netns exec "$(ns_of pod$a)" ping -n -c 3 -i 0.2 -W 1 "$ip" > "$RUN/ping-$a-$b.log" 2>&1; then
        echo "   pod-$a -> pod-$b ($ip): $(grep -o '[0-9]* received' "$RUN/ping-$a-$b.log")"
      else
        echo "   pod-$a -> pod-$b ($ip): FAILED"; failed=1
      fi
    done
  done
  return $failed
}

up() {
  local kubernetes=0
  [ "${1:-}" = "--kubernetes" ] && kubernetes=1
  [ "$(id -u)" = 0 ] || { echo "lab.sh: run as root (network namespaces)" >&2; exit 1; }
  ./scripts/install-deps.sh
  # Two builds: `--bin` would apply to every package named in one.
  cargo build -q -p novanet-agent -p novanetctl -p novanet-cni
  cargo build -q -p novanet-conformance --bin novanet-kube-api
  local b
  for b in novanet-agent novanetctl novanet-cni novanet-kube-api; do
    [ -x "$BIN/$b" ] || { echo "lab.sh: $BIN/$b was not built" >&2; exit 1; }
  done
  down
  mkdir -p "$RUN"
  local mesh=""
  for i in "${NODES[@]}"; do
    mesh+="{\"name\":\"node-$i\",\"ip\":\"10.0.1.1$i\",\"pod_cidr\":\"10.244.$i.0/24\"},"
  done
  for t in "${tors[@]}"; do
    read -r ti tas tnet <<<"$t"
    local ns; ns=$(ns_of tor$ti)
    ip netns add "$ns"; ip -n "$ns" link set lo up
    ip -n "$ns" link add br0 type bridge
    ip -n "$ns" addr add "$tnet.1/24" dev br0; ip -n "$ns" link set br0 up
  done
  for i in "${NODES[@]}"; do
    local node pod; node=$(ns_of node$i); pod=$(ns_of pod$i)
    ip netns add "$node"; ip -n "$node" link set lo up
    ip netns exec "$node" sysctl -qw net.ipv4.ip_forward=1
    for t in "${tors[@]}"; do
      read -r ti tas tnet <<<"$t"
      local ifn=eth$((ti - 1))
      ip link add "$ifn" netns "$node" type veth peer name "n$i" netns "$(ns_of tor$ti)"
      ip -n "$node" addr add "$tnet.1$i/24" dev "$ifn"; ip -n "$node" link set "$ifn" up
      ip -n "$(ns_of tor$ti)" link set "n$i" master br0; ip -n "$(ns_of tor$ti)" link set "n$i" up
    done
    # The pod's namespace; novanet-cni wires it once the agent runs.
    ip netns add "$pod"
  done
  for t in "${tors[@]}"; do
    read -r ti tas tnet <<<"$t"
    local ns; ns=$(ns_of tor$ti)
    mkdir -p "/var/run/frr/$ns" "/etc/frr/$ns"; : > "/etc/frr/$ns/vtysh.conf"
    {
      echo "hostname tor$ti"
      echo "router bgp $tas"
      echo " bgp router-id $tnet.1"
      echo " no bgp ebgp-requires-policy"
      echo " no bgp network import-check"
      for i in "${NODES[@]}"; do
        echo " neighbor $tnet.1$i remote-as $((65010 + i))"
        echo " neighbor $tnet.1$i timers 3 9"
        echo " neighbor $tnet.1$i timers connect 1"
      done
      echo " address-family ipv4 unicast"
      echo "  network 192.0.2.0/24"
      echo " exit-address-family"
    } > "$RUN/tor$ti.conf"
    echo "hostname tor$ti" > "$RUN/tor$ti-zebra.conf"
    ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
    chown -R frr:frr "/var/run/frr/$ns" "$RUN"
    # zebra installs the ToR's routes into its kernel: the ToRs forward.
    ip netns exec "$ns" /usr/lib/frr/zebra -d -N "$ns" -u frr -g frr -f "$RUN/tor$ti-zebra.conf" \
      -i "$RUN/tor$ti-zebra.pid" --log "file:$RUN/tor$ti-zebra.log"
    for _ in $(seq 50); do [ -S "/var/run/frr/$ns/zserv.api" ] && break; sleep 0.1; done
    ip netns exec "$ns" /usr/lib/frr/bgpd -d -N "$ns" -u frr -g frr -f "$RUN/tor$ti.conf" \
      -i "$RUN/tor$ti.pid" --log "file:$RUN/tor$ti.log"
  done
  local env=()
  if [ $kubernetes = 1 ]; then
    ip -n "$(ns_of tor1)" addr add 10.0.1.100/24 dev br0
    local args=()
    for i in "${NODES[@]}"; do args+=(--node "node-$i=10.0.1.1$i,10.244.$i.0/24"); done
    "$BIN"/novanet-kube-api --netns "$(ns_of tor1)" --listen 10.0.1.100:6443 --dir "$RUN/kube" \
      --kubeconfig "$RUN/kubeconfig" "${args[@]}" > "$RUN/kube-api.log" 2>&1 &
    echo $! > "$RUN/kube-api.pid"
    # kube-apiserver is ready within seconds; the kubeconfig is written then.
    for _ in $(seq 600); do [ -s "$RUN/kubeconfig" ] && break; sleep 0.1; done
    [ -s "$RUN/kubeconfig" ] || { echo "lab.sh: the API server did not start: $RUN/kube-api.log" >&2; exit 1; }
    env=(env "KUBECONFIG=$RUN/kubeconfig")
  fi
  for i in "${NODES[@]}"; do
    # From the API server the node takes its address and PodCIDR from its
    # Node and the mesh from every Node; otherwise both are written here.
    local own mesh_cfg
    if [ $kubernetes = 1 ]; then
      own=""
      mesh_cfg='{"enabled": true, "source": "kubernetes"}'
    else
      own="\"node_ip\": \"10.0.1.1$i\", \"pod_cidr\": \"10.244.$i.0/24\","
      mesh_cfg="{\"enabled\": true, \"source\": \"static\", \"nodes\": [${mesh%,}]}"
    fi
    cat > "$RUN/node$i.json" <<JSON
{
  "node_name": "node-$i", $own
  "metrics_address": "127.0.0.1:9102",
  "listen_socket": "$RUN/node$i.sock",
  "cni": {"enabled": true, "socket": "$RUN/node$i-cni.sock", "ipam_dir": "$RUN/node$i-ipam"},
  "routing": {
    "peers": [
      {"neighbor_address": "10.0.1.1", "remote_as": 65001, "description": "tor1", "hold_time": 9, "keepalive": 3},
      {"neighbor_address": "10.0.2.1", "remote_as": 65002, "description": "tor2", "hold_time": 9, "keepalive": 3}
    ],
    "node_mesh": $mesh_cfg
  }
}
JSON
    ip netns exec "$(ns_of node$i)" "${env[@]}" "$BIN"/novanet-agent --config "$RUN/node$i.json" \
      > "$RUN/node$i.log" 2>&1 &
    echo $! > "$RUN/node$i.pid"
  done
  # Each node's pod, through novanet-cni as a container runtime runs it.
  for i in "${NODES[@]}"; do
    for _ in $(seq 100); do [ -S "$RUN/node$i-cni.sock" ] && break; sleep 0.1; done
    local result
    result=$(echo "{\"cniVersion\": \"1.0.0\", \"name\": \"novanet\", \"type\": \"novanet-cni\", \"agent_socket\": \"$RUN/node$i-cni.sock\"}" |
      ip netns exec "$(ns_of node$i)" env CNI_COMMAND=ADD CNI_CONTAINERID="lab-pod-$i" \
        CNI_NETNS="/run/netns/$(ns_of pod$i)" CNI_IFNAME=eth0 CNI_PATH="$BIN" \
        CNI_ARGS="K8S_POD_NAMESPACE=default;K8S_POD_NAME=pod-$i" "$BIN"/novanet-cni) || {
      echo "novanet-cni ADD for pod-$i failed: $result" >&2; exit 1; }
    echo "$result" > "$RUN/pod$i.result"
    echo "$result" | grep -o '"address":"[0-9.]*' | head -1 | cut -d'"' -f4 > "$RUN/pod$i.ip"
    echo "pod-$i on node-$i: $(cat "$RUN/pod$i.ip") (novanet-cni)"
  done
  echo "waiting for every node to route every other node's PodCIDR and the ToRs' prefix..."
  local ready=0
  for _ in $(seq 150); do
    ready=1
    for a in "${NODES[@]}"; do
      ip -n "$(ns_of node$a)" route show proto bgp 192.0.2.0/24 | grep -q "nexthop via 10.0.2.1" || ready=0
      for b in "${NODES[@]}"; do
        [ "$a" = "$b" ] && continue
        ip -n "$(ns_of node$a)" route show proto bgp | grep -q "^10.244.$b.0/24" || ready=0
      done
    done
    [ $ready = 1 ] && break
    sleep 0.2
  done
  status
  echo
  echo "logs and configs: $RUN; tear down with: conformance/lab.sh down"
}

case "${1:-up}" in
  up) up "${2:-}" ;;
  status) status ;;
  down) down ;;
  *) echo "usage: $0 up [--kubernetes]|status|down" >&2; exit 2 ;;
esac
