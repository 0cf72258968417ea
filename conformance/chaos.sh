#!/usr/bin/env bash
# Chaos and soak runs at full size, each its own command (cargo test runs
# the same tests small, in CI). Release binaries of the agent and the
# injector; the figures are printed at the end of each run.
#
#   conformance/chaos.sh flap          a peer flapping every 300 ms for 3 min over 100k held routes
#                                      (FLAP_ROUTES, FLAP_SECONDS, FLAP_INTERVAL_MS, FLAP_PREFIXES)
#   conformance/chaos.sh slow-monitor  a 1-byte-a-second reader of a 1M-route export, 100k churn x 3
#                                      (SLOW_ROUTES, SLOW_CHURN, SLOW_CYCLES)
#   conformance/chaos.sh api           10000 intents from one owner and the rest of the API abuse (API_INTENTS)
#   conformance/chaos.sh leaks         the route-leak guards against a GoBGP ToR
#   conformance/chaos.sh kube          the Kubernetes API server restarting and answering 410 Gone
#   conformance/chaos.sh bfd-load      BFD 50 ms x 3 to FRR while 1M routes come in, 20 runs (RUNS, LOAD_ROUTES)
#   conformance/chaos.sh all           every one of them
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo build --release -q -p novanet-agent -p novanet-conformance --bins
export NOVANET_AGENT_BIN=$PWD/target/release/novanet-agent
export NOVANET_INJECT_BIN=$PWD/target/release/novanet-inject

run_test() { # TEST [FILTER]
  cargo test -q -p novanet-conformance --test "$1" -- --nocapture ${2:+"$2"}
}

one() {
  case "$1" in
    flap) FLAP_ROUTES=${FLAP_ROUTES:-100000} FLAP_SECONDS=${FLAP_SECONDS:-180} run_test chaos_flap ;;
    slow-monitor) SLOW_ROUTES=${SLOW_ROUTES:-1000000} SLOW_CHURN=${SLOW_CHURN:-100000} SLOW_CYCLES=${SLOW_CYCLES:-3} \
      run_test chaos_slow_monitor ;;
    api) API_INTENTS=${API_INTENTS:-10000} run_test chaos_api ;;
    leaks) run_test route_leaks ;;
    kube) run_test kubernetes_mesh ;;
    bfd-load) SCENARIOS=bfdload RUNS=${RUNS:-20} LOAD_ROUTES=${LOAD_ROUTES:-1000000} conformance/bench/failover.sh ;;
    *) echo "chaos.sh: unknown run $1 (flap, slow-monitor, api, leaks, kube, bfd-load, all)" >&2; exit 2 ;;
  esac
}

case "${1:-}" in
  all) for r in flap slow-monitor api leaks kube bfd-load; do echo "== $r"; one "$r"; done ;;
  "") sed -n '2,16p' "$0"; exit 2 ;;
  *) one "$1" ;;
esac
