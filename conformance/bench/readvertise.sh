#!/usr/bin/env bash
# Route-injection benchmark (bgperf style): an injector peer sends N distinct
# IPv4 /24s to the daemon under test, which re-advertises everything to a
# monitor peer. Both peers are novanet-inject (our codec), so the harness is
# never the bottleneck; completion is taken from the monitor, the DUT is
# never polled. The injector waits 3 s after its session is up, so the
# DUT's session to the monitor is up too; the clock starts at the first
# UPDATE sent. Daemons under test, one after another on the same input:
# novanet-agent, BIRD 2, FRR bgpd, GoBGP.
#
#   conformance/bench/readvertise.sh [N...]     (default: 100000 1000000; DUTS="novanet bird frr gobgp")
set -euo pipefail
cd "$(dirname "$0")/../.."
SIZES=("${@:-100000 1000000}")
read -r -a SIZES <<<"${SIZES[*]}"
DUTS=${DUTS:-"novanet bird frr gobgp"}
P=nvrb$$
RUN=/tmp/$P
mkdir -p "$RUN"
./scripts/install-deps.sh
cargo build --release -q -p novanet-agent -p novanet-conformance
AGENT=$PWD/target/release/novanet-agent
INJECT=$PWD/target/release/novanet-inject
pids=()
. conformance/bench/lib.sh

trap 'cleanup dut inj mon; [ -n "${KEEP:-}" ] || rm -rf "$RUN"' EXIT


run_one() { # DUT N
  local dut=$1 n=$2
  cleanup dut inj mon
  for x in dut inj mon; do ip netns add "$P-$x"; ip -n "$P-$x" link set lo up; done
  ip link add eth0 netns "$P-dut" type veth peer name eth0 netns "$P-inj"
  ip link add eth1 netns "$P-dut" type veth peer name eth0 netns "$P-mon"
  ip -n "$P-dut" addr add 10.0.1.1/24 dev eth0; ip -n "$P-inj" addr add 10.0.1.2/24 dev eth0
  ip -n "$P-dut" addr add 10.0.2.1/24 dev eth1; ip -n "$P-mon" addr add 10.0.2.2/24 dev eth0
  ip -n "$P-dut" link set eth0 up; ip -n "$P-dut" link set eth1 up
  ip -n "$P-inj" link set eth0 up; ip -n "$P-mon" link set eth0 up
  ip netns exec "$P-mon" "$INJECT" --listen 10.0.2.2:179 --local-as 65003 --router-id 10.0.2.2 \
    --expect "$n" --exit-when-done --linger 600 > "$RUN/mon.json" 2> "$RUN/mon.log" &
  local mon=$!; pids+=("$mon")
  ip netns exec "$P-inj" "$INJECT" --listen 10.0.1.2:179 --local-as 65002 --router-id 10.0.1.2 \
    --count "$n" --hold-off 3 --linger 600 > "$RUN/inj.json" 2> "$RUN/inj.log" &
  pids+=($!)
  local dpids=()
  case $dut in
    novanet)
      cat > "$RUN/agent.json" <<JSON
{"node_name": "dut", "node_ip": "10.0.1.1", "metrics_address": "127.0.0.1:9102", "listen_socket": "$RUN/agent.sock",
 "log_level": "warn",
 "routing": {"local_as": 65001, "fib": {"enabled": false}, "bfd": {"enabled": false}, "peers": [
   {"neighbor_address": "10.0.1.2", "remote_as": 65002, "max_prefix": $((n + 1)), "import": "all", "export": "none"},
   {"neighbor_address": "10.0.2.2", "remote_as": 65003, "import": "none", "export": "all"}]}}
JSON
      # NOVANET_WRAP: a profiler to run the agent under (e.g. "heaptrack -o /tmp/agent").
      ip netns exec "$P-dut" ${NOVANET_WRAP:-} "$AGENT" --config "$RUN/agent.json" > "$RUN/agent.log" 2>&1 &
      dpids=($!)
      ;;
    bird)
      cat > "$RUN/bird.conf" <<CONF
router id 10.0.1.1;
protocol device { }
protocol bgp inj { local 10.0.1.1 as 65001; neighbor 10.0.1.2 as 65002; ipv4 { import all; export none; }; }
protocol bgp mon { local 10.0.2.1 as 65001; neighbor 10.0.2.2 as 65003; ipv4 { import none; export all; }; }
CONF
      ip netns exec "$P-dut" bird -c "$RUN/bird.conf" -s "$RUN/bird.ctl" -P "$RUN/bird.pid"
      sleep 0.2; dpids=("$(cat "$RUN/bird.pid")")
      ;;
    frr)
      local ns=$P-dut
      mkdir -p "/var/run/frr/$ns" "/etc/frr/$ns"; : > "/etc/frr/$ns/vtysh.conf"
      printf 'router bgp 65001\n bgp router-id 10.0.1.1\n no bgp ebgp-requires-policy\n neighbor 10.0.1.2 remote-as 65002\n neighbor 10.0.2.2 remote-as 65003\n' > "$RUN/bgpd.conf"
      chown -R frr:frr "/var/run/frr/$ns" "$RUN"
      ip netns exec "$ns" /usr/lib/frr/bgpd -d -N "$ns" -u frr -g frr -Z -f "$RUN/bgpd.conf" -i "$RUN/bgpd.pid" --log "file:$RUN/bgpd.log"
      sleep 0.3; dpids=("$(cat "$RUN/bgpd.pid")")
      ;;
    gobgp)
      cat > "$RUN/gobgp.toml" <<TOML
[global.config]
  as = 65001
  router-id = "10.0.1.1"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "10.0.1.2"
    peer-as = 65002
[[neighbors]]
  [neighbors.config]
    neighbor-address = "10.0.2.2"
    peer-as = 65003
TOML
      ip netns exec "$P-dut" gobgpd -f "$RUN/gobgp.toml" -p --api-hosts 127.0.0.1:50051 --pprof-disable > "$RUN/gobgp.log" 2>&1 &
      dpids=($!)
      ;;
  esac
  pids+=("${dpids[@]}")
  # The monitor exits once it holds all N prefixes (bounded wait).
  for _ in $(seq "${WAIT_TICKS:-6000}"); do kill -0 "$mon" 2>/dev/null || break; sleep 0.1; done
  local rss=0 ticks=0
  for p in "${dpids[@]}"; do rss=$((rss + $(hwm "$p"))); ticks=$((ticks + $(cpu "$p"))); done
  python3 - "$RUN/inj.json" "$RUN/mon.json" "$dut" "$n" "$ticks" "$rss" <<'PY'
import json, sys
inj_f, mon_f, dut, n, ticks, rss = sys.argv[1:]
try:
    inj = json.loads(open(inj_f).read().strip().splitlines()[0])
    mon = json.loads(open(mon_f).read().strip().splitlines()[-1])
    total = f"{mon['all_prefixes'] - inj['send_start']:.2f}" if mon.get("all_prefixes") else "timeout"
    first = f"{mon['first_prefix'] - inj['send_start']:.2f}" if mon.get("first_prefix") else "-"
    held = mon.get("held", 0)
except Exception as e:
    total, first, held = "failed", "-", 0
print(f"{dut:<9} {int(n):>9} {total:>9} {first:>9} {int(ticks)/100:>8.2f} {int(rss)//1024:>8} MiB  ({held} held)")
PY
}

printf '%-9s %9s %9s %9s %8s %12s\n' "DUT" "N" "seconds" "first" "cpu_s" "peak_rss"
for n in "${SIZES[@]}"; do
  for d in $DUTS; do run_one "$d" "$n"; done
done
