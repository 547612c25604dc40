#!/usr/bin/env bash
# The cost of a running `csp capture` (every link, to a pcapng file) on
# `csp bench` through one csp-muxd: ping RTT, connectionless stream and
# RDP, each run without and with a capture in turns, as ratios.
#   scripts/bench-capture.sh [ROUNDS]     (default 3 rounds)
# A benchmark, not a test: compare the ratios of one run only.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
cargo build --release --quiet -p host-muxd --bin csp-muxd -p host-lib --bin csp
bin=$PWD/target/release
dir=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
printf '[udp]\nbind = "127.0.0.1:0"\n' > "$dir/muxd.toml"
"$bin/csp-muxd" --config "$dir/muxd.toml" --socket "$dir/muxd.sock" 2>"$dir/muxd.log" &
pids+=($!)
csp() { "$bin/csp" --socket "$dir/muxd.sock" "$@"; }
for _ in $(seq 100); do csp status >/dev/null 2>&1 && break; sleep 0.05; done
csp bench serve 11 >/dev/null 2>&1 & pids+=($!)
csp bench serve --rdp 12 >/dev/null 2>&1 & pids+=($!)
sleep 0.3

# One JSON figure of one bench run.
figure() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
run_all() {
    rtt=$(csp bench --json rtt -c 5000 -s 200 1 | figure p50_us)
    stream=$(csp bench --json stream -c 100000 -s 200 1 11 | figure received_pps)
    rdp=$(csp bench --json rdp --bytes 4000000 --window 32 1 12 | figure segments_per_s)
    echo "$rtt $stream $rdp"
}

# A capture in the background while run_all runs; its summary line.
captured_run() {
    # Not through the function: $! must be the capture process itself.
    "$bin/csp" --socket "$dir/muxd.sock" capture -w "$dir/cap.pcapng" "$@" 2>"$dir/cap.err" & cap=$!
    for _ in $(seq 100); do grep -q "capturing on" "$dir/cap.err" 2>/dev/null && break; sleep 0.05; done
    result=$(run_all)
    kill -INT "$cap"
    wait "$cap" || echo "capture exit status $?" >&2
    summaries+=("${*:-every link}: $(tail -1 "$dir/cap.err"); file $(stat -c %s "$dir/cap.pcapng") bytes")
}

declare -a off on idle summaries
for r in $(seq "$rounds"); do
    off+=("$(run_all)")
    # Every link: the benches' traffic is all on `local`.
    captured_run
    on+=("$result")
    # Only the idle UDP link: what the taps cost when nothing is taken.
    captured_run --link udp
    idle+=("$result")
done

python3 - "$rounds" "${off[@]}" "${on[@]}" "${idle[@]}" <<'EOF'
import statistics, sys
n = int(sys.argv[1])
rows = [list(map(float, a.split())) for a in sys.argv[2:]]
off, on, idle = rows[:n], rows[n:2 * n], rows[2 * n:]
names = [("ping RTT p50 (app -> muxd ping service), us", True),
         ("stream 200 B, received pkt/s", False),
         ("RDP window 32, 200 B, seg/s", False)]
print("| figure | no capture | capture, every link | ratio | capture of an idle link | ratio |")
print("|---|---|---|---|---|---|")
for i, (name, lower_better) in enumerate(names):
    a = statistics.median(r[i] for r in off)
    b = statistics.median(r[i] for r in on)
    c = statistics.median(r[i] for r in idle)
    note = " (lower is better)" if lower_better else ""
    print(f"| {name} | {a:.1f} | {b:.1f} | {b / a:.2f}x{note} | {c:.1f} | {c / a:.2f}x{note} |")
EOF
printf '\ncapture summaries per round:\n'
printf '  %s\n' "${summaries[@]}"
