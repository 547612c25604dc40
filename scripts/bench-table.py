#!/usr/bin/env python3
"""Print criterion results (target/criterion) as a markdown table with each
median time divided by the baseline measured in the same run
(`baseline/memcpy_200B`: copying one 200-byte frame).

Usage: cargo bench -p csp-core -p csp-rdp -- --warm-up-time 1 --measurement-time 3
       python3 scripts/bench-table.py [target/criterion]
"""
import json
import pathlib
import sys

BASELINE = "baseline/memcpy_200B"


def fmt_time(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def fmt_rate(ns, throughput):
    if not throughput:
        return ""
    (kind, n), = throughput.items()
    per_s = n / (ns / 1e9)
    if kind == "Bytes":
        return f"{per_s / 2**20:.0f} MiB/s"
    return f"{per_s / 1e6:.2f} M/s"


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
    rows = {}
    for bench in root.glob("**/new/benchmark.json"):
        meta = json.loads(bench.read_text())
        est = json.loads((bench.parent / "estimates.json").read_text())
        rows[meta["full_id"]] = (est["median"]["point_estimate"], meta.get("throughput"))
    if BASELINE not in rows:
        sys.exit(f"no {BASELINE} in {root}: run the header bench in the same run")
    base = rows[BASELINE][0]
    print("| benchmark | median | throughput | / baseline |")
    print("|---|---|---|---|")
    for name in sorted(rows):
        ns, tp = rows[name]
        print(f"| `{name}` | {fmt_time(ns)} | {fmt_rate(ns, tp)} | {ns / base:.1f} |")


if __name__ == "__main__":
    main()
