"""Byte streams a field bus runs on: a serial port (pyserial, driven by the event loop) or a TCP socket.

Both keep received bytes in a bounded buffer and let the reader wait for "more bytes or a
deadline". A port that vanishes (USB adapter unplugged, pty closed, connection reset)
raises ``PortLost`` from every call until it is reopened: the bus owner decides when.
Serial ports are opened with an exclusive lock so a technician tool cannot talk over a
running gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

import serial
import serial.rs485

log = logging.getLogger("fieldgate.fieldbus")

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


@dataclass(frozen=True, slots=True)
class SerialSettings:
    port: str
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8
    rs485: serial.rs485.RS485Settings | None = None
    exclusive: bool = True


class SerialTransport(Transport):
    """A serial port read through the event loop (add_reader): no threads, no blocking reads."""

    def __init__(self, settings: SerialSettings) -> None:
        super().__init__()
        self.settings = settings
        bits = 1 + settings.bytesize + (0 if settings.parity == "N" else 1) + settings.stopbits
        self.char_time = bits / settings.baudrate
        self._serial: serial.Serial | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def open(self) -> None:
        s = self.settings
        try:
            port = serial.Serial(
                s.port, baudrate=s.baudrate, parity=s.parity, stopbits=s.stopbits, bytesize=s.bytesize,
                timeout=0, write_timeout=2.0, exclusive=s.exclusive,
            )
        except serial.SerialException as exc:
            text = str(exc)
            if "lock" in text.lower() or "resource temporarily unavailable" in text.lower():
                raise PortBusy(f"{s.port} is in use by another process") from None
            raise PortLost(f"cannot open {s.port}: {text}") from None
        except (OSError, ValueError) as exc:
            raise PortLost(f"cannot open {s.port}: {exc}") from None
        if s.rs485 is not None:
            try:
                port.rs485_mode = s.rs485
            except (ValueError, OSError, serial.SerialException) as exc:
                # ptys and many USB adapters have no kernel RS-485 mode (auto-direction adapters
                # do not need one); say so once, the line still works.
                log.info("serial %s: RS-485 mode not supported here (%s); continuing without", s.port, exc)
        try:
            port.reset_input_buffer()
        except (serial.SerialException, OSError) as exc:
            # The adapter vanished between open and reset: close the descriptor, report the port lost.
            port.close()
            raise PortLost(f"{s.port} went away while opening: {exc}") from None
        self._serial = port
        self._lost = None
        self._buffer.clear()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(port.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        port = self._serial
        if port is None:
            return
        try:
            data = port.read(max(1, port.in_waiting))
        except (serial.SerialException, OSError) as exc:
            self._detach()
            self._fail(f"{self.settings.port}: {exc}")
            return
        if data:
            self._feed(data)

    def _detach(self) -> None:
        if self._serial is not None and self._loop is not None:
            # The descriptor may already be gone with the device.
            with contextlib.suppress(ValueError, OSError, serial.SerialException):
                self._loop.remove_reader(self._serial.fileno())

    async def _write(self, data: bytes) -> None:
        if self._serial is None:
            raise PortLost("port not open")
        try:
            self._serial.write(data)
        except (serial.SerialException, OSError) as exc:
            self._detach()
            self._fail(f"{self.settings.port}: {exc}")
            raise PortLost(str(exc)) from None

    def close(self) -> None:
        self._detach()
        if self._serial is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                self._serial.close()
        self._serial = None
        self._fail("closed")


class TcpTransport(Transport):
    """A TCP connection (Modbus TCP, or a serial server passing RTU/ASCII frames through)."""

    def __init__(self, host: str, port: int, connect_timeout: float = 5.0) -> None:
        super().__init__()
        self.host, self.port = host, port
        self.connect_timeout = connect_timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pump: asyncio.Task[None] | None = None

    async def open(self) -> None:
        try:
            reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.connect_timeout
            )
        except (OSError, TimeoutError) as exc:
            raise PortLost(f"cannot connect to {self.host}:{self.port}: {exc or 'timeout'}") from None
        self._lost = None
        self._buffer.clear()
        self._reader = reader
        self._pump = asyncio.create_task(self._read_loop(reader), name=f"tcp-{self.host}:{self.port}")

    async def _read_loop(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                data = await reader.read(4096)
                if not data:
                    self._fail(f"{self.host}:{self.port} closed the connection")
                    return
                self._feed(data)
        except OSError as exc:
            self._fail(f"{self.host}:{self.port}: {exc}")

    async def _write(self, data: bytes) -> None:
        if self._writer is None:
            raise PortLost("not connected")
        try:
            self._writer.write(data)
            await asyncio.wait_for(self._writer.drain(), self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            self._fail(f"{self.host}:{self.port}: {exc or 'write timeout'}")
            raise PortLost(str(exc)) from None

    def close(self) -> None:
        if self._pump is not None:
            self._pump.cancel()
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
        self._pump = None
        self._fail("closed")
