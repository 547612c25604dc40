"""asyncio on top of cspmux: no thread per call.

``AsyncClient`` wraps a ``cspmux.Client`` and drives its non-blocking core
from the event loop: the daemon's descriptor is watched with
``loop.add_reader`` (and ``add_writer`` while output is buffered), the
client's next timer (RDP retransmission, reconnect attempt) with
``loop.call_at``. Every wake-up runs ``Client.process()`` and retries the
operations that wait, each a future. When the client reconnects its
descriptor changes; the registration follows.

    async with AsyncClient(cspmux.Client(socket=path)) as csp:
        sock = csp.client.bind(10)
        dgram = await csp.recvfrom(sock, timeout=5)
"""

import asyncio
import os
from typing import Any, Callable, List, Optional, Tuple

from . import Client, Connection, Datagram, Listener, Socket
from .errors import ConnectionFailed, Timeout

__all__ = ["AsyncClient"]


class AsyncClient:
    """The asyncio face of a ``cspmux.Client`` (which stays usable for the
    non-blocking calls: ``bind``, ``listen``, ``sendto``)."""

    def __init__(self, client: Client, loop: Optional[asyncio.AbstractEventLoop] = None):
        self.client = client
        self._loop = loop or asyncio.get_running_loop()
        self._fd: Optional[int] = None
        self._writing = False
        self._timer: Optional[asyncio.TimerHandle] = None
        # (attempt, future): attempt() returns None while not done.
        self._waiting: List[Tuple[Callable[[], Any], asyncio.Future]] = []
        self._kick()

    # ---- driving the client --------------------------------------------

    def _watch(self) -> None:
        """Watch the current descriptor (it changes on a reconnect)."""
        fd = self.client.fileno()
        if fd != self._fd:
            if self._fd is not None:
                self._loop.remove_reader(self._fd)
                if self._writing:
                    self._loop.remove_writer(self._fd)
                    self._writing = False
            self._fd = fd
            if fd is not None:
                self._loop.add_reader(fd, self._kick)
        wants = fd is not None and self.client.wants_write()
        if wants and not self._writing:
            self._loop.add_writer(fd, self._kick)
        elif not wants and self._writing and self._fd is not None:
            self._loop.remove_writer(self._fd)
        self._writing = wants

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        delay = self.client.next_timeout()
        if delay is not None:
            self._timer = self._loop.call_later(delay, self._kick)

    def _kick(self) -> None:
        """Something may have happened: serve it, retry waiting calls."""
        try:
            self.client.process()
        except Exception as e:  # the client was closed
            for _, fut in self._waiting:
                if not fut.done():
                    fut.set_exception(e)
            self._waiting.clear()
            return
        still = []
        for attempt, fut in self._waiting:
            if fut.done():  # cancelled or timed out
                continue
            try:
                result = attempt()
            except BaseException as e:
                fut.set_exception(e)
                continue
            if result is None:
                still.append((attempt, fut))
            else:
                fut.set_result(result)
        self._waiting = still
        self._watch()
        self._arm_timer()

    async def _until(self, attempt: Callable[[], Any], timeout: Optional[float]) -> Any:
        first = attempt()
        if first is not None:
            self._watch()
            self._arm_timer()
            return first
        fut = self._loop.create_future()
        self._waiting.append((attempt, fut))
        self._watch()
        self._arm_timer()
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise Timeout("nothing arrived in time") from None

    # ---- the calls -------------------------------------------------------

    async def recvfrom(self, sock: Socket, timeout: Optional[float] = None) -> Datagram:
        """The next datagram on ``sock``."""
        return await self._until(sock.try_recvfrom, timeout)

    async def sendto(self, sock: Socket, dst: int, dport: int, data: bytes) -> None:
        """Send a datagram (buffered locally; never waits for the peer)."""
        sock.sendto(dst, dport, data)
        self._watch()

    async def accept(self, listener: Listener, timeout: Optional[float] = None) -> Connection:
        """The next RDP connection on ``listener``."""
        return await self._until(listener.try_accept, timeout)

    async def recv(
        self, conn: Connection, max_bytes: int = 65536, timeout: Optional[float] = None
    ) -> bytes:
        """Received bytes (``b""`` at the end)."""
        return await self._until(lambda: conn.try_recv(max_bytes), timeout)

    async def send(self, conn: Connection, data: bytes, timeout: Optional[float] = None) -> None:
        """Queue all of ``data``, waiting for RDP's window as needed."""
        view = memoryview(data)
        sent = 0

        def attempt() -> Optional[bool]:
            nonlocal sent
            while sent < len(view):
                n = conn.try_send(bytes(view[sent : sent + 65536]))
                if n == 0:
                    return None
                sent += n
            return True

        try:
            await self._until(attempt, timeout)
        except Timeout as e:
            e.sent = sent  # type: ignore[attr-defined]
            raise

    async def wait_acked(self, conn: Connection, timeout: Optional[float] = None) -> None:
        """Until the peer acknowledged everything sent so far."""
        await self._until(lambda: True if conn.is_acked() else None, timeout)

    async def ping(self, node: int, size: int = 1, timeout: float = 1.0) -> float:
        """Ping ``node`` (CSP ping service, port 1); the round trip in seconds."""
        payload = os.urandom(size)
        sock = self.client.bind(None)
        try:
            start = self._loop.time()
            sock.sendto(node, 1, payload)
            self._watch()
            deadline = start + timeout
            while True:
                left = deadline - self._loop.time()
                if left <= 0:
                    raise Timeout(f"no ping reply from {node} in {timeout} s")
                d = await self.recvfrom(sock, left)
                if d.sport == 1 and (d.src == node or node == 0):
                    if d.data != payload:
                        raise ConnectionFailed(f"ping reply from {node} differs from the request")
                    return self._loop.time() - start
        finally:
            sock.close()

    async def connect(
        self, dst: int, dport: int, timeout: float = 5.0, **options: Any
    ) -> Connection:
        """Open an RDP connection without blocking the loop (keyword
        options as ``Client.connect``)."""
        conn = self.client.start_connect(dst, dport, **options)

        def opened() -> Optional[bool]:
            state = conn.state
            if state == "connecting":
                return None
            if state == "open":
                return True
            raise ConnectionFailed(f"connecting to {dst}:{dport}: {state}")

        try:
            await self._until(opened, timeout)
        except Timeout:
            conn.close(0)
            raise ConnectionFailed(f"no answer from {dst}:{dport} in {timeout} s") from None
        return conn

    def close(self) -> None:
        """Stop watching (the client stays open)."""
        if self._timer is not None:
            self._timer.cancel()
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            if self._writing:
                self._loop.remove_writer(self._fd)
        self._fd = None
        self._writing = False

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()
        self.client.close()

