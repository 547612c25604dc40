"""cspmux: CubeSat Space Protocol for Python through csp-muxd.

The process becomes a CSP node sharing csp-muxd's address: connectionless
sockets, RDP connections and the standard services, with CRC32, HMAC, XTEA,
SFP and RDP done in this process by host-lib (Rust).

>>> import cspmux
>>> with cspmux.Client() as csp:                     # doctest: +SKIP
...     rtt = csp.ping(5)
...     with csp.connect(5, 10, crc=True) as conn:
...         conn.send(b"command")
...         answer = conn.recv(timeout=5)

See docs/python.md for the whole API, the errors and asyncio use.
"""

from typing import Any, Dict

from . import errors
from ._native import ANY, MAX_ADDR, MAX_PORT, Connection, Datagram, Listener, Socket
from ._native import Client as _NativeClient
from .errors import (
    Busy,
    Closed,
    ConnectionClosed,
    ConnectionFailed,
    CspError,
    DaemonUnavailable,
    InvalidArgument,
    PortInUse,
    Timeout,
)
from .status import parse_record, parse_status


class Client(_NativeClient):
    __doc__ = _NativeClient.__doc__

    def status(self) -> Dict[str, Any]:
        """The daemon's status as a dict (see ``cspmux.status.parse_status``):
        node, uptime, socket, links, apps (with their ports)."""
        return parse_status(self.control("status"))


__all__ = [
    "ANY",
    "MAX_ADDR",
    "MAX_PORT",
    "Client",
    "Socket",
    "Datagram",
    "Listener",
    "Connection",
    "CspError",
    "Timeout",
    "DaemonUnavailable",
    "PortInUse",
    "ConnectionFailed",
    "ConnectionClosed",
    "InvalidArgument",
    "Closed",
    "Busy",
    "errors",
    "parse_record",
    "parse_status",
]
