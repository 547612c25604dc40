#!/usr/bin/env bash
# The issue-13 benchmark suite: raw UDP baselines and csp-muxd paths in one
# run on loopback, every figure as a ratio to its baseline.
#   scripts/bench.sh            print the table
#   scripts/bench.sh --write    and write it into docs/PERFORMANCE.md
# A benchmark, not a test: run it on a quiet machine, compare ratios only.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p host-muxd --bin csp-muxd
cargo build --release --quiet -p host-lib --bin csp --example bench_suite
exec target/release/examples/bench_suite "$@"
