"""The asyncio module, and the examples of examples/python run as they
would be (processes against a real daemon)."""

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

import cspmux
from cspmux.asyncio import AsyncClient

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "python"


def test_async_datagrams_rdp_and_ping(muxd):
    async def main():
        async with AsyncClient(cspmux.Client(socket=muxd.socket)) as server, AsyncClient(
            cspmux.Client(socket=muxd.socket)
        ) as client:
            rtt = await client.ping(muxd.addr, size=64)
            assert 0 < rtt < 1

            sock = server.client.bind(10)
            mine = client.client.bind(None)
            await client.sendto(mine, muxd.addr, 10, b"async hello")
            d = await server.recvfrom(sock, timeout=5)
            assert d.data == b"async hello"
            with pytest.raises(cspmux.Timeout):
                await server.recvfrom(sock, timeout=0.05)

            listener = server.client.listen(11)
            payload = os.urandom(300_000)

            async def serve():
                conn = await server.accept(listener, timeout=5)
                got = b""
                while len(got) < len(payload):
                    got += await server.recv(conn, timeout=5)
                await server.send(conn, got[::-1], timeout=10)
                await server.wait_acked(conn, timeout=10)
                return conn

            task = asyncio.create_task(serve())
            conn = await client.connect(muxd.addr, 11, segment=1024, window=16)
            await client.send(conn, payload, timeout=10)
            back = b""
            while len(back) < len(payload):
                back += await client.recv(conn, timeout=10)
            assert back == payload[::-1]
            served = await task
            conn.close()
            served.close()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_async_connect_to_nobody_fails(muxd):
    async def main():
        async with AsyncClient(cspmux.Client(socket=muxd.socket)) as acl:
            with pytest.raises(cspmux.ConnectionFailed):
                await acl.connect(muxd.addr, 13, timeout=0.3)

    asyncio.run(main())


def test_examples_ground_script_against_asyncio_echo_server(muxd):
    server = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "echo_server_asyncio.py"), "--socket", muxd.socket],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert "echo on" in server.stdout.readline()
        out = subprocess.run(
            [sys.executable, str(EXAMPLES / "ground.py"), "--socket", muxd.socket, str(muxd.addr)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        assert "ping 1:" in out.stdout
        assert "ident: csp-muxd" in out.stdout
        assert "response: get telemetry" in out.stdout
        # And datagrams, from the sync API.
        with cspmux.Client(socket=muxd.socket) as c:
            s = c.bind(None)
            s.sendto(muxd.addr, 10, b"dgram")
            assert s.recvfrom(timeout=5).data == b"dgram"
    finally:
        server.kill()
        server.wait()
