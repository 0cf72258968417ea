#!/usr/bin/env bash
# The identity-policy datapath: what a verdict costs per packet (measured
# by the kernel with BPF_PROG_TEST_RUN) and pod-to-pod throughput (iperf3
# between two pods wired by novanet-cni) without the TC programs, with them
# and no policy, and with a NetworkPolicy isolating the server.
#
#   conformance/bench/datapath.sh [SECONDS]    (iperf3 duration, default 5)
#
# Needs root (namespaces, BPF) and iperf3.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -q -p novanet-agent -p novanet-cni
cargo build --release -q -p novanet-conformance --bin novanet-datapath-bench
target=$(realpath "${CARGO_TARGET_DIR:-target}")/release
NOVANET_AGENT_BIN="$target/novanet-agent" NOVANET_CNI_BIN="$target/novanet-cni" \
  "$target/novanet-datapath-bench" "${1:-5}"
