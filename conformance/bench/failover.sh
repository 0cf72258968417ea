#!/usr/bin/env bash
# Failover benchmarks.
#
# bfd: a node with two ToRs (FRR with bfdd; a second FRR) and a prefix
# learned from both (ECMP). Packets from the first ToR are dropped with
# nftables (the link stays up); the figure is the time from the drop until
# that ToR's next hop is out of the node's kernel route. Runs at BFD
# 300 ms x 3 and 50 ms x 3, without and with a 1M-route load (a third peer
# injecting 1M prefixes into the agent as the drop happens).
#
# table: a full table through two ToRs (each novanet-inject announcing the
# same TABLE_ROUTES prefixes, with a BIRD BFD session beside it at
# 100 ms x 3), ECMP
# in the node's kernel, for novanet-agent, BIRD (kernel protocol, BFD) and
# FRR (bgpd + zebra + bfdd) as the node. The first ToR goes silent
# (everything from it dropped, link up) or loses its link (carrier); pings
# to 16 addresses spread over the table (each ToR answers them) show when
# every probe flows through the other ToR, and the replies lost.
#
# bfdload: BFD at BFD_MS (50) x 3 to an FRR ToR while the agent learns and
# installs LOAD_ROUTES from another peer, RUNS times: the BFD downs FRR
# and the agent counted in each run, and the BGP resets they caused
# (BFD_REALTIME=0: the agent without CAP_SYS_NICE, for comparison;
# CPU_HOGS=N: N busy loops competing for the cores meanwhile).
#
#   conformance/bench/failover.sh     (SCENARIOS="bfd table" or bfdload, LOAD_ROUTES,
#                                      TABLE_ROUTES=1000000, RUNS=3,
#                                      DUTS="novanet bird frr",
#                                      FAILURES="silent carrier",
#                                      CONVERGE_S=300: the wait for the
#                                      table through both ToRs)
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

# route_via PREFIX: the node's route to PREFIX with its gateways, also
# when the kernel shows only the nexthop id (nexthop_compat_mode 0).
route_via() {
  local r id; r=$(ip -n "$P-node" route show exact "$1" 2>/dev/null)
  id=$(sed -n 's/.*nhid \([0-9]*\).*/\1/p' <<< "$r")
  if [ -n "$id" ]; then
    local members; members=$(ip -n "$P-node" -j nexthop show id "$id" 2>/dev/null \
      | python3 -c "import json,sys; print(' '.join(str(m['id']) for m in json.load(sys.stdin)[0].get('group', [])))" 2>/dev/null)
    for m in $id $members; do r+=" $(ip -n "$P-node" nexthop show id "$m" 2>/dev/null)"; done
  fi
  echo "$r"
}

route_hops() { ip -n "$P-node" route show exact 192.0.2.0/24 proto bgp 2>/dev/null; }

# bfd_lab TIMER_MS LOAD(0|1): the node, its two ToRs (tor1 with bfdd at
# TIMER_MS x 3) and the injector; returns once the prefix is ECMP through
# both ToRs and BFD runs at its rate, with the injector's load started.
bfd_lab() {
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
  # BFD_REALTIME=0: the agent without CAP_SYS_NICE, its BFD thread at
  # normal priority (for comparison).
  local wrap=()
  [ "${BFD_REALTIME:-1}" = 0 ] && wrap=(setpriv --bounding-set=-sys_nice)
  ip netns exec "$P-node" "${wrap[@]}" "$AGENT" --config "$RUN/agent.json" > "${AGENT_LOG:-$RUN/agent.log}" 2>&1 &
  pids+=($!)
  for _ in $(seq 300); do route_hops | grep -q "10.0.1.1" && route_hops | grep -q "10.0.2.1" && break; sleep 0.1; done
  # Let BFD reach its configured rate.
  sleep 3
  # CPU_HOGS=N: N busy loops on the machine while the load comes in.
  for _ in $(seq "${CPU_HOGS:-0}"); do
    sh -c 'while :; do :; done' &
    pids+=($!)
  done
  if [ "$load" = 1 ]; then
    ip netns exec "$P-inj" "$INJECT" --connect 10.0.3.10 --local-as 65003 --router-id 10.0.3.2 --count "$LOAD" \
      > /dev/null 2>&1 &
    pids+=($!)
    sleep 1
  fi
}

