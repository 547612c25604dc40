#!/usr/bin/env python3
"""An asyncio echo server on csp-muxd: connectionless datagrams on one port
and RDP connections on another, all in one event loop, no threads.

    python3 echo_server_asyncio.py [--socket PATH] [--port 10] [--rdp-port 11]

Try it with the CLI: `csp send --reply 1 10 hello`, `echo hi | csp rdp 1 11`.
"""

import argparse
import asyncio

import cspmux
from cspmux.asyncio import AsyncClient


async def echo_datagrams(acl: AsyncClient, sock: cspmux.Socket) -> None:
    while True:
        d = await acl.recvfrom(sock)
        await acl.sendto(sock, d.src, d.sport, d.data)


async def echo_connection(acl: AsyncClient, conn: cspmux.Connection) -> None:
    try:
        while (data := await acl.recv(conn)) != b"":
            await acl.send(conn, data)
        await acl.wait_acked(conn, timeout=10)
    except cspmux.CspError as e:
        print(f"connection {conn.peer if conn.state != 'closed' else ''}: {e}")
    finally:
        try:
            conn.close(timeout=0)
        except cspmux.CspError:
            pass


async def serve_rdp(acl: AsyncClient, listener: cspmux.Listener) -> None:
    tasks = set()
    while True:
        conn = await acl.accept(listener)
        task = asyncio.create_task(echo_connection(acl, conn))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def main(args: argparse.Namespace) -> None:
    async with AsyncClient(cspmux.Client(socket=args.socket, name="echo-asyncio")) as acl:
        sock = acl.client.bind(args.port)
        listener = acl.client.listen(args.rdp_port)
        print(f"echo on {acl.client.node}:{args.port} (datagrams) and :{args.rdp_port} (RDP)", flush=True)
        await asyncio.gather(echo_datagrams(acl, sock), serve_rdp(acl, listener))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--socket", help="csp-muxd's socket (default: the daemon's default)")
    p.add_argument("--port", type=int, default=10)
    p.add_argument("--rdp-port", type=int, default=11)
    try:
        asyncio.run(main(p.parse_args()))
    except KeyboardInterrupt:
        pass
