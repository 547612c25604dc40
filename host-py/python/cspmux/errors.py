"""The exceptions cspmux raises, mapped from host-lib's error type.

Every failure is a ``CspError``; the subclasses also derive from the
built-in exception a Python programmer would catch for that situation.
"""


class CspError(Exception):
    """Anything that went wrong talking to csp-muxd or through it."""


class Timeout(CspError, TimeoutError):
    """Nothing arrived (or could be sent) in time.

    After ``Connection.send`` the attribute ``sent`` says how many bytes were
    queued before time ran out.
    """


class DaemonUnavailable(CspError, ConnectionError):
    """csp-muxd is not running there, refused us, or went away."""


class PortInUse(CspError):
    """Another application (or socket) holds the port."""


class ConnectionFailed(CspError, ConnectionError):
    """An RDP connection failed (or could not be opened): data sent and not
    acknowledged may be lost. The message says why."""


class ConnectionClosed(CspError, ConnectionError):
    """The RDP connection is closed: nothing more can be sent."""


class InvalidArgument(CspError, ValueError):
    """An argument out of range (port, address, size, options)."""


class Closed(CspError):
    """The socket, listener, connection or client was closed already."""


class Busy(CspError, RuntimeError):
    """The client is in a call from another thread (give each thread its
    own ``Client``)."""


__all__ = [
    "Busy",
    "CspError",
    "Timeout",
    "DaemonUnavailable",
    "PortInUse",
    "ConnectionFailed",
    "ConnectionClosed",
    "InvalidArgument",
    "Closed",
]
