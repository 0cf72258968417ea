#!/usr/bin/env bash
# Route-injection benchmark (bgperf style): injector peers send routes to
# the daemon under test (DUT), which re-advertises them to a monitor peer.
# Injectors and monitor are novanet-inject (our codec), so the harness is
# never the bottleneck; completion is taken from the monitor, the DUT is
# never polled. Injectors start sending together, 3 s or more after their
# sessions are up (so the DUT's session to the monitor is up too); the
# clock starts at the first UPDATE sent. Daemons under test, one after
# another on the same input: novanet-agent, BIRD 2, FRR bgpd, GoBGP.
#
#   conformance/bench/readvertise.sh [SCENARIO...]
#
# Scenarios (default: 100000 1000000 10x100000 10x100000o mrt):
#   N       one injector, N distinct /24s
#   PxN     P injectors, N distinct /24s each (P*N prefixes)
#   PxNo    P injectors, the same N /24s each (N prefixes, P*N paths)
#   mrt[:P] P injectors (default 6) each replaying one peer's table of the
#           RIPE RIS dump $MRT (real prefixes and attributes; default: the
#           rrc00 2000 table in $NOVANET_MRT_DIR or ../shared/data/mrt)
# Environment: DUTS="novanet bird frr gobgp", REPEAT=n runs of each
# (default 1; the row shown is the run with the median time, every run is
# written to RESULTS), RESULTS=file to append the figures to
# (tab-separated), NOVANET_WRAP=profiler command for the agent. Exits 1
# when a run did not complete.
set -euo pipefail
cd "$(dirname "$0")/../.."
SCENARIOS=("$@")
[ ${#SCENARIOS[@]} -gt 0 ] || SCENARIOS=(100000 1000000 10x100000 10x100000o mrt)
DUTS=${DUTS:-"novanet bird frr gobgp"}
MRT=${MRT:-${NOVANET_MRT_DIR:-$(cd .. && pwd)/shared/data/mrt}/ripe-rrc00-bview.20000111.0032.gz}
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

# Sets PEERS, COUNT and MODE (distinct, overlap, mrt) from a scenario.
parse_scenario() {
  case $1 in
    mrt) PEERS=6 COUNT=0 MODE=mrt ;;
    mrt:*) PEERS=${1#mrt:} COUNT=0 MODE=mrt ;;
    *x*o) PEERS=${1%%x*} COUNT=${1#*x}; COUNT=${COUNT%o} MODE=overlap ;;
    *x*) PEERS=${1%%x*} COUNT=${1#*x} MODE=distinct ;;
    *) PEERS=1 COUNT=$1 MODE=distinct ;;
  esac
  [[ $PEERS =~ ^[0-9]+$ && $COUNT =~ ^[0-9]+$ && $PEERS -ge 1 && $PEERS -le 50 ]] || {
    echo "readvertise.sh: scenario '$1': expected N, PxN, PxNo or mrt[:P] (P from 1 to 50)" >&2
    exit 2
  }
}

inj_addr() { echo "10.0.1.$((2 + $1))"; }
dotted() { echo "$(($1 >> 24 & 255)).$(($1 >> 16 & 255)).$(($1 >> 8 & 255)).$(($1 & 255))"; }
inj_as() { echo "$((65100 + $1))"; }

