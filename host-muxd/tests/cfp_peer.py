"""An independent CSP node on a CAN bus, for host-muxd/tests/can.rs.

The node is `csp_py` (the pure-Python `cubesat-space-protocol-py` package,
its own CFP v1 and v2 code); this script only bridges its CAN frame
callbacks to slcan lines on a pty, the daemon's `[[can]]` link. It answers
pings (csp_py's own handler) and echoes every packet sent to port 10. With
--ping, it first pings the daemon's node with each size in turn and sends
each size to the daemon's echo application, then reports and keeps serving
until its stdin closes.

Output lines (stdout): `READY`, then with --ping `PINGED n`, `ECHOED n`
(n: how many sizes from --min-size to --ping),
and at the end `DONE`; errors go to stderr with a non-zero exit.
"""

import argparse
import asyncio
import os
import sys
import tty

from csp_py import CspAddress, CspNode
from csp_py.interfaces.can import CspCanInterface
from csp_py.interfaces.can_v1 import CspCanV1Interface

# Every wait is bounded: a lost frame fails the run instead of hanging it.
REPLY_TIMEOUT_S = 5.0


def slcan_line(can_id: int, data: bytes) -> bytes:
    """One extended CAN frame as an slcan (LAWICEL) line."""
    return b"T%08X%d%s\r" % (can_id, len(data), data.hex().upper().encode())


def parse_slcan(line: bytes):
    """(id, data) of an extended data frame line, None for anything else."""
    if len(line) < 10 or line[:1] != b"T":
        return None
    try:
        can_id = int(line[1:9], 16)
        dlc = int(line[9:10], 16)
        data = bytes.fromhex(line[10:].decode())
    except ValueError:
        return None
    if dlc > 8 or len(data) != dlc:
        return None
    return can_id, data


class SlcanBridge:
    """slcan lines on a tty <-> the csp_py CAN interface's callbacks."""

    def __init__(self, fd: int, iface) -> None:
        self.fd = fd
        self.iface = iface
        self.pending = b""
        self.bad_lines = 0
        iface.send_can_frame = self.send_frame

    async def send_frame(self, can_id: int, data: bytes) -> None:
        line = slcan_line(can_id, data)
        while line:
            n = os.write(self.fd, line)
            line = line[n:]

    def on_readable(self) -> None:
        try:
            chunk = os.read(self.fd, 4096)
        except BlockingIOError:
            return
        self.pending += chunk
        while b"\r" in self.pending:
            line, self.pending = self.pending.split(b"\r", 1)
            frame = parse_slcan(line)
            if frame is None:
                self.bad_lines += 1
                continue
            asyncio.get_running_loop().create_task(self.iface.on_can_frame(*frame))


async def echo_port(node: CspNode, port: int) -> None:
    sock = node.bound_socket(port)
    while True:
        packet = await sock.recv_from()
        await sock.send_reply(packet, packet.data)


async def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--pty", required=True)
    p.add_argument("--version", type=int, choices=[1, 2], required=True)
    p.add_argument("--addr", type=int, required=True)
    p.add_argument("--daemon", type=int, required=True)
    p.add_argument("--daemon-echo-port", type=int, default=11)
    p.add_argument("--ping", type=int, default=-1, help="largest size to ping (-1: none)")
    p.add_argument("--min-size", type=int, default=0, help="smallest size to ping")
    args = p.parse_args()

    fd = os.open(args.pty, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd)
    iface = CspCanInterface() if args.version == 2 else CspCanV1Interface()
    node = CspNode()
    # netbits 0: every address is on the bus, so the daemon's node is too.
    node.router.add_interface(
        iface, address=CspAddress(address=args.addr, netbits=0, version=args.version)
    )
    bridge = SlcanBridge(fd, iface)
    loop = asyncio.get_running_loop()
    loop.add_reader(fd, bridge.on_readable)
    tasks = [
        asyncio.create_task(node.router.arun()),
        asyncio.create_task(echo_port(node, 10)),
    ]
    stdin_closed = asyncio.Event()
    loop.add_reader(sys.stdin.fileno(), lambda: os.read(sys.stdin.fileno(), 1) or stdin_closed.set())
    print("READY", flush=True)

    if args.ping >= 0:
        sizes = range(args.min_size, args.ping + 1)
        # One connection per port for every size: csp_py's own ping() takes
        # a new local port each call and never gives it back.
        for what, port in (("PINGED", 1), ("ECHOED", args.daemon_echo_port)):
            conn = await node.connect(dst=args.daemon, port=port)
            for size in sizes:
                data = bytes((size * 7 + i) % 256 for i in range(size))
                await conn.send(data)
                answer = await asyncio.wait_for(conn.recv(), REPLY_TIMEOUT_S)
                if answer.data != data:
                    print(f"{what}: {size} bytes came back as {answer.data.hex()}", file=sys.stderr)
                    return 1
            conn.close()
            print(f"{what} {len(sizes)}", flush=True)

    await stdin_closed.wait()
    for t in tasks:
        t.cancel()
    print(f"DONE bad_lines={bridge.bad_lines}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