one_run() { # TIMER_MS LOAD(0|1)
  local t=$1 load=$2
  bfd_lab "$t" "$load"
  ip netns exec "$P-node" nft add table inet bench
  ip netns exec "$P-node" nft add chain inet bench input '{ type filter hook input priority 0 ; }'
  local t0; t0=$(date +%s%N)
  ip netns exec "$P-node" nft add rule inet bench input ip saddr 10.0.1.1 drop
  local t1=""
  for _ in $(seq 2000); do
    if ! route_hops | grep -q "10.0.1.1"; then t1=$(date +%s%N); break; fi
    sleep 0.005
  done
  [ -n "${AGENT_LOG:-}" ] && echo "drop at $(date -u -d @"$((t0 / 1000000000))" +%T).$(( (t0 / 1000000) % 1000 ))" >> "$AGENT_LOG"
  # This runs in a subshell ($(one_run ...)): what it started is stopped here.
  cleanup tor1 tor2 node inj
  [ -n "$t1" ] && echo $(( (t1 - t0) / 1000000 )) || echo timeout
  return 0
}

bfd_scenario() {
  printf '%-12s %-8s %s\n' "BFD" "load" "drop -> next hop out of the kernel (ms), $RUNS runs"
  for t in ${TIMERS:-300 50}; do
    for load in ${LOADS:-0 1}; do
      results=()
      for _ in $(seq "$RUNS"); do results+=("$(one_run "$t" "$load")"); done
      label="none"; [ "$load" = 1 ] && label="${LOAD}"
      printf '%-12s %-8s %s\n' "${t}ms x 3" "$label" "${results[*]}"
    done
  done
}

# bfdload_run TIMER_MS: while the agent learns and installs the injector's
# LOAD routes, the BFD session to tor1 (FRR bfdd) at TIMER_MS x 3 must not
# go down. Prints "frr_downs agent_downs bgp_resets load_seconds".
bfdload_run() {
  local t=$1
  AGENT_LOG=$RUN/agent-load.log bfd_lab "$t" 1
  local t0 installed=0; t0=$(date +%s%N)
  for _ in $(seq 3000); do
    installed=$(curl -s --unix-socket "$RUN/agent-status.sock" http://agent/status/fib | python3 -c 'import json,sys; print(json.load(sys.stdin)["installed"])' 2>/dev/null || echo 0)
    [ "$installed" -ge "$LOAD" ] && break
    sleep 0.1
  done
  local secs; secs=$(( ($(date +%s%N) - t0) / 1000000 ))
  # Two more detection periods' worth after the load, then the counters.
  sleep 1
  local frr_downs agent_downs resets
  frr_downs=$(ip netns exec "$P-tor1" vtysh -N "$P-tor1" -c "show bfd peer 10.0.1.10 counters json" 2>/dev/null \
    | python3 -c 'import json,sys; print(json.load(sys.stdin).get("session-down", "?"))' 2>/dev/null || echo "?")
  agent_downs=$(grep -c 'BFD down' "$RUN/agent-load.log" || true)
  resets=$(ip netns exec "$P-node" curl -s 127.0.0.1:9102/status/peers \
    | python3 -c 'import json,sys; print(max(0, [p for p in json.load(sys.stdin) if p["neighbor_address"] == "10.0.1.1"][0]["established_transitions"] - 1))' 2>/dev/null || echo "?")
  cleanup tor1 tor2 node inj
  [ "$installed" -ge "$LOAD" ] || { echo "timeout"; return 0; }
  echo "$frr_downs $agent_downs $resets $(printf '%d.%03d' $((secs / 1000)) $((secs % 1000)))"
}

bfdload_scenario() {
  local t=${BFD_MS:-50}
  printf '%s\n' "BFD ${t} ms x 3 to FRR while $LOAD routes are learned and installed, $RUNS runs"
  printf '%-5s %-10s %-12s %-11s %s\n' "run" "frr downs" "agent downs" "bgp resets" "table in (s, after the first second)"
  local total=0 bad=0
  for i in $(seq "$RUNS"); do
    read -r f a r secs <<< "$(bfdload_run "$t")"
    printf '%-5s %-10s %-12s %-11s %s\n' "$i" "$f" "$a" "$r" "${secs:-}"
    total=$((total + 1))
    { [ "$f" = 0 ] && [ "$a" = 0 ]; } || bad=$((bad + 1))
  done
  echo "runs with a BFD down: $bad of $total"
}

TABLE=${TABLE_ROUTES:-1000000}
PROBES=16

# The address of prefix I (100.0.0.0/24 + I x 256), host .1.
probe_addr() { python3 -c "import ipaddress,sys; print(ipaddress.IPv4Address(int(ipaddress.IPv4Address('100.0.0.0')) + int(sys.argv[1])*256 + 1))" "$1"; }

# table_run DUT FAILURE: prints "max_ms lost" (the slowest probe's outage,
# and the replies lost over all probes).
table_run() {
  local dut=$1 failure=$2
  cleanup tor1 tor2 node
  for n in tor1 tor2 node; do ip netns add "$P-$n"; ip -n "$P-$n" link set lo up; done
  ip link add eth0 netns "$P-tor1" type veth peer name eth0 netns "$P-node"
  ip link add eth0 netns "$P-tor2" type veth peer name eth1 netns "$P-node"
  ip -n "$P-tor1" addr add 10.0.1.1/24 dev eth0; ip -n "$P-node" addr add 10.0.1.10/24 dev eth0
  ip -n "$P-tor2" addr add 10.0.2.1/24 dev eth0; ip -n "$P-node" addr add 10.0.2.10/24 dev eth1
  for n in tor1 tor2; do ip -n "$P-$n" link set eth0 up; done
  for i in eth0 eth1; do ip -n "$P-node" link set "$i" up; done
  [ -z "${NH_COMPAT:-}" ] || ip netns exec "$P-node" sysctl -qw "net.ipv4.nexthop_compat_mode=$NH_COMPAT"
  local probes=()
  for k in $(seq 0 $((PROBES - 1))); do
    local idx=$(( k * (TABLE - 1) / (PROBES - 1) ))
    probes+=("$(probe_addr "$idx")")
  done
  for n in 1 2; do
    for a in "${probes[@]}"; do ip -n "$P-tor$n" addr add "$a/32" dev lo; done
    # The ToR's BFD: BIRD with a configured session (BGP is the injector's).
    printf 'router id 10.0.%s.1;\nprotocol device { }\nprotocol bfd { neighbor 10.0.%s.10; interface "eth0" { interval 100 ms; multiplier 3; }; }\n' \
      "$n" "$n" > "$RUN/tor$n-bird.conf"
    ip netns exec "$P-tor$n" bird -c "$RUN/tor$n-bird.conf" -s "$RUN/tor$n-bird.ctl" -P "$RUN/tor$n-bird.pid"
    ip netns exec "$P-tor$n" "$INJECT" --listen "10.0.$n.1:179" --local-as "6500$n" --router-id "10.0.$n.1" \
      --count "$TABLE" > /dev/null 2> "$RUN/inj$n.log" &
    pids+=($!)
  done
  local dpids=()
  case $dut in
    novanet)
      cat > "$RUN/agent.json" <<JSON
{"node_name": "node", "node_ip": "10.0.1.10", "pod_cidr": "10.244.10.0/24", "metrics_address": "127.0.0.1:9102", "listen_socket": "$RUN/agent.sock",
 "log_level": "info",
 "routing": {"peers": [
   {"neighbor_address": "10.0.1.1", "remote_as": 65001, "max_prefix": $((TABLE + 1)), "import": "all",
    "bfd_enabled": true, "bfd_min_tx_ms": 100, "bfd_min_rx_ms": 100, "bfd_detect_multiplier": 3},
   {"neighbor_address": "10.0.2.1", "remote_as": 65002, "max_prefix": $((TABLE + 1)), "import": "all",
    "bfd_enabled": true, "bfd_min_tx_ms": 100, "bfd_min_rx_ms": 100, "bfd_detect_multiplier": 3}
 ]}}
JSON
      ip netns exec "$P-node" "$AGENT" --config "$RUN/agent.json" > "$RUN/agent.log" 2>&1 &
      dpids=($!)
      ;;
    bird)
      cat > "$RUN/bird.conf" <<CONF
