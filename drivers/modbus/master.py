"""One Modbus transaction at a time on a transport: request out, one validated reply in.

The master keeps the line discipline: the inter-frame silence before every request,
stale input discarded before sending, the reply timeout counted from the end of the
request on the wire, and after a bad reply it waits for the line to fall quiet so the
next transaction starts on a frame boundary.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from drivers.modbus.frames import FrameError, FramerKind, decode, encode, parse_response
from drivers.modbus.transport import Transport


class NoAnswer(Exception):
    """Nothing (or nothing complete) arrived before the timeout."""


@dataclass
class LineStats:
    requests: int = 0
    timeouts: int = 0
    bad_frames: int = 0
    exceptions: int = 0
    discarded_bytes: int = 0


class Master:
    def __init__(self, transport: Transport, framer: FramerKind, gap: float = 0.0) -> None:
        self.transport = transport
        self.framer = framer
        self.gap = gap  # inter-frame silence (t3.5 + margin) for serial lines; 0 on TCP
        self.stats = LineStats()
        self._tid = 0

    async def transact(self, unit: int, request: bytes, reply_within: float) -> list[int]:
        """Send ``request`` (a PDU) to ``unit``; the registers/bits it returned ([] for writes).

        Raises NoAnswer, FrameError, ExceptionReply or PortLost.
        """
        t = self.transport
        quiet_for = time.monotonic() - t.last_activity
        if quiet_for < self.gap:
            await asyncio.sleep(self.gap - quiet_for)
        self.stats.discarded_bytes += t.discard_input()  # late replies, line noise
        self._tid = (self._tid + 1) & 0xFFFF
        frame = encode(self.framer, unit, request, self._tid)
        self.stats.requests += 1
        await t.send(frame)
        # A broadcast (unit 0) gets no reply (Modbus over serial line 2.1).
        if unit == 0 and self.framer != "socket":
            return []
        deadline = time.monotonic() + len(frame) * t.char_time + reply_within
        try:
            return await self._receive(unit, request, deadline)
        except NoAnswer:
            self.stats.timeouts += 1
            raise
        except FrameError:
            self.stats.bad_frames += 1
            await self._drain(deadline)
            raise

    async def _receive(self, unit: int, request: bytes, deadline: float) -> list[int]:
        t = self.transport
        while True:
            buf = t.peek()
            got = decode(self.framer, buf)  # FrameError propagates: CRC, garbage, bad header
            if got is not None:
                t.consume(got.consumed)
                if self.framer == "socket" and got.tid != self._tid:
                    continue  # a late reply to an earlier (timed-out) request on this connection
                if self.framer != "socket" and got.unit != unit:
                    raise FrameError(f"reply from unit {got.unit}, asked unit {unit}")
                if self.framer == "rtu" and t.peek():
                    # A long frame: more bytes followed the reply without the inter-frame silence.
                    raise FrameError(f"{len(t.peek())} unexpected bytes after the reply")
                return parse_response(request, got.pdu)
            if not await t.wait_data(deadline):
                if buf:
                    raise FrameError(f"truncated reply ({len(buf)} bytes, then silence)")
                raise NoAnswer("timeout")

    async def _drain(self, deadline: float) -> None:
        """Let the rest of a bad frame arrive and drop it, until the line is quiet (bounded by the deadline)."""
        t = self.transport
        quiet = max(self.gap, 0.005)
        while time.monotonic() < deadline:
            if not await t.wait_data(min(deadline, time.monotonic() + quiet)):
                break
        self.stats.discarded_bytes += t.discard_input()
