"""A serial port (pyserial) driven by the event loop: non-blocking reads and writes, no threads.

pyserial does the set-up: baud and framing, raw mode, the exclusive lock (flock) that keeps a
technician tool from talking over a running gateway, and the kernel RS-485 mode (TIOCSRS485).
The descriptor is then read with ``loop.add_reader`` and written with ``os.write``/``add_writer``:
a thread blocked in ``read()`` cannot be cancelled, and a shutdown or failover must be immediate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

import serial
import serial.rs485

from drivers.ports.settings import RS485Options, SerialSettings
from drivers.ports.stream import PortBusy, PortLost, Transport

log = logging.getLogger("fieldgate.ports")

READ_CHUNK = 4096  # bytes taken per wake-up; the buffer behind it is bounded too


def rs485_settings(options: RS485Options) -> serial.rs485.RS485Settings:
    return serial.rs485.RS485Settings(
        rts_level_for_tx=options.rts_level_for_tx, rts_level_for_rx=options.rts_level_for_rx,
        loopback=options.loopback, delay_before_tx=options.delay_before_tx, delay_before_rx=options.delay_before_rx,
    )


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


class SerialTransport(Transport):
    """A serial port read through the event loop (add_reader): no threads, no blocking call."""

    def __init__(self, settings: SerialSettings) -> None:
        super().__init__()
        self.settings = settings
        self.char_time = settings.char_time
        self._serial: serial.Serial | None = None
        self._fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._write_ready: asyncio.Future[None] | None = None  # a write waiting for the kernel's buffer

    async def open(self) -> None:
        s = self.settings
        try:
            port = serial.Serial(
                s.port, baudrate=s.baud, parity=s.parity, stopbits=s.stopbits, bytesize=s.bytesize,
                timeout=0, exclusive=s.exclusive,
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
                port.rs485_mode = rs485_settings(s.rs485)
            except (ValueError, OSError, serial.SerialException) as exc:
                # ptys and many USB adapters have no kernel RS-485 mode (auto-direction adapters
                # do not need one); say so once, the line still works.
                log.info("serial %s: RS-485 mode not supported here (%s); continuing without", s.port, exc)
        try:
            fd = port.fileno()
            os.set_blocking(fd, False)
            port.reset_input_buffer()
        except (serial.SerialException, OSError) as exc:
            # The adapter vanished between open and reset: close the descriptor, report the port lost.
            with contextlib.suppress(serial.SerialException, OSError):
                port.close()
            raise PortLost(f"{s.port} went away while opening: {exc}") from None
        self._serial, self._fd = port, fd
        self._lost = None
        self.discard_input()  # and nothing is "new" from the last connection
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(fd, self._on_readable)

    def _on_readable(self) -> None:
        if self._fd is None:
            return
        try:
            data = os.read(self._fd, READ_CHUNK)
        except BlockingIOError:
            return  # a spurious wake-up: nothing to read yet
        except OSError as exc:  # EIO once a pty's other end closes or a USB adapter goes
            self._lose(f"{self.settings.port}: {exc}")
            return
        if not data:
            # VMIN=0/VTIME=0 makes an idle tty read return b"" rather than EAGAIN; b"" right after
            # the loop said "readable" is a hang-up, not idleness.
            self._lose(f"{self.settings.port}: hung up")
            return
        self._feed(data)

    def _lose(self, why: str) -> None:
        self._detach()
        self._fail(why)

    def _detach(self) -> None:
        if self._fd is not None and self._loop is not None:
            # The descriptor may already be gone with the device.
            with contextlib.suppress(ValueError, OSError, KeyError):
                self._loop.remove_reader(self._fd)

    async def _write(self, data: bytes) -> None:
        fd = self._fd
        if fd is None:
            raise PortLost("port not open")
        try:
            sent = os.write(fd, data)  # the usual case: the kernel takes the whole frame at once
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise self._lost_on_write(exc) from None
        if sent < len(data):
            await self._write_rest(fd, memoryview(data)[sent:])

    async def _write_rest(self, fd: int, rest: memoryview) -> None:
        """The kernel's buffer is full: wait until it takes the rest, at most ``write_timeout``."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.settings.write_timeout):
                while rest:
                    self._write_ready = ready = loop.create_future()
                    loop.add_writer(fd, _wake, ready)
                    try:
                        await ready
                    finally:
                        self._write_ready = None
                        loop.remove_writer(fd)
                    if self._fd != fd:  # closed meanwhile: the number may already name another file
                        raise PortLost(f"{self.settings.port}: closed while writing")
                    try:
                        rest = rest[os.write(fd, rest):]
                    except BlockingIOError:
                        continue
        except TimeoutError:
            # A line that takes nothing for seconds (a wedged adapter, flow control stuck off) is lost.
            raise self._lost_on_write(f"write timed out after {self.settings.write_timeout:g} s") from None
        except OSError as exc:
            raise self._lost_on_write(exc) from None

    def _lost_on_write(self, cause: object) -> PortLost:
        why = f"{self.settings.port}: {cause}"
        self._lose(why)
        return PortLost(why)

    def close(self) -> None:
        self._detach()
        if self._write_ready is not None:
            _wake(self._write_ready)  # the waiting write sees the port closed, not a timeout
        if self._serial is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                self._serial.close()
        self._serial = self._fd = None
        self._fail("closed")