router id 10.0.1.10;
protocol device { }
protocol kernel { ipv4 { export all; }; merge paths on; }
protocol bfd { interface "eth*" { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; }; }
protocol bgp tor1 { local 10.0.1.10 as 65010; neighbor 10.0.1.1 as 65001; bfd on; ipv4 { import all; export none; }; }
protocol bgp tor2 { local 10.0.2.10 as 65010; neighbor 10.0.2.1 as 65002; bfd on; ipv4 { import all; export none; }; }
CONF
      ip netns exec "$P-node" bird -c "$RUN/bird.conf" -s "$RUN/bird.ctl" -P "$RUN/bird.pid"
      sleep 0.2; dpids=("$(cat "$RUN/bird.pid")")
      ;;
    frr)
      frr node zebra "hostname node
"
      frr node bgpd "router bgp 65010
 bgp router-id 10.0.1.10
 no bgp ebgp-requires-policy
 bgp bestpath as-path multipath-relax
 neighbor 10.0.1.1 remote-as 65001
 neighbor 10.0.1.1 bfd profile fast
 neighbor 10.0.2.1 remote-as 65002
 neighbor 10.0.2.1 bfd profile fast
 address-family ipv4 unicast
  maximum-paths 2
 exit-address-family
"
      # FRR 8.4's bgpd registers a BFD session before it knows the
      # session's source; if BFD comes up before BGP is established, the
      # session is re-registered with the source on establishment and the
      # replaced session's Down resets BGP (Cease/BFD Down). bfdd starts
      # once both sessions are established, so it gets them whole.
      for _ in $(seq 600); do
        ip netns exec "$P-node" vtysh -N "$P-node" -c "show bgp summary json" 2>/dev/null | python3 -c \
          "import json,sys; p=json.load(sys.stdin)['ipv4Unicast']['peers']; sys.exit(0 if sum(v['state']=='Established' for v in p.values())==2 else 1)" \
          2>/dev/null && break
        sleep 0.1
      done
      frr node bfdd "bfd
 profile fast
  receive-interval 100
  transmit-interval 100
  detect-multiplier 3
 !