start_dut() { # DUT
  local dut=$1 i
  case $dut in
    novanet)
      {
        printf '{"node_name": "dut", "node_ip": "10.0.1.1", "metrics_address": "127.0.0.1:9102", "listen_socket": "%s",\n' "$RUN/agent.sock"
        printf ' "log_level": "warn", "routing": {"local_as": 65001, "fib": {"enabled": false}, "bfd": {"enabled": false}, "peers": [\n'
        for ((i = 0; i < PEERS; i++)); do
          printf '   {"neighbor_address": "%s", "remote_as": %s, "import": "all", "export": "none"},\n' "$(inj_addr $i)" "$(inj_as $i)"
        done
        printf '   {"neighbor_address": "10.0.2.2", "remote_as": 65003, "import": "none", "export": "all"}]}}\n'
      } > "$RUN/agent.json"
      # NOVANET_WRAP: a profiler to run the agent under (e.g. "heaptrack -o /tmp/agent").
      ip netns exec "$P-dut" ${NOVANET_WRAP:-} "$AGENT" --config "$RUN/agent.json" > "$RUN/agent.log" 2>&1 &
      dpids=($!)
      ;;
    bird)
      {
        echo "router id 10.0.1.1;"
        echo "protocol device { }"
        for ((i = 0; i < PEERS; i++)); do
          echo "protocol bgp inj$i { local 10.0.1.1 as 65001; neighbor $(inj_addr $i) as $(inj_as $i); ipv4 { import all; export none; }; }"
        done
        echo "protocol bgp mon { local 10.0.2.1 as 65001; neighbor 10.0.2.2 as 65003; ipv4 { import none; export all; }; }"
      } > "$RUN/bird.conf"
      ip netns exec "$P-dut" bird -c "$RUN/bird.conf" -s "$RUN/bird.ctl" -P "$RUN/bird.pid"
      wait_pidfile "$RUN/bird.pid"; dpids=("$(cat "$RUN/bird.pid")")
      ;;
    frr)
      local ns=$P-dut
      mkdir -p "/var/run/frr/$ns" "/etc/frr/$ns"; : > "/etc/frr/$ns/vtysh.conf"
      {
        printf 'router bgp 65001\n bgp router-id 10.0.1.1\n no bgp ebgp-requires-policy\n'
        for ((i = 0; i < PEERS; i++)); do printf ' neighbor %s remote-as %s\n' "$(inj_addr $i)" "$(inj_as $i)"; done
        printf ' neighbor 10.0.2.2 remote-as 65003\n'
      } > "$RUN/bgpd.conf"
      chown -R frr:frr "/var/run/frr/$ns" "$RUN"
      ip netns exec "$ns" /usr/lib/frr/bgpd -d -N "$ns" -u frr -g frr -Z -f "$RUN/bgpd.conf" -i "$RUN/bgpd.pid" --log "file:$RUN/bgpd.log"
      wait_pidfile "$RUN/bgpd.pid"; dpids=("$(cat "$RUN/bgpd.pid")")
      ;;
    gobgp)
      {
        printf '[global.config]\n  as = 65001\n  router-id = "10.0.1.1"\n'
        for ((i = 0; i < PEERS; i++)); do
          printf '[[neighbors]]\n  [neighbors.config]\n    neighbor-address = "%s"\n    peer-as = %s\n' "$(inj_addr $i)" "$(inj_as $i)"
        done
        printf '[[neighbors]]\n  [neighbors.config]\n    neighbor-address = "10.0.2.2"\n    peer-as = 65003\n'
      } > "$RUN/gobgp.toml"
      ip netns exec "$P-dut" gobgpd -f "$RUN/gobgp.toml" -p --api-hosts 127.0.0.1:50051 --pprof-disable > "$RUN/gobgp.log" 2>&1 &
      dpids=($!)
      ;;
  esac
  pids+=("${dpids[@]}")
}

wait_pidfile() { # FILE: the daemon writes it once started (bounded wait)
  for _ in $(seq 100); do [ -s "$1" ] && return; sleep 0.05; done
  echo "readvertise.sh: $1 not written" >&2
  return 1
}

