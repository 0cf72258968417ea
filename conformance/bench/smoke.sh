#!/usr/bin/env bash
# The benchmark harness in miniature, for CI: every scenario kind of the
# re-advertise benchmark with every daemon under test at a small size, the
# kernel FIB benchmark, a small node mesh, the policy datapath, and one
# BFD-under-load run. Fails when a run does not
# complete (a timeout or a failed row), so the benchmark commands keep
# working on a fresh machine; the figures themselves mean little at this
# size.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(mktemp)
trap 'rm -f "$out"' EXIT
START_DELAY=4 conformance/bench/readvertise.sh 2000 3x1000 3x1000o mrt:2 | tee "$out"
conformance/bench/fib.sh 2000 | tee -a "$out"
conformance/bench/mesh.sh 6 | tee -a "$out"
conformance/bench/datapath.sh 1 | tee -a "$out"
SCENARIOS=bfdload RUNS=1 LOAD_ROUTES=2000 conformance/bench/failover.sh | tee -a "$out"
if grep -Eq "timeout|failed" "$out"; then
  echo "smoke.sh: a benchmark run did not complete" >&2
  exit 1
fi
grep -q "^runs with a BFD down: [0-9]* of 1$" "$out" || { echo "smoke.sh: the BFD-under-load run did not complete" >&2; exit 1; }
rows=$(grep -Ec "^(2000|3x1000|3x1000o|mrt:2) " "$out" || true)
[ "$rows" -eq 16 ] || { echo "smoke.sh: expected 16 re-advertise rows, got $rows" >&2; exit 1; }
echo "smoke.sh: every benchmark completed"
