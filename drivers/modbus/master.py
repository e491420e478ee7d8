"""One Modbus transaction at a time on a transport: request out, one validated reply in.

The master keeps the line discipline: the inter-frame silence before every request,
stale input discarded before sending, the reply timeout counted from the end of the
request on the wire, and after a bad reply it waits for the line to fall quiet so the
next transaction starts on a frame boundary. Bytes already received when the deadline is noticed
are read before silence is declared: an event loop held up past the deadline (a loaded machine)
must not turn a reply that came in time into a timeout.

Late replies. On a serial line a reply carries no transaction id, so a unit that answers
after its timeout has expired would have its reply taken for the answer to the next
request (bench/modbus_stack.py, scenario ``late_replies``: pymodbus 3.16 and the first
version of this master both published such values). After a timeout the master therefore
remembers the unit: a frame from it inside another unit's transaction is dropped as late
(not blamed on the other unit), and the next different request to that same unit is sent only
after waiting up to one more timeout for the late reply to arrive and be dropped. A retry of
the identical request is sent at once: a late reply to it carries the same unit, function and
addresses, so it answers the retry correctly (the bus polls a unit's other blocks only after
its poll interval, by which time the wait has long passed). A unit later
than twice its timeout is a configuration error the counts in ``LineStats.late_replies``
and the log make visible.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from drivers.modbus.frames import FrameError, FramerKind, decode, encode, parse_response
from drivers.ports.stream import Transport

log = logging.getLogger("fieldgate.modbus")

LATE_LOG_EVERY = 30.0  # seconds between "unit answers after its timeout" warnings per unit


class NoAnswer(Exception):
    """Nothing (or nothing complete) arrived before the timeout."""


@dataclass
class LineStats:
    requests: int = 0
    timeouts: int = 0
    bad_frames: int = 0
    exceptions: int = 0
    discarded_bytes: int = 0
    late_replies: int = 0  # replies that came after their request had timed out (dropped)


class Master:
    def __init__(self, transport: Transport, framer: FramerKind, gap: float = 0.0) -> None:
        self.transport = transport
        self.framer = framer
        self.gap = gap  # inter-frame silence (t3.5 + margin) for serial lines; 0 on TCP
        self.stats = LineStats()
        self._tid = 0
        self._late_unit: int | None = None  # serial unit whose last request timed out: its reply may still come
        self._late_request = b""
        self._late_until = 0.0
        self._late_logged: dict[int, float] = {}

    async def transact(self, unit: int, request: bytes, reply_within: float) -> list[int]:
        """Send ``request`` (a PDU) to ``unit``; the registers/bits it returned ([] for writes).

        Raises NoAnswer, FrameError, ExceptionReply or PortLost.
        """
        t = self.transport
        serial_line = self.framer != "socket"
        retry_of_late = serial_line and unit == self._late_unit and request == self._late_request
        if serial_line and unit == self._late_unit and not retry_of_late:
            await self._await_late_reply()
        quiet_for = time.monotonic() - t.last_activity
        if quiet_for < self.gap:
            await asyncio.sleep(self.gap - quiet_for)
        self.stats.discarded_bytes += t.discard_input()  # late replies, line noise
        self._tid = (self._tid + 1) & 0xFFFF
        frame = encode(self.framer, unit, request, self._tid)
        self.stats.requests += 1
        await t.send(frame)
        sent_at = time.monotonic()
        # A broadcast (unit 0) gets no reply (Modbus over serial line 2.1).
        if unit == 0 and serial_line:
            return []
        deadline = time.monotonic() + len(frame) * t.char_time + reply_within
        try:
            values = await self._receive(unit, request, deadline)
        except NoAnswer:
            self.stats.timeouts += 1
            if serial_line:
                self._late_unit, self._late_request = unit, request
                self._late_until = time.monotonic() + reply_within
            raise
        except FrameError:
            self.stats.bad_frames += 1
            await self._drain(deadline)
            raise
        if retry_of_late:
            # The answer may have been the late reply to the first attempt (same unit and request, so
            # the same values); the retry's own reply can still follow, as late: keep expecting it.
            self._late_until = sent_at + len(frame) * t.char_time + 2 * reply_within
        return values

    async def _receive(self, unit: int, request: bytes, deadline: float) -> list[int]:
        t = self.transport
        looked_again = False  # past the deadline, the buffer is looked at once more, never in a loop
        while True:
            buf = t.peek()
            got = decode(self.framer, buf)  # FrameError propagates: CRC, garbage, bad header
            if got is not None:
                t.consume(got.consumed)
                if self.framer == "socket" and got.tid != self._tid:
                    continue  # a late reply to an earlier (timed-out) request on this connection
                if self.framer != "socket" and got.unit != unit:
                    if got.unit == self._late_unit:
                        self._late_reply(got.unit)  # the unit that timed out before this transaction
                        continue
                    raise FrameError(f"reply from unit {got.unit}, asked unit {unit}")
                if self.framer == "rtu" and t.peek():
                    # A long frame: more bytes followed the reply without the inter-frame silence.
                    raise FrameError(f"{len(t.peek())} unexpected bytes after the reply")
                return parse_response(request, got.pdu)
            if not await t.wait_data(deadline):
                if not looked_again and t.peek() != buf:
                    # The reply came in while the event loop was held up past the deadline (a loaded
                    # machine): the timeout and the data were due in the same loop iteration and the
                    # timeout won. No other request has gone out since, so it is this one's answer.
                    # Once only: a line that keeps babbling past the deadline must not hold the bus.
                    looked_again = True
                    continue
                if buf:
                    raise FrameError(f"truncated reply ({len(buf)} bytes, then silence)")
                raise NoAnswer("timeout")

    async def _await_late_reply(self) -> None:
        """Before asking the unit that last timed out again: let its late reply arrive and drop it."""
        t = self.transport
        unit, until = self._late_unit, self._late_until
        self._late_unit = None
        if unit is None:
            return
        arrived = bool(t.peek()) or await t.wait_data(until)
        if arrived:
            self._late_reply(unit)
            await self._drain(time.monotonic() + max(self.gap, 0.005) * 4)
        self.stats.discarded_bytes += t.discard_input()

    def _late_reply(self, unit: int) -> None:
        self.stats.late_replies += 1
        now = time.monotonic()
        if now - self._late_logged.get(unit, -LATE_LOG_EVERY) >= LATE_LOG_EVERY:
            self._late_logged[unit] = now
            log.warning("unit %d answered after its timeout (reply dropped): raise this device's timeout", unit)

    async def _drain(self, deadline: float) -> None:
        """Let the rest of a bad frame arrive and drop it, until the line is quiet (bounded by the deadline)."""
        t = self.transport
        quiet = max(self.gap, 0.005)
        while time.monotonic() < deadline:
            if not await t.wait_data(min(deadline, time.monotonic() + quiet)):
                break
        self.stats.discarded_bytes += t.discard_input()
