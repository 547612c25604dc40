#!/usr/bin/env bash
# A/B of two csp-muxd binaries on the same RDP transfer, in turns (so a slow
# spell of a shared machine hits both alike): two daemons joined by UDP on
# loopback, a `csp bench serve --rdp` sink on node 2, `csp bench rdp` from
# node 1. Prints segments/s per run.
#   scripts/ab-daemons.sh BASE_MUXD CANDIDATE_MUXD [WINDOW...]
# Build the candidate first (cargo build --release); keep a copy of the
# baseline binary from before the change.
set -euo pipefail
base=$1 cand=$2; shift 2
windows=("${@:-4 16}")
csp="$(dirname "$0")/../target/release/csp"
dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$dir"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pa=$(free_port) pb=$(free_port)
printf 'routes = ["2 udp 127.0.0.1:%s"]\n[node]\naddress = 1\n[udp]\nbind = "127.0.0.1:%s"\n' "$pb" "$pa" > "$dir/a.toml"
printf 'routes = ["1 udp 127.0.0.1:%s"]\n[node]\naddress = 2\n[udp]\nbind = "127.0.0.1:%s"\n' "$pa" "$pb" > "$dir/b.toml"
run() { # muxd binary, window: one transfer, prints segments/s
  RUST_LOG=warn "$1" --config "$dir/a.toml" --socket "$dir/a.sock" 2>/dev/null & local a=$!
  RUST_LOG=warn "$1" --config "$dir/b.toml" --socket "$dir/b.sock" 2>/dev/null & local b=$!
  for _ in $(seq 100); do [ -S "$dir/b.sock" ] && [ -S "$dir/a.sock" ] && break; sleep 0.05; done
  "$csp" --socket "$dir/b.sock" bench serve --rdp --idle 60000 12 2>/dev/null & local s=$!
  sleep 0.3
  "$csp" --socket "$dir/a.sock" bench --json rdp --bytes 4000000 --window "$2" --segment 200 2 12 |
    python3 -c 'import json, sys; print(int(json.load(sys.stdin)["segments_per_s"]))'
  kill $s $a $b; wait $s $a $b 2>/dev/null || true
}
for w in ${windows[@]}; do
  for i in 1 2 3; do
    echo "window $w run $i: base $(run "$base" "$w") candidate $(run "$cand" "$w")"
  done
done