!
"
      dpids=("$(cat "$RUN/node-zebra.pid")" "$(cat "$RUN/node-bfdd.pid")" "$(cat "$RUN/node-bgpd.pid")")
      ;;
  esac
  pids+=("${dpids[@]}")
  # Converged: the last prefix through both ToRs.
  local last; last="$(python3 -c "import ipaddress,sys; print(ipaddress.IPv4Address(int(ipaddress.IPv4Address('100.0.0.0')) + (int(sys.argv[1])-1)*256))" "$TABLE")/24"
  local converged=""
  for _ in $(seq $(( ${CONVERGE_S:-300} * 10 ))); do
    local r; r=$(route_via "$last")
    if [[ "$r" == *10.0.1.1* && "$r" == *10.0.2.1* ]]; then converged=1; break; fi
    sleep 0.1
  done
  if [ -z "$converged" ]; then cleanup tor1 tor2 node; echo "not-converged 0"; return 0; fi
  sleep 2
  for i in "${!probes[@]}"; do
    ip netns exec "$P-node" ping -D -n -i 0.01 -W 1 -w 14 "${probes[$i]}" > "$RUN/probe$i.log" 2>&1 &
    pids+=($!)
  done
  sleep 2
  local t0; t0=$(date +%s.%N)
  echo "$t0" > "$RUN/t0"
  case $failure in
    silent)
      ip netns exec "$P-node" nft add table inet bench
      ip netns exec "$P-node" nft add chain inet bench input '{ type filter hook input priority 0 ; }'
      ip netns exec "$P-node" nft add rule inet bench input iifname eth0 drop
      ;;
    carrier) ip -n "$P-tor1" link set eth0 down ;;
  esac
  sleep 12
  # novanet: when BFD said the ToR was down (the detection's end).
  local detected=0
  if [ "$dut" = novanet ]; then
    detected=$(grep -a "BFD down: closing the BGP session" "$RUN/agent.log" | grep -a "10.0.1.1" | head -1 \
      | sed 's/\x1b\[[0-9;]*m//g' | awk '{print $1}' | python3 -c "import sys,datetime; l=sys.stdin.read().strip(); print(datetime.datetime.fromisoformat(l.replace('Z','+00:00')).timestamp() if l else 0)")
  fi
  local figures
  figures=$(python3 - "$t0" "$RUN" "$PROBES" "$detected" <<'PY'
import re, sys
t0, run, n, detected = float(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
worst, lost = 0.0, 0
for i in range(n):
    times = {}
    for line in open(f"{run}/probe{i}.log"):
        m = re.match(r"\[(\d+\.\d+)\].*icmp_seq=(\d+)", line)
        if m:
            times[int(m.group(2))] = float(m.group(1))
    seqs = sorted(times)
    if not any(t < t0 for t in times.values()) or not any(t > t0 for t in times.values()):
        print(f"probe{i}-without-replies 0")
        sys.exit(0)
    # The first reply after the failure that follows a gap is the recovery.
    for a, b in zip(seqs, seqs[1:]):
        if times[b] > t0 and b - a > 1:
            worst = max(worst, times[b] - t0)
            lost += b - a - 1
            break
after = f" {(t0 + worst - detected) * 1000:.0f}" if detected and worst else ""
print(f"{worst * 1000:.0f} {lost}{after}")
PY
)
  # This runs in a subshell ($(table_run ...)): what it started is stopped here.
  cleanup tor1 tor2 node
  echo "$figures"
}

table_scenario() {
  printf '%-10s %-9s %s\n' "node" "failure" "slowest probe moved after the failure (ms) / replies lost [/ after BFD down], $RUNS runs, $TABLE routes"
  for dut in ${DUTS:-novanet bird frr}; do
    for failure in ${FAILURES:-silent carrier}; do
      results=()
      for _ in $(seq "$RUNS"); do results+=("$(table_run "$dut" "$failure" | tr ' ' '/')"); done
      printf '%-10s %-9s %s\n' "$dut" "$failure" "${results[*]}"
    done
  done
}

for scenario in ${SCENARIOS:-bfd table}; do
  "${scenario}_scenario"
done
