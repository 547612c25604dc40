#!/usr/bin/env python3
"""A ground-segment style script: check a node is alive (ping, ident,
uptime), then send it a command over RDP and print the response.

    python3 ground.py [--socket PATH] NODE [--port 11] [--command TEXT]

Against the asyncio echo server of this directory (or
`csp listen --rdp --echo 11`), the response is the command itself.
"""

import argparse
import sys

import cspmux


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("node", type=int)
    p.add_argument("--socket", help="csp-muxd's socket (default: the daemon's default)")
    p.add_argument("--port", type=int, default=11, help="RDP command port")
    p.add_argument("--command", default="get telemetry")
    p.add_argument("--hmac-key", help="HMAC key of the command link")
    args = p.parse_args()

    try:
        with cspmux.Client(socket=args.socket, name="ground.py") as csp:
            rtt = csp.ping(args.node, size=32, timeout=2)
            print(f"ping {args.node}: {rtt * 1000:.3f} ms")
            ident = csp.ident(args.node, timeout=2)
            print(f"ident: {ident['hostname']} {ident['model']} {ident['revision']}")
            print(f"uptime: {csp.uptime(args.node, timeout=2)} s")
            with csp.connect(args.node, args.port, hmac_key=args.hmac_key, timeout=5) as conn:
                conn.send(args.command.encode(), timeout=5)
                conn.wait_acked(timeout=5)
                response = conn.recv(timeout=5)
                print(f"response: {response.decode(errors='replace')}")
    except cspmux.Timeout as e:
        print(f"timeout: {e}", file=sys.stderr)
        return 1
    except cspmux.CspError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
