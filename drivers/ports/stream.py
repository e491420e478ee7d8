"""A byte stream with a bounded receive buffer: the part every port shares, serial or TCP.

Received bytes wait in a buffer of at most ``BUFFER_LIMIT`` bytes (a babbling device cannot grow
memory: the oldest go). Two ways to take them, one reader at a time:

* peek / consume / ``wait_data(deadline)``: a framed protocol (Modbus, text lines) looks at what
  arrived and waits for "more bytes or the deadline". "More" means bytes the reader has not been
  told about: arrivals are numbered, and ``peek``, ``read``, ``discard_input`` and a True from
  ``wait_data`` mark them told. Bytes that came while the reader was busy elsewhere, or in the
  same loop step as its deadline, are reported (True), not waited past;
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
        self._arrived = asyncio.Event()  # wakes a waiter; whether bytes are new is told by the numbers
        self._arrivals = 0  # _feed calls so far
        self._told = 0  # _arrivals when the reader last looked or was told (peek, read, discard, wait_data)
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
        self._arrivals += 1
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
        self._told = self._arrivals
        return bytes(self._buffer)

    def consume(self, n: int) -> None:
        del self._buffer[:n]

    def discard_input(self) -> int:
        dropped = len(self._buffer)
        self._buffer.clear()
        self._told = self._arrivals
        return dropped

    async def wait_data(self, deadline: float) -> bool:
        """True once bytes arrived that the reader was not yet told about; False at ``deadline`` (monotonic).

        Bytes already in the buffer but unseen (they came after the last peek) answer True at once,
        even past the deadline; so do bytes that arrived in the loop step the deadline fell in (the
        timeout and the reader callback run in the same iteration, the timeout's cancel wins the
        wait, but the arrival is counted). Past the deadline nothing is awaited, so a babbling line
        cannot keep a caller that loops "peek, wait_data" going.
        """
        self._check()
        while self._arrivals == self._told:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._arrived.clear()
            try:
                async with asyncio.timeout(remaining):  # not wait_for: 3.11 can swallow a cancel
                    await self._arrived.wait()
            except TimeoutError:
                pass  # the loop condition looks at the arrivals once more, then returns False
            self._check()
        self._told = self._arrivals
        return True

    async def read(self) -> bytes:
        """Every byte received so far, once there is at least one; PortLost when the port is gone."""
        while not self._buffer:
            self._check()
            self._arrived.clear()
            await self._arrived.wait()
        data = bytes(self._buffer)
        self._buffer.clear()
        self._told = self._arrivals
        return data
