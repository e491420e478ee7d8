"""A byte stream with a bounded receive buffer: the part every port shares, serial or TCP.

Received bytes wait in a buffer of at most ``BUFFER_LIMIT`` bytes (a babbling device cannot grow
memory: the oldest go). Two ways to take them, one reader at a time:

* peek / consume / ``wait_data(deadline)``: a framed protocol (Modbus, text lines) looks at what
  arrived and waits for "more bytes or the deadline";
* ``read()``: a stream reader (a modem) takes whatever arrived, waiting as long as it takes.

A port that vanishes (USB adapter unplugged, pty closed, connection reset) raises ``PortLost``
from every call until it is reopened: its owner decides when. Waits use ``asyncio.timeout``, not
``wait_for``: on Python 3.11 wait_for can swallow a cancel that lands in the same step as the
data, and a stop path that cancels its buses would then wait forever.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod

BUFFER_LIMIT = 4096  # received bytes kept; a babbling device cannot grow memory


class PortLost(Exception):
    """The port or connection is gone; the owner reports comm_fail and reopens it later."""


class PortBusy(PortLost):
    """Another process holds the port (a running gateway, a terminal program)."""


class Transport(ABC):
    """A byte stream with a bounded receive buffer."""

    char_time: float = 0.0  # seconds per character on the wire (0 for TCP)

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._arrived = asyncio.Event()
        self._lost: str | None = None
        self.last_activity = 0.0  # monotonic time the line was last busy (sent or received)
        self.bytes_sent = 0
        self.bytes_received = 0

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    async def _write(self, data: bytes) -> None: ...

    @property
    def lost(self) -> str | None:
        return self._lost

    def _check(self) -> None:
        if self._lost is not None:
            raise PortLost(self._lost)

    def _fail(self, why: str) -> None:
        if self._lost is None:
            self._lost = why
        self._arrived.set()

    def _feed(self, data: bytes) -> None:
        self._buffer += data
        self.bytes_received += len(data)
        if len(self._buffer) > BUFFER_LIMIT:
            del self._buffer[: len(self._buffer) - BUFFER_LIMIT]
        self.last_activity = time.monotonic()
        self._arrived.set()

    async def send(self, data: bytes) -> None:
        self._check()
        await self._write(data)
        self.bytes_sent += len(data)
        # The line is busy until the last character has left: the inter-frame gap counts from there.
        self.last_activity = time.monotonic() + len(data) * self.char_time

    def peek(self) -> bytes:
        return bytes(self._buffer)

    def consume(self, n: int) -> None:
        del self._buffer[:n]

    def discard_input(self) -> int:
        dropped = len(self._buffer)
        self._buffer.clear()
        return dropped

    async def wait_data(self, deadline: float) -> bool:
        """Wait until new bytes arrive (True) or ``deadline`` (monotonic) passes (False)."""
        self._check()
        self._arrived.clear()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        try:
            async with asyncio.timeout(remaining):  # not wait_for: 3.11 can swallow a cancel
                await self._arrived.wait()
        except TimeoutError:
            return False
        self._check()
        return True

    async def read(self) -> bytes:
        """Every byte received so far, once there is at least one; PortLost when the port is gone."""
        while not self._buffer:
            self._check()
            self._arrived.clear()
            await self._arrived.wait()
        data = bytes(self._buffer)
        self._buffer.clear()
        return data
