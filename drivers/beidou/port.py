"""Asyncio access to a serial port (pyserial) and the errors the satellite links raise.

Why a non-blocking fd with ``loop.add_reader`` rather than a reader thread: a link has one
port and one reader, the modem talks in short bursts, and cancellation (shutdown, failover)
must be immediate; a thread blocked in ``read()`` cannot be cancelled, and pyserial-asyncio
is not available. pyserial still does the port set-up (baud, 8N1, raw mode, exclusive lock).
Also used by drivers/iridium (the lead may move it to a shared drivers module).
"""

from __future__ import annotations

import asyncio
import contextlib
import os

import serial


class SatLinkError(Exception):
    """Base of the satellite link errors."""


class LinkNotReady(SatLinkError):
    """The modem is not (yet) usable: port closed, probe failed, no card."""


class MessageTooLarge(SatLinkError, ValueError):
    """The payload exceeds what the modem/card carries in one message; split or pack it first."""


class SendRefused(SatLinkError):
    """The modem refused the message (after honouring any wait it asked for)."""


class SendTimeout(SatLinkError):
    """The modem did not answer in time; the message may or may not have left."""


class PortClosed(SatLinkError):
    """The serial device went away (unplugged, pty peer closed)."""


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


class AsyncSerialPort:
    """A pyserial port read and written through the event loop, never blocking it."""

    def __init__(self, device: str, baud: int) -> None:
        self.device = device
        self.baud = baud
        self._ser: serial.Serial | None = None

    def open(self) -> None:
        try:
            self._ser = serial.Serial(self.device, self.baud, timeout=0, write_timeout=0, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PortClosed(f"cannot open {self.device}: {exc}") from exc
        os.set_blocking(self._ser.fileno(), False)

    @property
    def is_open(self) -> bool:
        return self._ser is not None

    def close(self) -> None:
        if self._ser is not None:
            ser, self._ser = self._ser, None
            with contextlib.suppress(serial.SerialException, OSError):
                ser.close()

    def _fd(self) -> int:
        if self._ser is None:
            raise PortClosed(f"{self.device} is not open")
        return int(self._ser.fileno())

    async def read(self) -> bytes:
        """Some bytes (at least one); raises PortClosed when the device is gone."""
        loop = asyncio.get_running_loop()
        woken = False
        while True:
            fd = self._fd()
            try:
                data = os.read(fd, 4096)
            except BlockingIOError:
                data = None  # spurious wake-up: keep waiting
            except OSError as exc:  # EIO once a pty's other end closes or a USB adapter goes
                raise PortClosed(f"{self.device}: {exc}") from exc
            if data:
                return data
            # pyserial's VMIN=0/VTIME=0 makes an idle tty read return b"" rather than EAGAIN;
            # b"" right after the loop said "readable" is a hang-up, not idleness
            if woken and data == b"":
                raise PortClosed(f"{self.device}: hung up")
            woken = True
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(fd, _wake, ready)
            try:
                await ready
            finally:
                loop.remove_reader(fd)

    async def write(self, data: bytes) -> None:
        loop = asyncio.get_running_loop()
        view = memoryview(data)
        while view:
            fd = self._fd()
            try:
                n = os.write(fd, view)
                view = view[n:]
                continue
            except BlockingIOError:
                pass
            except OSError as exc:
                raise PortClosed(f"{self.device}: {exc}") from exc
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_writer(fd, _wake, ready)
            try:
                await ready
            finally:
                loop.remove_writer(fd)