run_one() { # SCENARIO DUT
  local scenario=$1 dut=$2 i
  parse_scenario "$scenario"
  cleanup dut inj mon
  rm -f "$RUN"/inj*.json "$RUN"/mon.json
  for x in dut inj mon; do ip netns add "$P-$x"; ip -n "$P-$x" link set lo up; done
  ip link add eth0 netns "$P-dut" type veth peer name eth0 netns "$P-inj"
  ip link add eth1 netns "$P-dut" type veth peer name eth0 netns "$P-mon"
  ip -n "$P-dut" addr add 10.0.1.1/24 dev eth0
  for ((i = 0; i < PEERS; i++)); do ip -n "$P-inj" addr add "$(inj_addr $i)/24" dev eth0; done
  ip -n "$P-dut" addr add 10.0.2.1/24 dev eth1; ip -n "$P-mon" addr add 10.0.2.2/24 dev eth0
  ip -n "$P-dut" link set eth0 up; ip -n "$P-dut" link set eth1 up
  ip -n "$P-inj" link set eth0 up; ip -n "$P-mon" link set eth0 up
  local expect=() ; case $MODE in
    distinct) expect=(--expect $((PEERS * COUNT))) ;;
    *) expect=(--markers "$PEERS") ;;
  esac
  ip netns exec "$P-mon" "$INJECT" --listen 10.0.2.2:179 --local-as 65003 --router-id 10.0.2.2 \
    "${expect[@]}" --exit-when-done --linger 900 > "$RUN/mon.json" 2> "$RUN/mon.log" &
  local mon=$!; pids+=("$mon")
  # Every injector starts at the same moment, a few seconds from now.
  local start_at; start_at=$(($(date +%s) + ${START_DELAY:-6}))
  for ((i = 0; i < PEERS; i++)); do
    local what=()
    case $MODE in
      distinct) what=(--count "$COUNT" --first "$(dotted $(((100 << 24) + i * COUNT * 256)))/24") ;;
      overlap) what=(--count "$COUNT" --marker "198.18.$i.0/24") ;;
      mrt) what=(--mrt "$MRT" --mrt-peer "$i" --marker "198.18.$i.0/24") ;;
    esac
    ip netns exec "$P-inj" "$INJECT" --listen "$(inj_addr $i):179" --local-as "$(inj_as $i)" --router-id "$(inj_addr $i)" \
      "${what[@]}" --hold-off 3 --start-at "$start_at" --linger 900 > "$RUN/inj$i.json" 2> "$RUN/inj$i.log" &
    pids+=($!)
  done
  local dpids=()
  start_dut "$dut"
  # The monitor exits once it is done (bounded wait).
  for _ in $(seq "${WAIT_TICKS:-9000}"); do kill -0 "$mon" 2>/dev/null || break; sleep 0.1; done
  local rss=0 ticks=0 p
  for p in "${dpids[@]}"; do rss=$((rss + $(hwm "$p"))); ticks=$((ticks + $(cpu "$p"))); done
  python3 - "$RUN" "$scenario" "$dut" "$ticks" "$rss" "${RESULTS:-}" <<'PY'
import glob, json, os, sys
run, scenario, dut, ticks, rss, results = sys.argv[1:]
def last(path):
    lines = open(path).read().strip().splitlines()
    return json.loads(lines[-1]) if lines else {}
try:
    injs = [last(f) for f in sorted(glob.glob(os.path.join(run, "inj*.json")))]
    mon = last(os.path.join(run, "mon.json"))
    start = min(i["send_start"] for i in injs if i.get("send_start"))
    paths = sum(i.get("sent", 0) for i in injs)
    total = f"{mon['all_prefixes'] - start:.2f}" if mon.get("all_prefixes") else "timeout"
    first = f"{mon['first_prefix'] - start:.2f}" if mon.get("first_prefix") else "-"
    held = mon.get("held", 0)
except Exception as e:
    total, first, held, paths = "failed", "-", 0, 0
row = [scenario, dut, total, first, f"{int(ticks)/100:.2f}", f"{int(rss)//1024}", str(paths), str(held)]
with open(os.path.join(run, "rows"), "a") as f:
    f.write("\t".join(row) + "\n")
if results:
    with open(results, "a") as f:
        f.write("\t".join(row) + "\n")
PY
}

# Runs a scenario with a DUT REPEAT times; prints the median run's row
# (the slowest when a run did not complete).
run_median() { # SCENARIO DUT
  local k
  : > "$RUN/rows"
  for ((k = 0; k < ${REPEAT:-1}; k++)); do run_one "$1" "$2"; done
  python3 -c '
import sys
rows = [l.rstrip("\n").split("\t") for l in sys.stdin if l.strip()]
def seconds(r):
    try:
        return float(r[2])
    except ValueError:
        return float("inf")
rows.sort(key=seconds)
r = rows[-1] if seconds(rows[-1]) == float("inf") else rows[(len(rows) - 1) // 2]
print(f"{r[0]:<12} {r[1]:<8} {r[2]:>8} {r[3]:>6} {r[4]:>7} {r[5]:>6} MiB {r[6]:>9} {r[7]:>9}")
' < "$RUN/rows" | tee -a "$RUN/table"
}

printf '%-12s %-8s %8s %6s %7s %10s %9s %9s\n' "scenario" "DUT" "seconds" "first" "cpu_s" "peak_rss" "paths_in" "held"
: > "$RUN/table"
for s in "${SCENARIOS[@]}"; do
  parse_scenario "$s"
  for d in $DUTS; do run_median "$s" "$d"; done
done
if grep -Eq "timeout|failed" "$RUN/table"; then
  echo "readvertise.sh: a run did not complete" >&2
  exit 1
fi
