#!/usr/bin/env bash
# Node-mesh scale run: N agents, each in its own namespace on one shared
# bridge, fully meshed over eBGP (static node mesh, per-node AS from the
# last octet), each originating its PodCIDR with the FIB on. Converged =
# every node's kernel holds the N-1 other PodCIDRs (routes of protocol 186,
# polled per namespace, converged namespaces no longer polled). Prints, per
# N: sessions, seconds from the first agent started until converged, the
# agents' CPU seconds in total, and RSS per agent (mean and max, after
# convergence, and the peak of any agent).
#
#   conformance/bench/mesh.sh [N...]          (default: 10 50 100; BFD=1 turns BFD on)
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(10 50 100)
P=nvms$$
RUN=/tmp/$P
mkdir -p "$RUN"
./scripts/install-deps.sh
cargo build --release -q -p novanet-agent
AGENT=$PWD/target/release/novanet-agent
pids=()
. conformance/bench/lib.sh
NAMESPACES=(fab)
# All namespaces share the kernel's ARP table and its limits: N nodes that
# each resolve N-1 neighbours overflow the default (1024 entries) past ~30
# nodes, and SYNs to unresolved neighbours are dropped. Raised for the run.
ARP_LIMITS=$(sysctl -n net.ipv4.neigh.default.gc_thresh1 net.ipv4.neigh.default.gc_thresh2 net.ipv4.neigh.default.gc_thresh3 | xargs)
restore_arp() { read -r t1 t2 t3 <<<"$ARP_LIMITS"; sysctl -qw net.ipv4.neigh.default.gc_thresh3="$t3" net.ipv4.neigh.default.gc_thresh2="$t2" net.ipv4.neigh.default.gc_thresh1="$t1"; }
sysctl -qw net.ipv4.neigh.default.gc_thresh3=262144 net.ipv4.neigh.default.gc_thresh2=131072 net.ipv4.neigh.default.gc_thresh1=65536
trap 'cleanup "${NAMESPACES[@]}"; restore_arp; [ -n "${KEEP:-}" ] || rm -rf "$RUN"' EXIT

node_ip() { echo "10.10.$(($1 / 200)).$((10 + $1 % 200))"; }
pod_cidr() { echo "10.$((244 + $1 / 256)).$(($1 % 256)).0/24"; }

run_one() { # N
  local n=$1 i
  [[ $n =~ ^[0-9]+$ && $n -ge 2 && $n -le 400 ]] || { echo "mesh.sh: N must be 2 to 400, not '$n'" >&2; exit 2; }
  cleanup "${NAMESPACES[@]}"
  NAMESPACES=(fab)
  ip netns add "$P-fab"
  ip -n "$P-fab" link add br0 type bridge
  ip -n "$P-fab" link set br0 up
  local mesh=""
  for ((i = 0; i < n; i++)); do
    mesh+="{\"name\": \"node-$i\", \"ip\": \"$(node_ip $i)\", \"pod_cidr\": \"$(pod_cidr $i)\"},"
  done
  local bfd=false; [ -n "${BFD:-}" ] && bfd=true
  for ((i = 0; i < n; i++)); do
    NAMESPACES+=("n$i")
    ip netns add "$P-n$i"
    ip -n "$P-n$i" link set lo up
    ip link add eth0 netns "$P-n$i" type veth peer name "v$i" netns "$P-fab"
    ip -n "$P-fab" link set "v$i" master br0 up
    ip -n "$P-n$i" addr add "$(node_ip $i)/16" dev eth0
    ip -n "$P-n$i" link set eth0 up
    cat > "$RUN/n$i.json" <<JSON
{"node_name": "node-$i", "node_ip": "$(node_ip $i)", "pod_cidr": "$(pod_cidr $i)",
 "metrics_address": "127.0.0.1:9102", "listen_socket": "$RUN/n$i.sock", "log_level": "${LOG_LEVEL:-warn}",
 "routing": {"asn_mode": "last_two_octets", "bfd": {"enabled": $bfd},
   "node_mesh": {"enabled": true, "source": "static", "nodes": [${mesh%,}]}}}
JSON
  done
  local t0; t0=$(date +%s.%N)
  local apids=()
  for ((i = 0; i < n; i++)); do
    ip netns exec "$P-n$i" "$AGENT" --config "$RUN/n$i.json" > "$RUN/n$i.log" 2>&1 &
    apids+=($!)
  done
  pids+=("${apids[@]}")
  # Poll each namespace until it routes every other PodCIDR (bounded).
  local pending=() t1=""
  for ((i = 0; i < n; i++)); do pending+=("$i"); done
  for _ in $(seq "${WAIT_ROUNDS:-1200}"); do
    local left=()
    for i in "${pending[@]}"; do
      [ "$(ip -n "$P-n$i" -4 route show proto 186 | wc -l)" -ge $((n - 1)) ] || left+=("$i")
    done
    pending=("${left[@]}")
    if [ ${#pending[@]} -eq 0 ]; then t1=$(date +%s.%N); break; fi
    local dead=0
    for i in "${!apids[@]}"; do kill -0 "${apids[$i]}" 2>/dev/null || { dead=1; echo "mesh.sh: node $i exited: $(tail -1 "$RUN/n$i.log")" >&2; break; }; done
    [ "$dead" = 0 ] || break
    sleep 0.25
  done
  sleep 2
  local rss_sum=0 rss_max=0 hwm_max=0 ticks=0 p r h
  for p in "${apids[@]}"; do
    r=$(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
    h=$(hwm "$p")
    rss_sum=$((rss_sum + r)); ticks=$((ticks + $(cpu "$p")))
    [ "$r" -gt "$rss_max" ] && rss_max=$r
    [ "$h" -gt "$hwm_max" ] && hwm_max=$h
  done
  local secs="timeout (${#pending[@]} nodes short)"
  [ -n "$t1" ] && secs=$(python3 -c "print(f'{$t1 - $t0:.2f}')")
  printf '%5s %9s %22s %8.2f %11.1f %9.1f %9.1f\n' "$n" $((n * (n - 1) / 2)) "$secs" "$(python3 -c "print($ticks/100)")" \
    "$(python3 -c "print($rss_sum/$n/1024)")" "$(python3 -c "print($rss_max/1024)")" "$(python3 -c "print($hwm_max/1024)")"
}

printf '%5s %9s %22s %8s %11s %9s %9s\n' "nodes" "sessions" "converged_s" "cpu_s" "rss_mean_MiB" "rss_max" "peak_max"
for n in "${SIZES[@]}"; do run_one "$n"; done
