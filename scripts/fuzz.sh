#!/usr/bin/env bash
# Run every cargo-fuzz target for a bounded time (default 60 s each), on
# nightly, growing fuzz/corpus/<target>/. Crashes are left in
# fuzz/artifacts/<target>/, which the stable replay test
# (cargo test -p csp-integration-tests --test fuzz_corpus) also runs:
# keep the crash file there (or move it into the corpus) with the fix.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
# Needs: rustup toolchain install nightly; cargo install cargo-fuzz.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
failed=0
for t in "${targets[@]}"; do
  echo "=== $t (${secs}s)"
  # -rss_limit_mb: a target that grows memory is a failure too.
  if ! cargo +nightly fuzz run "$t" "corpus/$t" -- \
      -max_total_time="$secs" -rss_limit_mb=512 -max_len=4096 -print_final_stats=1; then
    echo "!!! $t failed: see fuzz/artifacts/$t/" >&2
    failed=1
  fi
done
exit "$failed"
