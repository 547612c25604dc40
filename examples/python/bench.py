#!/usr/bin/env python3
"""Python (cspmux) against the Rust `csp` tool, measured in the same run
on one private csp-muxd: ping round trip and RDP throughput.

    cargo build --release -p host-muxd -p host-lib
    (cd host-py && VIRTUAL_ENV=$PWD/../target/py-venv ../target/py-venv/bin/maturin develop --release)
    target/py-venv/bin/python examples/python/bench.py [--pings 500] [--mb 10]

Ping: `csp ping -c N/5 -i 0 -s 10 1` against N/5 pings of 10 bytes from
Python in one process, five rounds alternating; medians of all round trips.
RDP: MB bytes with 1024-byte segments and a window of 32 to `csp listen --rdp --raw -c 1` (output to /dev/null), sent by
`csp rdp` from stdin and by a Python process (this script with --send);
both read the data from the same file. `csp rdp` is timed as a whole
process (start, connect, send, all acknowledged, close); Python both from
connect to completed close inside the process (the compared figure: a
long-running script pays the interpreter start once) and as a whole process
(interpreter start and import included). Best of --runs each, alternating.
"""

import argparse
import os
import re
import socket as pysocket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SEGMENT, WINDOW, PORT = 1024, 32, 10


def start_muxd(bindir: Path, directory: str) -> "tuple[subprocess.Popen, str]":
    sock = os.path.join(directory, "muxd.sock")
    cfg = os.path.join(directory, "muxd.toml")
    Path(cfg).write_text('[node]\naddress = 1\n[udp]\nbind = "127.0.0.1:0"\n')
    p = subprocess.Popen([str(bindir / "csp-muxd"), "--config", cfg, "--socket", sock])
    for _ in range(1000):
        s = pysocket.socket(pysocket.AF_UNIX)
        try:
            s.connect(sock)
            return p, sock
        except OSError:
            time.sleep(0.01)
        finally:
            s.close()
    raise SystemExit("csp-muxd did not start")


def send_python(sock: str, path: str) -> None:
    import cspmux

    data = Path(path).read_bytes()  # what csp rdp reads from stdin
    with cspmux.Client(socket=sock) as c:
        start = time.perf_counter()
        conn = c.connect(1, PORT, segment=SEGMENT, window=WINDOW, timeout=5)
        conn.send(data, timeout=300)
        conn.wait_acked(timeout=60)
        conn.close(timeout=10)
        print(time.perf_counter() - start)  # connect to completed close


def rdp_run(csp: Path, sock: str, sender: "list[str]", stdin) -> "tuple[float, str]":
    listener = subprocess.Popen(
        [str(csp), "--socket", sock, "listen", "--rdp", "--raw", "-c", "1", str(PORT)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert "listening" in listener.stderr.readline().decode()
    start = time.perf_counter()
    out = subprocess.run(sender, stdin=stdin, check=True, capture_output=True, text=True).stdout
    took = time.perf_counter() - start
    assert listener.wait(30) == 0
    return took, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bindir", default=str(ROOT / "target" / "release"))
    ap.add_argument("--pings", type=int, default=500)
    ap.add_argument("--mb", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3, help="RDP transfers each; the best counts")
    ap.add_argument("--send", nargs=2, metavar=("SOCKET", "FILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    size = args.mb * 1024 * 1024
    if args.send:
        return send_python(*args.send)

    import cspmux

    bindir = Path(args.bindir)
    csp = bindir / "csp"
    with tempfile.TemporaryDirectory() as d:
        muxd, sock = start_muxd(bindir, d)
        try:
            # Medians over rounds that alternate csp and Python, so a burst
            # of load on the shared machine hits both alike.
            rust_rtts, py_rtts = [], []
            rounds = 5
            with cspmux.Client(socket=sock) as c:
                c.ping(1, size=10)  # binds the service socket, as csp's first ping does
                for _ in range(rounds):
                    out = subprocess.run(
                        [str(csp), "--socket", sock, "ping", "-c", str(args.pings // rounds),
                         "-i", "0", "-s", "10", "1"],
                        capture_output=True, text=True, check=True,
                    ).stdout
                    rust_rtts += [float(t) / 1000 for t in re.findall(r"time=([\d.]+) ms", out)]
                    py_rtts += [c.ping(1, size=10, timeout=1) for _ in range(args.pings // rounds)]
            rust_ping, py_ping = statistics.median(rust_rtts), statistics.median(py_rtts)

            data_path = os.path.join(d, "data.bin")
            Path(data_path).write_bytes(os.urandom(size))
            rust_cmd = [str(csp), "--socket", sock, "rdp", "--segment", str(SEGMENT),
                        "--window", str(WINDOW), "--linger", "0", "1", str(PORT)]
            py_cmd = [sys.executable, __file__, "--send", sock, data_path]
            rust_rdp = py_rdp = py_inner = float("inf")
            for _ in range(args.runs):  # alternating, so both see the same machine load
                with open(data_path, "rb") as f:
                    rust_rdp = min(rust_rdp, rdp_run(csp, sock, rust_cmd, f)[0])
                took, out = rdp_run(csp, sock, py_cmd, None)
                py_rdp, py_inner = min(py_rdp, took), min(py_inner, float(out))
        finally:
            muxd.kill()
            muxd.wait()

    mbps = lambda t: size / t / 1e6  # noqa: E731
    print(f"ping 10 B, {args.pings} pings: csp {rust_ping * 1e6:.1f} us median, "
          f"python {py_ping * 1e6:.1f} us median, ratio {py_ping / rust_ping:.2f} (goal <= 1.3)")
    print(f"RDP {args.mb} MiB, segment {SEGMENT}, window {WINDOW}: csp process {mbps(rust_rdp):.1f} MB/s "
          f"({rust_rdp:.3f} s); python connect..close {mbps(py_inner):.1f} MB/s ({py_inner:.3f} s), "
          f"ratio {rust_rdp / py_inner:.2f} (goal >= 0.8); python process {mbps(py_rdp):.1f} MB/s "
          f"({py_rdp:.3f} s), ratio {rust_rdp / py_rdp:.2f}")


if __name__ == "__main__":
    main()
