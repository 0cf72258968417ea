#!/usr/bin/env bash
# The test command: installs the Debian packages the tests need, checks
# formatting and lints, then runs every test (unit, codec, FSM, RIB, MRT
# replay, and the interop tests against real FRR, BIRD and GoBGP in network
# namespaces, which need root), and the benchmark commands at a small size
# (they must keep working; their full runs are separate commands), every
# fuzz target for a short time from its committed corpus, and the
# container image. Dependencies: Cargo.lock as committed (--locked), and
# cargo deny's licenses, bans and sources (deny.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cargo fmt --all -- --check
cargo deny --log-level error check licenses bans sources
cargo clippy --workspace --all-targets --locked -q -- -D warnings
cargo build --workspace --bins --locked -q
cargo test --workspace --locked --no-fail-fast
scripts/fuzz.sh --ci 15
conformance/bench/smoke.sh
# The container image builds and its binaries run inside it.
deploy/image/build.sh novanet-agent:ci
