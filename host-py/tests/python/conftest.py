"""Fixtures: real csp-muxd processes on private sockets (a temp dir each),
UDP bound to 127.0.0.1:0 as host-lib's Rust tests do; the binaries come
from the cargo test that runs pytest (CSPMUX_MUXD, CSPMUX_CSP)."""

import os
import socket as pysocket
import subprocess
import time
from pathlib import Path

import pytest

WAIT = 10.0  # bound on every wait for a process


def _bin(var: str) -> str:
    path = os.environ.get(var)
    if not path or not Path(path).exists():
        pytest.fail(f"{var} must name the built binary (run through `cargo test -p host-py`)")
    return path


class Muxd:
    """A csp-muxd process with node address ``addr`` on ``socket``."""

    def __init__(self, directory: Path, addr: int = 1, extra: str = ""):
        self.dir = directory
        self.addr = addr
        self.socket = str(directory / "muxd.sock")
        self.config = directory / "muxd.toml"
        self.config.write_text(
            f'[node]\naddress = {addr}\n[udp]\nbind = "127.0.0.1:0"\n{extra}\n'
        )
        self.proc = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [_bin("CSPMUX_MUXD"), "--config", str(self.config), "--socket", self.socket],
            env={**os.environ, "RUST_LOG": "warn"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            s = pysocket.socket(pysocket.AF_UNIX)
            try:
                s.connect(self.socket)
                return
            except OSError:
                pass
            finally:
                s.close()
            if self.proc.poll() is not None:
                raise RuntimeError(f"csp-muxd exited: {self.proc.stderr.read().decode()}")
            time.sleep(0.01)
        raise RuntimeError(f"csp-muxd did not open {self.socket} in time")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(WAIT)
            self.proc.stderr.close()
            self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()


@pytest.fixture
def muxd(tmp_path):
    m = Muxd(tmp_path)
    yield m
    m.kill()


def free_tcp_port() -> int:
    """A loopback port free a moment ago (the daemon binds it right after)."""
    with pysocket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tcp_muxd(tmp_path):
    """A daemon that also listens on loopback TCP with a token."""
    port = free_tcp_port()
    m = Muxd(tmp_path, extra=f'[ipc]\ntcp_listen = "127.0.0.1:{port}"\ntcp_token = "open-sesame-open-sesame"')
    m.tcp = f"127.0.0.1:{port}"
    yield m
    m.kill()


@pytest.fixture
def csp_bin():
    """The `csp` command-line tool."""
    return _bin("CSPMUX_CSP")
