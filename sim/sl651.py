"""SL 651 stations and a centre for the rig: what an existing RTU sends, and a centre that records and confirms.

``StationClient`` talks to a receiver over TCP like an RTU in M2 (send, wait for the confirmation); ``timed_report``
builds the 32H frame of a station; ``RecordingCentre`` is a minimal centre for the gateway-side tests (it
confirms every data report and keeps the decoded messages), started and stopped at will to make outages.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import datetime

from drivers.sl651.body import DATA_REPORTS, Body
from drivers.sl651.elements import Element, Station, measured
from drivers.sl651.errors import Sl651Error
from drivers.sl651.frame import EOT, ETX, Direction, Frame, FrameReader
from drivers.sl651.message import Message, confirmation, decode_message, encode


def timed_report(station: bytes, serial: int, when: datetime, values: dict[int, float | None], *,
                 centre: int = 1, password: int = 0x1234, station_class: int = 0x48, function: int = 0x32) -> bytes:
    """A data report (32H by default) with one observation time and ``{identifier: value}``."""
    elements = (Element(0xF1, 0xF1, Station(station, station_class)),
                Element(0xF0, 0xF0, when.replace(second=0, microsecond=0)),
                *(measured(ident, value) for ident, value in values.items()))
    frame = Frame(Direction.UP, centre, station, password, function, b"", ETX)
    return encode(Message(frame, Body(serial, when.replace(microsecond=0), elements)))


class StationClient:
    """One TCP connection to a receiver; ``report`` sends a frame and returns the answer (b"" if none came)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.frames = FrameReader()

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def report(self, data: bytes, wait: float = 5.0) -> bytes:
        if self.writer is None or self.reader is None:
            await self.connect()
        assert self.writer is not None and self.reader is not None
        self.writer.write(data)
        await self.writer.drain()
        buf = b""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                while True:
                    chunk = await self.reader.read(4096)
                    if not chunk:
                        break
                    buf += chunk
                    if any(isinstance(f, Frame) for f in FrameReader().feed(buf)):
                        break
        return buf

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self.writer.wait_closed()
        self.reader = self.writer = None


@dataclass
class RecordingCentre:
    """A centre that confirms every data report (EOT) and records what it decoded, in arrival order."""

    host: str = "127.0.0.1"
    port: int = 0
    messages: list[Message] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    server: asyncio.Server | None = None
    answer: bool = True  # False: a centre that receives but never confirms
    _open: set[asyncio.StreamWriter] = field(default_factory=set)

    async def start(self) -> RecordingCentre:
        self.server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            for writer in list(self._open):  # Server.close() leaves open connections be (3.11): an outage cuts them
                writer.close()
            await self.server.wait_closed()
            self.server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        frames = FrameReader()
        self._open.add(writer)
        try:
            while self.server is not None and (data := await reader.read(4096)):
                for got in frames.feed(data):
                    if isinstance(got, Sl651Error):
                        continue
                    try:
                        message = decode_message(got)
                    except Sl651Error:
                        continue
                    self.messages.append(message)
                    self.raw.append(got.body)
                    if self.answer and got.function in DATA_REPORTS and message.body is not None:
                        writer.write(confirmation(got, message.body.serial, datetime.now().replace(microsecond=0), EOT))
                        await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._open.discard(writer)
            writer.close()
