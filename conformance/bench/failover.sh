#!/usr/bin/env bash
# Failover benchmark: a node with two ToRs (FRR with bfdd; a second FRR) and
# a prefix learned from both (ECMP). Packets from the first ToR are dropped
# with nftables (the link stays up); the figure is the time from the drop
# until that ToR's next hop is out of the node's kernel route. Runs at
# BFD 300 ms x 3 and 50 ms x 3, without and with a 1M-route load (a third
# peer injecting 1M prefixes into the agent as the drop happens).
#
#   conformance/bench/failover.sh          (LOAD_ROUTES=1000000, RUNS=3)
set -euo pipefail
cd "$(dirname "$0")/../.."
LOAD=${LOAD_ROUTES:-1000000}
RUNS=${RUNS:-3}
P=nvfo$$
RUN=/tmp/$P
mkdir -p "$RUN"
./scripts/install-deps.sh
cargo build --release -q -p novanet-agent -p novanet-conformance
AGENT=$PWD/target/release/novanet-agent
INJECT=$PWD/target/release/novanet-inject
pids=()
. conformance/bench/lib.sh

trap 'cleanup tor1 tor2 node inj; [ -n "${KEEP:-}" ] || rm -rf "$RUN"' EXIT

frr() { # frr NS DAEMON CONF
  local ns=$P-$1 d=$2
  mkdir -p "/var/run/frr/$ns" "/etc/frr/$ns"; : > "/etc/frr/$ns/vtysh.conf"
  printf '%s' "$3" > "$RUN/$1-$d.conf"
  chown -R frr:frr "/var/run/frr/$ns" "$RUN"
  local extra=""; [ "$d" = bgpd ] && [ "${4:-}" = noz ] && extra="-Z"
  ip netns exec "$ns" /usr/lib/frr/"$d" -d -N "$ns" -u frr -g frr $extra -f "$RUN/$1-$d.conf" \
    -i "$RUN/$1-$d.pid" --log "file:$RUN/$1-$d.log"
  if [ "$d" = zebra ]; then for _ in $(seq 50); do [ -S "/var/run/frr/$ns/zserv.api" ] && break; sleep 0.1; done; fi
}

route_hops() { ip -n "$P-node" route show exact 192.0.2.0/24 proto bgp 2>/dev/null; }

one_run() { # TIMER_MS LOAD(0|1)
  local t=$1 load=$2
  cleanup tor1 tor2 node inj
  for n in tor1 tor2 node inj; do ip netns add "$P-$n"; ip -n "$P-$n" link set lo up; done
  ip link add eth0 netns "$P-tor1" type veth peer name eth0 netns "$P-node"
  ip link add eth0 netns "$P-tor2" type veth peer name eth1 netns "$P-node"
  ip link add eth0 netns "$P-inj" type veth peer name eth2 netns "$P-node"
  ip -n "$P-tor1" addr add 10.0.1.1/24 dev eth0; ip -n "$P-node" addr add 10.0.1.10/24 dev eth0
  ip -n "$P-tor2" addr add 10.0.2.1/24 dev eth0; ip -n "$P-node" addr add 10.0.2.10/24 dev eth1
  ip -n "$P-inj" addr add 10.0.3.2/24 dev eth0; ip -n "$P-node" addr add 10.0.3.10/24 dev eth2
  for n in tor1 tor2 inj; do ip -n "$P-$n" link set eth0 up; done
  for i in eth0 eth1 eth2; do ip -n "$P-node" link set "$i" up; done
  frr tor1 zebra "hostname tor1
"
  frr tor1 bfdd "bfd
 peer 10.0.1.10 interface eth0
  receive-interval $t
  transmit-interval $t
  detect-multiplier 3
 !
!
"
  local bgp_common=" no bgp ebgp-requires-policy
 no bgp network import-check
 address-family ipv4 unicast
  network 192.0.2.0/24
 exit-address-family
"
  frr tor1 bgpd "router bgp 65001
 bgp router-id 10.0.1.1
 neighbor 10.0.1.10 remote-as 65010
 neighbor 10.0.1.10 timers 3 9
 neighbor 10.0.1.10 timers connect 1
 neighbor 10.0.1.10 bfd
$bgp_common"
  frr tor2 bgpd "router bgp 65002
 bgp router-id 10.0.2.1
 neighbor 10.0.2.10 remote-as 65010
 neighbor 10.0.2.10 timers 3 9
 neighbor 10.0.2.10 timers connect 1
$bgp_common" noz
  cat > "$RUN/agent.json" <<JSON
{"node_name": "node", "node_ip": "10.0.1.10", "pod_cidr": "10.244.10.0/24", "metrics_address": "127.0.0.1:9102", "listen_socket": "$RUN/agent.sock",
 "log_level": "warn",
 "routing": {"peers": [
   {"neighbor_address": "10.0.1.1", "remote_as": 65001, "hold_time": 9, "keepalive": 3,
    "bfd_enabled": true, "bfd_min_tx_ms": $t, "bfd_min_rx_ms": $t, "bfd_detect_multiplier": 3},
   {"neighbor_address": "10.0.2.1", "remote_as": 65002, "hold_time": 9, "keepalive": 3},
   {"neighbor_address": "10.0.3.2", "remote_as": 65003, "max_prefix": $((LOAD + 1)), "import": "all"}
 ]}}
JSON
  ip netns exec "$P-node" "$AGENT" --config "$RUN/agent.json" > "${AGENT_LOG:-$RUN/agent.log}" 2>&1 &
  pids+=($!)
  for _ in $(seq 300); do route_hops | grep -q "10.0.1.1" && route_hops | grep -q "10.0.2.1" && break; sleep 0.1; done
  # Let BFD reach its configured rate.
  sleep 3
  if [ "$load" = 1 ]; then
    ip netns exec "$P-inj" "$INJECT" --connect 10.0.3.10 --local-as 65003 --router-id 10.0.3.2 --count "$LOAD" \
      > /dev/null 2>&1 &
    pids+=($!)
    sleep 1
  fi
  ip netns exec "$P-node" nft add table inet bench
  ip netns exec "$P-node" nft add chain inet bench input '{ type filter hook input priority 0 ; }'
  local t0; t0=$(date +%s%N)
  ip netns exec "$P-node" nft add rule inet bench input ip saddr 10.0.1.1 drop
  local t1=""
  for _ in $(seq 2000); do
    if ! route_hops | grep -q "10.0.1.1"; then t1=$(date +%s%N); break; fi
    sleep 0.005
  done
  [ -n "$t1" ] && echo $(( (t1 - t0) / 1000000 )) || echo timeout
  [ -n "${AGENT_LOG:-}" ] && echo "drop at $(date -u -d @"$((t0 / 1000000000))" +%T).$(( (t0 / 1000000) % 1000 ))" >> "$AGENT_LOG"
  return 0
}

printf '%-12s %-8s %s\n' "BFD" "load" "drop -> next hop out of the kernel (ms), $RUNS runs"
for t in ${TIMERS:-300 50}; do
  for load in ${LOADS:-0 1}; do
    results=()
    for _ in $(seq "$RUNS"); do results+=("$(one_run "$t" "$load")"); done
    label="none"; [ "$load" = 1 ] && label="${LOAD}"
    printf '%-12s %-8s %s\n' "${t}ms x 3" "$label" "${results[*]}"
  done
done
