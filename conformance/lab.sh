#!/usr/bin/env bash
# The lab: a small cluster in network namespaces.
#
#   conformance/lab.sh up      build, start, show sessions and routes
#   conformance/lab.sh status  show sessions and routes again
#   conformance/lab.sh down    stop everything and remove the namespaces
#
# Topology: one FRR ToR (AS 65000) routing between two nodes; each node runs
# novanet-agent with its PodCIDR and peers with the ToR and (static node
# mesh, multihop through the ToR) with the other node.
#
#   node-1 10.0.1.10 (AS 65010, 10.244.1.0/24) --- tor --- node-2 10.0.2.11 (AS 65011, 10.244.2.0/24)
set -euo pipefail
cd "$(dirname "$0")/.."
P=${NOVANET_LAB_PREFIX:-nvlab}
RUN=/tmp/$P
TOR=$P-tor

nodes=("1 10.0.1.10 10.0.1.1 10.244.1.0/24" "2 10.0.2.11 10.0.2.1 10.244.2.0/24")

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
  for ns in "$TOR" "$P-node1" "$P-node2"; do
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "/var/run/frr/$TOR" "/etc/frr/$TOR" "$RUN"
}

status() {
  echo "== ToR (FRR) BGP summary"
  vtysh -N "$TOR" -c "show bgp summary" | sed -n '/Neighbor/,$p'
  echo "== ToR routes"
  vtysh -N "$TOR" -c "show bgp ipv4 unicast" | sed -n '/Network/,$p'
  for n in "${nodes[@]}"; do
    read -r i ip gw cidr <<<"$n"
    echo "== node-$i ($ip) sessions"
    ip netns exec "$P-node$i" python3 - "$i" <<'PY'
import json, sys, urllib.request
peers = json.load(urllib.request.urlopen("http://127.0.0.1:9102/status/peers"))
print(f"{'NEIGHBOR':<12} {'AS':<7} {'ROLE':<5} {'STATE':<12} {'RCVD':>5} {'SENT':>5}")
for p in peers:
    print(f"{p['neighbor_address']:<12} {p['remote_as']:<7} {p['role']:<5} {p['state']:<12} {p['prefixes_received']:>5} {p['prefixes_sent']:>5}")
routes = json.load(urllib.request.urlopen("http://127.0.0.1:9102/status/routes"))
for r in routes:
    for p in r["paths"]:
        mark = "*" if p["best"] else " "
        print(f"  {mark} {r['prefix']:<18} from {p['from']:<10} via {p['next_hop'] or '-':<10} path [{p['as_path']}]")
PY
  done
}

up() {
  [ "$(id -u)" = 0 ] || { echo "lab.sh: run as root (network namespaces)" >&2; exit 1; }
  ./scripts/install-deps.sh
  cargo build -q -p novanet-agent
  down
  mkdir -p "$RUN"
  ip netns add "$TOR"; ip -n "$TOR" link set lo up
  ip netns exec "$TOR" sysctl -qw net.ipv4.ip_forward=1
  local mesh="" neighbors=""
  for n in "${nodes[@]}"; do
    read -r i ip gw cidr <<<"$n"
    mesh+="{\"name\":\"node-$i\",\"ip\":\"$ip\",\"pod_cidr\":\"$cidr\"},"
    neighbors+=" neighbor $ip remote-as $((65000 + ${ip##*.}))
 neighbor $ip timers 3 9
 neighbor $ip timers connect 1
"
  done
  for n in "${nodes[@]}"; do
    read -r i ip gw cidr <<<"$n"
    local ns=$P-node$i
    ip netns add "$ns"; ip -n "$ns" link set lo up
    ip link add "eth$i" netns "$TOR" type veth peer name eth0 netns "$ns"
    ip -n "$TOR" addr add "$gw/24" dev "eth$i"; ip -n "$TOR" link set "eth$i" up
    ip -n "$ns" addr add "$ip/24" dev eth0; ip -n "$ns" link set eth0 up
    ip -n "$ns" route add default via "$gw"
  done
  mkdir -p "/var/run/frr/$TOR" "/etc/frr/$TOR"; : > "/etc/frr/$TOR/vtysh.conf"
  cat > "$RUN/bgpd.conf" <<CONF
hostname tor
router bgp 65000
 bgp router-id 10.0.0.1
 no bgp ebgp-requires-policy
 no bgp network import-check
$neighbors
 address-family ipv4 unicast
  network 192.0.2.0/24
 exit-address-family
CONF
  chown -R frr:frr "/var/run/frr/$TOR" "$RUN"
  ip netns exec "$TOR" /usr/lib/frr/bgpd -d -N "$TOR" -u frr -g frr -Z -f "$RUN/bgpd.conf" \
    -i "$RUN/bgpd.pid" --log "file:$RUN/bgpd.log"
  for n in "${nodes[@]}"; do
    read -r i ip gw cidr <<<"$n"
    cat > "$RUN/node$i.json" <<JSON
{
  "node_name": "node-$i",
  "node_ip": "$ip",
  "pod_cidr": "$cidr",
  "metrics_address": "127.0.0.1:9102",
  "routing": {
    "peers": [{"neighbor_address": "$gw", "remote_as": 65000, "description": "tor", "hold_time": 9, "keepalive": 3}],
    "node_mesh": {"enabled": true, "source": "static", "nodes": [${mesh%,}]}
  }
}
JSON
    ip netns exec "$P-node$i" ./target/debug/novanet-agent --config "$RUN/node$i.json" \
      > "$RUN/node$i.log" 2>&1 &
    echo $! > "$RUN/node$i.pid"
  done
  echo "waiting for sessions..."
  for _ in $(seq 100); do
    est=$(vtysh -N "$TOR" -c "show bgp summary json" | python3 -c 'import json,sys; d=json.load(sys.stdin)["ipv4Unicast"]["peers"]; print(sum(1 for p in d.values() if p["state"]=="Established"))')
    [ "$est" = "${#nodes[@]}" ] && break
    sleep 0.2
  done
  sleep 1
  status
  echo
  echo "logs and configs: $RUN; tear down with: conformance/lab.sh down"
}

case "${1:-up}" in
  up) up ;;
  status) status ;;
  down) down ;;
  *) echo "usage: $0 up|status|down" >&2; exit 2 ;;
esac
