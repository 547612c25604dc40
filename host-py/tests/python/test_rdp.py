"""RDP from Python against the Rust `csp` tool and between Python clients,
and what a daemon restart does to an open connection."""

import hashlib
import os
import select
import subprocess
import threading

import pytest

import cspmux

TEN_MB = 10 * 1024 * 1024


def _popen(args, **kw):
    return subprocess.Popen(args, stderr=subprocess.PIPE, **kw)


def _wait_listening(p):
    """`csp listen` says so on stderr once its port is registered."""
    line = p.stderr.readline().decode()
    assert "listening" in line, line


def test_python_client_against_csp_listen_echo(muxd, csp_bin):
    p = _popen([csp_bin, "--socket", muxd.socket, "listen", "--rdp", "--echo", "-c", "1", "10"])
    try:
        _wait_listening(p)
        with cspmux.Client(socket=muxd.socket) as c:
            with c.connect(muxd.addr, 10, crc=True, timeout=5) as conn:
                assert conn.state == "open"
                assert conn.peer == (muxd.addr, 10)
                message = os.urandom(5000)
                conn.send(message, timeout=10)
                conn.wait_acked(timeout=10)
                assert conn.is_acked()
                got = b""
                while len(got) < len(message):
                    got += conn.recv(timeout=10)
                assert got == message
            assert conn.state == "closed"
        assert p.wait(10) == 0
    finally:
        p.kill()
        p.wait()


def test_python_server_against_csp_rdp(muxd, csp_bin):
    with cspmux.Client(socket=muxd.socket) as c:
        listener = c.listen(11, hmac_key="key")
        result = {}

        def serve():
            with listener.accept(timeout=10) as conn:
                data = b""
                while (chunk := conn.recv(timeout=10)) != b"":
                    data += chunk
                    if data.endswith(b"\n"):
                        conn.send(data.upper(), timeout=10)
                        conn.wait_acked(timeout=10)
                result["got"] = data

        # The listener is served by the client in this thread; csp rdp runs
        # as its own process.
        t = threading.Thread(target=serve)
        t.start()
        out = subprocess.run(
            [csp_bin, "--socket", muxd.socket, "--hmac-key", "key", "rdp", str(muxd.addr), "11"],
            input=b"command 42\n",
            capture_output=True,
            timeout=30,
        )
        t.join(30)
        assert out.returncode == 0, out.stderr
        assert out.stdout == b"COMMAND 42\n"
        assert result["got"] == b"command 42\n"
        listener.close()


def test_ten_megabytes_byte_exact_to_csp_listen(muxd, csp_bin, tmp_path):
    data = os.urandom(TEN_MB)
    out_path = tmp_path / "received.bin"
    with open(out_path, "wb") as out:
        p = _popen(
            [csp_bin, "--socket", muxd.socket, "listen", "--rdp", "--raw", "-c", "1", "12"],
            stdout=out,
        )
    try:
        _wait_listening(p)
        with cspmux.Client(socket=muxd.socket) as c:
            conn = c.connect(muxd.addr, 12, segment=1024, window=32, timeout=5)
            conn.send(data, timeout=120)
            conn.wait_acked(timeout=60)
            conn.close(timeout=10)
        assert p.wait(30) == 0
        received = out_path.read_bytes()
        assert len(received) == TEN_MB
        assert hashlib.sha256(received).digest() == hashlib.sha256(data).digest()
    finally:
        p.kill()
        p.wait()


def test_connect_to_nobody_fails(muxd):
    with cspmux.Client(socket=muxd.socket) as c:
        with pytest.raises(cspmux.ConnectionFailed, match="no answer"):
            c.connect(muxd.addr, 13, timeout=0.5)


def _drive(*clients):
    """One round of a tiny event loop over several clients: wait (at most
    20 ms) for any descriptor or timer, then let each client serve."""
    fds = [fd for c in clients if (fd := c.fileno()) is not None]
    timers = [t for c in clients if (t := c.next_timeout()) is not None]
    select.select(fds, [], [], min([0.02] + timers))
    for c in clients:
        c.process()


def test_daemon_restart_fails_open_connections(muxd):
    with cspmux.Client(socket=muxd.socket) as server, cspmux.Client(socket=muxd.socket) as c:
        listener = server.listen(14)
        # Both clients live in this thread: open without blocking, then
        # let each serve its side until the handshake is done.
        conn = c.start_connect(muxd.addr, 14)
        accepted = None
        for _ in range(200):
            server.process()
            c.process()
            accepted = accepted or listener.try_accept()
            if accepted is not None and conn.state == "open":
                break
            _drive(server, c)
        assert conn.state == "open" and accepted is not None
        muxd.restart()
        with pytest.raises(cspmux.ConnectionFailed, match="csp-muxd went away"):
            conn.recv(timeout=10)
        with pytest.raises(cspmux.ConnectionFailed):
            conn.send(b"x", timeout=1)
        # Closing says the data may not have arrived; the handle is gone.
        with pytest.raises(cspmux.ConnectionFailed):
            conn.close(timeout=0)
        assert conn.state == "closed"
        # The listener lives on: its client reconnects and registers port
        # 14 again, so a new connection gets through.
        with pytest.raises(cspmux.ConnectionFailed):
            accepted.recv(timeout=10)
        for _ in range(500):
            if server.connected and c.connected:
                break
            _drive(server, c)
        again = c.start_connect(muxd.addr, 14)
        fresh = None
        for _ in range(400):
            server.process()
            c.process()
            fresh = fresh or listener.try_accept()
            if fresh is not None and again.state == "open":
                break
            _drive(server, c)
        assert again.state == "open" and fresh is not None
