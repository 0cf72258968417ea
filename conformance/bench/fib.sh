#!/usr/bin/env bash
# Kernel FIB benchmark: N routes from one BGP peer into the kernel of the
# daemon under test, for novanet-agent, BIRD 2 (kernel protocol) and FRR
# (bgpd + zebra), on the same input from novanet-inject. Prints, per
# daemon: seconds from the first UPDATE sent until the last prefix is in
# the kernel, routes in the kernel, CPU seconds and peak RSS.
#
#   conformance/bench/fib.sh [N]          (default 1000000; DUTS="novanet bird frr")
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${1:-1000000}
DUTS=${DUTS:-"novanet bird frr"}
P=nvbf$$
RUN=/tmp/$P
mkdir -p "$RUN"
./scripts/install-deps.sh
cargo build --release -q -p novanet-agent -p novanet-conformance
AGENT=$PWD/target/release/novanet-agent
INJECT=$PWD/target/release/novanet-inject

pids=()
. conformance/bench/lib.sh
trap 'cleanup dut inj; rm -rf "$RUN"' EXIT

last_prefix() { python3 -c "import ipaddress,sys; n=int(sys.argv[1]); print(ipaddress.IPv4Address(int(ipaddress.IPv4Address('100.0.0.0')) + (n-1)*256), end='/24')" "$N"; }

run_one() {
  local dut=$1 proto=bgp
  cleanup dut inj
  ip netns add "$P-dut"; ip netns add "$P-inj"
  ip -n "$P-dut" link set lo up; ip -n "$P-inj" link set lo up
  ip link add eth0 netns "$P-dut" type veth peer name eth0 netns "$P-inj"
  ip -n "$P-dut" addr add 10.0.1.1/24 dev eth0; ip -n "$P-dut" link set eth0 up
  ip -n "$P-inj" addr add 10.0.1.2/24 dev eth0; ip -n "$P-inj" link set eth0 up
  ip netns exec "$P-inj" "$INJECT" --listen 10.0.1.2:179 --local-as 65002 --router-id 10.0.1.2 \
    --count "$N" > "$RUN/inject.json" 2> "$RUN/inject.log" &
  pids+=($!)
  local dpids=()
  case $dut in
    novanet)
      cat > "$RUN/agent.json" <<JSON
{"node_name": "dut", "node_ip": "10.0.1.1", "pod_cidr": "10.255.0.0/24", "metrics_address": "127.0.0.1:9102", "listen_socket": "$RUN/agent.sock",
 "log_level": "warn",
 "routing": {"local_as": 65001, "peers": [{"neighbor_address": "10.0.1.2", "remote_as": 65002,
   "max_prefix": $((N + 1)), "import": "all"}]}}
JSON
      ip netns exec "$P-dut" ${NOVANET_WRAP:-} "$AGENT" --config "$RUN/agent.json" > "$RUN/agent.log" 2>&1 &
      dpids=($!)
      ;;
    bird)
      proto=bird
      cat > "$RUN/bird.conf" <<CONF
router id 10.0.1.1;
protocol device { }
protocol kernel { ipv4 { export all; }; }
protocol bgp inj { local 10.0.1.1 as 65001; neighbor 10.0.1.2 as 65002; ipv4 { import all; export none; }; }
CONF
      ip netns exec "$P-dut" bird -c "$RUN/bird.conf" -s "$RUN/bird.ctl" -P "$RUN/bird.pid"
      sleep 0.2; dpids=("$(cat "$RUN/bird.pid")")
      ;;
    frr)
      local ns=$P-dut
      mkdir -p "/var/run/frr/$ns" "/etc/frr/$ns"; : > "/etc/frr/$ns/vtysh.conf"
      echo "hostname dut" > "$RUN/zebra.conf"
      printf 'router bgp 65001\n bgp router-id 10.0.1.1\n no bgp ebgp-requires-policy\n neighbor 10.0.1.2 remote-as 65002\n' > "$RUN/bgpd.conf"
      chown -R frr:frr "/var/run/frr/$ns" "$RUN"
      ip netns exec "$ns" /usr/lib/frr/zebra -d -N "$ns" -u frr -g frr -f "$RUN/zebra.conf" -i "$RUN/zebra.pid" --log "file:$RUN/zebra.log"
      for _ in $(seq 50); do [ -S "/var/run/frr/$ns/zserv.api" ] && break; sleep 0.1; done
      ip netns exec "$ns" /usr/lib/frr/bgpd -d -N "$ns" -u frr -g frr -f "$RUN/bgpd.conf" -i "$RUN/bgpd.pid" --log "file:$RUN/bgpd.log"
      sleep 0.2; dpids=("$(cat "$RUN/zebra.pid")" "$(cat "$RUN/bgpd.pid")")
      ;;
  esac
  pids+=("${dpids[@]}")
  local last; last=$(last_prefix)
  local t_end=""
  for _ in $(seq 6000); do
    if [ -n "$(ip -n "$P-dut" route show exact "$last" 2>/dev/null)" ]; then t_end=$(date +%s.%N); break; fi
    sleep 0.1
  done
  local count; count=$(ip -n "$P-dut" route show proto "$proto" | wc -l)
  local start; start=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["send_start"])' "$RUN/inject.json" 2>/dev/null || echo 0)
  local rss=0 cpu_ticks=0
  for p in "${dpids[@]}"; do rss=$((rss + $(hwm "$p"))); cpu_ticks=$((cpu_ticks + $(cpu "$p"))); done
  local secs="timeout"
  [ -n "$t_end" ] && secs=$(python3 -c "print(f'{$t_end - $start:.2f}')")
  printf '%-10s %10s %10s %10s %12s\n' "$dut" "$secs" "$count" "$(python3 -c "print(f'{$cpu_ticks/100:.2f}')")" "$((rss / 1024)) MiB"
}

printf '%-10s %10s %10s %10s %12s\n' "DUT" "seconds" "routes" "cpu_s" "peak_rss"
for d in $DUTS; do run_one "$d"; done
