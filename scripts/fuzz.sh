#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo fuzz, libFuzzer) of every target in
# fuzzing/src/lib.rs.
#
#   scripts/fuzz.sh [SECONDS]       each target SECONDS (default 300), new
#                                   inputs merged into fuzz/corpus (minimised)
#   scripts/fuzz.sh --ci [SECONDS]  each target SECONDS (default 15) from the
#                                   committed corpus; the corpus is left as is
#   scripts/fuzz.sh seed            regenerate the seeds and minimise the corpus
#   scripts/fuzz.sh capture         add seeds recorded from sessions with real FRR,
#                                   BIRD and GoBGP (needs root), then minimise
#   TARGETS="bgp_update mrt" ...    only these targets
#
# A crash stops with the input saved under fuzz/artifacts/TARGET/; once
# fixed, move it to fuzz/regressions/TARGET/ (cargo test replays it).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

ci=0
mode=run
case "${1:-}" in
    --ci) ci=1; shift ;;
    seed) mode=seed; shift ;;
    capture) mode=capture; shift ;;
esac
if [ "$ci" = 1 ]; then seconds=${1:-15}; else seconds=${1:-300}; fi

if ! command -v cargo-fuzz >/dev/null; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi

all_targets=$(sed -n 's/^    ("\([a-z_0-9]*\)", [a-z_0-9]*),$/\1/p' fuzzing/src/lib.rs)
targets=${TARGETS:-$all_targets}
[ -n "$targets" ] || { echo "fuzz.sh: no targets found in fuzzing/src/lib.rs" >&2; exit 1; }

# cargo fuzz SUBCOMMAND with our options ahead of the target's arguments.
fuzz() {
    local sub=$1
    shift
    cargo fuzz "$sub" -s none --fuzz-dir fuzz --target-dir "$ROOT/target/fuzz" "$@"
}

max_len() {
    case "$1" in
        mrt) echo 65536 ;;
        agent_config|cni_stdin|ospf_readback) echo 4096 ;;
        *) echo 4097 ;;
    esac
}

echo "== building the fuzz targets"
fuzz build

if [ "$mode" = seed ] || [ "$mode" = capture ]; then
    seeds=$ROOT/target/fuzz-$mode
    rm -rf "$seeds"
    if [ "$mode" = seed ]; then
        echo "== writing seeds"
        cargo run -q -p novanet-fuzzing --bin fuzz-seeds -- "$seeds" "${MRT_DIR:-$ROOT/../shared/data/mrt}" ospf-bridge/tests/frr-8.4
    else
        echo "== recording sessions with FRR, BIRD and GoBGP"
        FUZZ_CAPTURE_DIR=$seeds cargo test -q -p novanet-conformance --test capture_seeds -- --ignored --nocapture
    fi
    for t in $targets; do
        [ -d "$seeds/$t" ] || continue
        mkdir -p "fuzz/corpus/$t"
        cp -n "$seeds/$t/"* "fuzz/corpus/$t/" 2>/dev/null || true
        echo "== minimising $t"
        fuzz cmin "$t" "fuzz/corpus/$t" -- -max_len="$(max_len "$t")" >/dev/null 2>&1
        echo "$t: $(ls "fuzz/corpus/$t" | wc -l) inputs"
    done
    exit 0
fi

summary=()
failed=0
kind=$([ "$ci" = 1 ] && echo ci || echo run)
for t in $targets; do
    log=target/fuzz-$kind-$t.log
    mkdir -p "fuzz/artifacts/$t"
    if [ "$ci" = 1 ]; then
        work=$(mktemp -d)
        dirs=("$work" "fuzz/corpus/$t")
    else
        work=
        dirs=("fuzz/corpus/$t")
    fi
    echo "== $t: ${seconds}s"
    set +e
    fuzz run "$t" "${dirs[@]}" -- \
        -max_total_time="$seconds" -max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="fuzz/artifacts/$t/" -print_final_stats=1 >"$log" 2>&1
    rc=$?
    set -e
    [ -n "$work" ] && rm -rf "$work"
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
    if [ "$rc" != 0 ]; then
        grep -A12 -m1 'panicked\|ERROR: libFuzzer' "$log" || tail -40 "$log"
        echo "fuzz.sh: $t FAILED (exit $rc); input saved in fuzz/artifacts/$t/, log $log" >&2
        summary+=("$t: FAILED after ${runs:-?} runs")
        failed=1
        continue
    fi
    summary+=("$t: ${runs:-?} runs, ${cov:-cov: ?}")
    if [ "$ci" = 0 ]; then
        fuzz cmin "$t" "fuzz/corpus/$t" -- -max_len="$(max_len "$t")" >/dev/null 2>&1
    fi
done
printf '%s\n' "${summary[@]}"
exit $failed
