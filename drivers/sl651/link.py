"""The ``sl651`` link: the box as one SL 651 station (RTU) of one centre, fed from the journal.

The link runner (gateway/links.py) pulls this link's records with its own cursors and class filter and hands
them over as messages (``Sl651Profile``): readings go into the 5-minute window they were taken in; a window's
messages return from ``send`` only when the timed report (32H) that carries its values was confirmed by the
centre — so the journal acknowledges nothing the centre has not confirmed, and an outage loses nothing: the
records stay pending, come back oldest first once the centre answers again, and are reported (each replayed
window as its own 32H at its own time). A ``raised`` alarm of a rule in ``added_rules`` sends a 33H at once.

Protocol (6.3): M2 — send, wait ``confirm_timeout`` for the confirmation, resend with the same serial and
bytes at most ``resends`` times, then give up on this channel and try the backup; a confirmation ending in
ESC keeps the station online: it sends 2FH keep-alives (with the *next* serial, as real RTUs do; the centre
is told to be lenient, protocols.md §2) and answers 37H/38H/4AH/51H on the same connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from drivers.sl651 import reports
from drivers.sl651.body import DATA_REPORTS, Body
from drivers.sl651.config import Sl651LinkConfig
from drivers.sl651.elements import Element, Station
from drivers.sl651.errors import Sl651Error
from drivers.sl651.frame import ENQ, ESC, ETX, NAK, Direction, Frame, FrameReader
from drivers.sl651.message import Message, decode_message, encode
from gateway.shared import OutboundMessage, Progress

log = logging.getLogger("fieldgate.sl651")

MARK_S = 300
KEEP_MARKS = 25 * 12  # 5-minute snapshots kept for 34H and 38H answers: 25 hours
CONNECT_TIMEOUT = 10.0


class LinkDown(Exception):
    """No centre confirmed the report; its records stay in the journal."""


class _Record(Protocol):
    @property
    def seq(self) -> int: ...

    @property
    def body(self) -> dict[str, Any]: ...


class Sl651Profile:
    """Journal records → messages: ``mark/<epoch>`` (readings of one 5-min window), ``alarm``, ``skip``."""

    def __init__(self, config: Sl651LinkConfig) -> None:
        self.config = config

    def encode(self, records: Sequence[_Record], now: float | None = None) -> list[OutboundMessage]:
        windows: dict[int, list[list[Any]]] = {}
        seqs: dict[int, list[int]] = {}
        out: list[OutboundMessage] = []
        skip: list[int] = []
        for r in records:
            body = r.body
            if body.get("kind") == "alarm":
                if body.get("transition") == "raised" and body.get("rule") in self.config.added_rules:
                    out.append(OutboundMessage("alarm", json.dumps(body).encode(), (r.seq,)))
                else:
                    skip.append(r.seq)
                continue
            point, ts = body.get("point"), body.get("ts")
            if point not in self.config.points or not isinstance(ts, int | float):
                skip.append(r.seq)  # not reported to this centre: nothing to wait for
                continue
            value = body.get("value")
            good = body.get("q") in ("good", "uncertain") and isinstance(value, int | float) \
                and not isinstance(value, bool) and math.isfinite(value)
            mark = math.ceil(ts / MARK_S) * MARK_S  # the window (mark - 5 min, mark]
            windows.setdefault(mark, []).append([point, value if good else None, ts])
            seqs.setdefault(mark, []).append(r.seq)
        for mark in sorted(windows):
            out.append(OutboundMessage(f"mark/{mark}", json.dumps(windows[mark]).encode(), tuple(seqs[mark])))
        if skip:
            out.append(OutboundMessage("skip", b"", tuple(skip)))
        return out


@dataclass
class _Window:
    values: dict[str, tuple[float | None, float]] = field(default_factory=dict)  # point -> (value, ts), last wins
    last_add: float = 0.0
    done: asyncio.Future[None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def add(self, rows: list[list[Any]], now: float) -> None:
        for point, value, ts in rows:
            if point not in self.values or self.values[point][1] <= ts:
                self.values[point] = (value, ts)
        self.last_add = now


class Sl651Link:
    def __init__(self, config: Sl651LinkConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.name = config.name
        self.clock = clock
        self.zone = timezone(timedelta(hours=8))  # SL 651 clocks are Beijing time
        self._writer: asyncio.StreamWriter | None = None
        self._connected = asyncio.Event()
        self._windows: dict[int, _Window] = {}
        self._carried: dict[str, tuple[float | None, float]] = {}  # as of the last live mark closed
        self._latest: dict[str, tuple[float | None, float]] = {}  # newest seen (37H, 33H)
        self._waiting: list[asyncio.Future[None]] = []  # windows folded into the next timed report
        self._marks: OrderedDict[datetime, dict[str, float | None]] = OrderedDict()
        self._next_mark: int | None = None
        self._serial = 0
        self._serial_of_mark: OrderedDict[int, int] = OrderedDict()
        self._send_lock = asyncio.Lock()
        self._pending: dict[int, asyncio.Future[int]] = {}
        self._online_until = 0.0
        self._last_sent = 0.0
        self.counts = {"reports": 0, "confirmed": 0, "resends": 0, "keepalives": 0, "answers": 0, "shrunk": 0}

        self.encoder = Sl651Profile(config)  # how the link runner turns journal records into its messages

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def window(self) -> int:
        return 0  # no limit of its own: the runner's max_inflight holds the windows awaiting reports

    @property
    def stall_deadline(self) -> float:
        # A report may wait for every resend's confirmation before the loop moves on.
        return self.config.confirm_timeout * (1 + self.config.resends) + 120.0

    # ---- the link runner's side ------------------------------------------------------------------

    async def send(self, message: OutboundMessage) -> None:
        if message.topic == "skip":
            return
        if message.topic == "alarm":
            await self._added(json.loads(message.payload))
            return
        mark = int(message.topic.removeprefix("mark/"))
        rows: list[list[Any]] = json.loads(message.payload)
        for point, value, ts in rows:
            if point not in self._latest or self._latest[point][1] <= ts:
                self._latest[point] = (value, ts)
        window = self._windows.get(mark)
        if window is None:
            window = self._windows[mark] = _Window()
        window.add(rows, self.clock())
        await asyncio.shield(window.done)

    # ---- connection, downlink, keep-alive -------------------------------------------------------

    async def run(self, progress: Progress) -> None:
        closer = asyncio.create_task(self._close_windows(progress))
        delay = 1.0
        try:
            while True:
                progress.beat()
                for target in filter(None, (self.config.primary, self.config.backup)):
                    try:
                        async with asyncio.timeout(CONNECT_TIMEOUT):
                            reader, writer = await asyncio.open_connection(target.host, target.port)
                    except (OSError, TimeoutError) as exc:
                        log.debug("sl651 %s: %s:%d: %s", self.name, target.host, target.port, exc)
                        continue
                    log.info("sl651 %s: connected to centre %d at %s:%d", self.name, self.config.centre,
                             target.host, target.port)
                    delay = 1.0
                    await self._serve(reader, writer, progress)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
        finally:
            closer.cancel()
            self._disconnect()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, progress: Progress) -> None:
        self._writer = writer
        self._connected.set()
        frames = FrameReader()
        try:
            while self._writer is writer:
                progress.beat()
                try:
                    async with asyncio.timeout(1.0):
                        data = await reader.read(4096)
                except TimeoutError:
                    await self._keepalive()
                    continue
                if not data:
                    log.info("sl651 %s: the centre closed the connection", self.name)
                    break
                for got in frames.feed(data):
                    if isinstance(got, Sl651Error):
                        log.warning("sl651 %s: frame from the centre dropped: %s", self.name, got)
                    else:
                        await self._downlink(got)
        except (ConnectionError, OSError) as exc:
            log.info("sl651 %s: connection lost: %s", self.name, exc)
        finally:
            if self._writer is writer:
                self._disconnect()

    def _disconnect(self) -> None:
        writer, self._writer = self._writer, None
        self._connected.clear()
        if writer is not None:
            writer.close()
        for waiter in self._pending.values():
            if not waiter.done():
                waiter.set_exception(LinkDown("connection closed"))

    async def _downlink(self, frame: Frame) -> None:
        if frame.direction is not Direction.DOWN or frame.station != self.config.address:
            log.warning("sl651 %s: a frame for station %s ignored", self.name, frame.station_hex())
            return
        try:
            message = decode_message(frame)
        except Sl651Error as exc:
            log.warning("sl651 %s: frame from the centre dropped: %s", self.name, exc)
            return
        body = message.body
        if body is None:
            return
        if frame.function in DATA_REPORTS or frame.function == 0x2F:
            waiter = self._pending.get(body.serial)
            if waiter is not None and not waiter.done():
                waiter.set_result(frame.end)
            if frame.end == ESC:
                self._online_until = self.clock() + self.config.online_for
            return
        self._online_until = self.clock() + self.config.online_for
        answer = self._answer(frame.function, body)
        if answer is not None and self._writer is not None:
            self.counts["answers"] += 1
            self._write(encode(answer))
        elif frame.end == ENQ:
            log.info("sl651 %s: query %02X not supported: no answer", self.name, frame.function)

    def _answer(self, function: int, query: Body) -> Message | None:
        now = self._station_time()
        if function == 0x37:
            values = {p: v for p, (v, _ts) in self._latest.items()}
            return reports.timed(self.config, self._next_serial(), now, now.replace(second=0), values, 0x37)
        if function == 0x38:
            return reports.period_answer(self.config, self._next_serial(), now, query, self._marks)
        if function in (0x4A, 0x51):
            if function == 0x4A:  # the box keeps its clock by NTP/GNSS: the offset is logged, not applied
                log.info("sl651 %s: centre's clock %s, ours %s", self.name, query.sent, now)
            element = Element(0xF1, 0xF1, Station(self.config.address, None))
            frame = Frame(Direction.UP, self.config.centre, self.config.address, self.config.password, function,
                          b"", ETX)
            return Message(frame, Body(self._next_serial(), now, (element,)))
        return None

    async def _keepalive(self) -> None:
        now = self.clock()
        if now >= self._online_until or now - self._last_sent < self.config.keepalive or self._send_lock.locked():
            return
        serial = self._serial % 0xFFFF + 1  # the next serial, not consumed (what deployed RTUs send)
        frame = Frame(Direction.UP, self.config.centre, self.config.address, self.config.password, 0x2F, b"", ETX)
        self.counts["keepalives"] += 1
        self._write(encode(Message(frame, Body(serial, self._station_time()))))

    def _write(self, data: bytes) -> None:
        if self._writer is None:
            raise LinkDown("not connected")
        self._writer.write(data)
        self._last_sent = self.clock()

    # ---- reports ----------------------------------------------------------------------------------

    def _station_time(self, epoch: float | None = None) -> datetime:
        return datetime.fromtimestamp(self.clock() if epoch is None else epoch, self.zone).replace(
            tzinfo=None, microsecond=0)

    def _next_serial(self) -> int:
        self._serial = self._serial % 0xFFFF + 1
        return self._serial

    async def _deliver(self, message: Message) -> None:
        """M2: send, wait for the confirmation, resend the same bytes; raises LinkDown after the last try."""
        assert message.body is not None
        data, serial = encode(message), message.body.serial
        async with self._send_lock:
            for attempt in range(1 + self.config.resends):
                waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
                self._pending[serial] = waiter
                try:
                    if attempt:
                        self.counts["resends"] += 1
                    self._write(data)
                    if self._writer is not None:
                        await self._writer.drain()
                    async with asyncio.timeout(self.config.confirm_timeout):
                        end = await waiter
                    if end != NAK:
                        self.counts["confirmed"] += 1
                        return
                except TimeoutError:
                    continue
                except (ConnectionError, OSError) as exc:
                    raise LinkDown(str(exc)) from exc
                finally:
                    self._pending.pop(serial, None)
            # Three timeouts in a row: leave the channel (6.3.2.3); the run loop tries the backup.
            log.warning("sl651 %s: serial %d not confirmed after %d tries; dropping the channel", self.name, serial,
                        1 + self.config.resends)
            self._disconnect()
            raise LinkDown(f"serial {serial} not confirmed")

    def _serial_for(self, mark: int) -> int:
        """A report re-sent for the same mark (after an outage) keeps its serial (6.6.2.4)."""
        if mark not in self._serial_of_mark:
            self._serial_of_mark[mark] = self._next_serial()
            while len(self._serial_of_mark) > KEEP_MARKS:
                self._serial_of_mark.popitem(last=False)
        return self._serial_of_mark[mark]

    async def _report(self, mark: int, values: dict[str, float | None]) -> None:
        message = reports.timed(self.config, self._serial_for(mark), self._station_time(), self._station_time(mark),
                                values)
        if message.body is not None and len(message.body.elements) - 2 < len(values):
            self.counts["shrunk"] += 1
        self.counts["reports"] += 1
        await self._deliver(message)

    async def _added(self, alarm: dict[str, Any]) -> None:
        evidence = alarm.get("points") if isinstance(alarm.get("points"), dict) else {}
        values = {p: v for p, (v, _ts) in self._latest.items()}
        trigger = []
        for point, seen in (evidence or {}).items():
            if point in self.config.points and isinstance(seen, dict):
                value = seen.get("value")
                good = seen.get("q") == "good" and isinstance(value, int | float) and not isinstance(value, bool)
                values[point] = float(value) if good and isinstance(value, int | float) else None
                trigger.append(point)
        ts = float(alarm.get("ts", self.clock()))
        message = reports.added(self.config, self._next_serial(), self._station_time(),
                                self._station_time(ts).replace(second=0), values, trigger)
        self.counts["reports"] += 1
        await self._deliver(message)

    async def _close_windows(self, progress: Progress) -> None:
        """Close 5-minute windows: replayed ones (older than the live mark) when quiet, then live marks in order."""
        while True:
            progress.beat()
            await asyncio.sleep(0.2)
            now = self.clock()
            if self._next_mark is None:
                self._next_mark = math.ceil(now / MARK_S) * MARK_S
            quiet = self.config.settle
            for mark in sorted(m for m in self._windows if m < self._next_mark):
                replayed = self._windows[mark]
                if now - replayed.last_add < quiet:
                    break
                del self._windows[mark]
                await self._settle(replayed, self._report(mark, {p: v for p, (v, _ts) in replayed.values.items()}))
            while self._next_mark + quiet <= now:
                window = self._windows.get(self._next_mark)
                if window is not None and now - window.last_add < quiet:
                    break
                await self._close_live(self._next_mark, self._windows.pop(self._next_mark, None))
                self._next_mark += MARK_S

    async def _settle(self, window: _Window, report: Any) -> None:
        try:
            await report
        except (LinkDown, Sl651Error, ValueError) as exc:
            if not window.done.done():
                window.done.set_exception(LinkDown(str(exc)))
            window.done.exception()  # read, so an unawaited failure is not logged as "never retrieved"
        else:
            if not window.done.done():
                window.done.set_result(None)

    async def _close_live(self, mark: int, window: _Window | None) -> None:
        if window is not None:
            self._carried.update(window.values)
            self._waiting.append(window.done)
        values = {p: v for p, (v, _ts) in self._carried.items()}
        self._marks[self._station_time(mark)] = values
        while len(self._marks) > KEEP_MARKS:
            self._marks.popitem(last=False)
        if mark % int(self.config.timed_interval) or not values:
            return
        waiting, self._waiting = self._waiting, []
        ok = True
        try:
            await self._report(mark, values)
        except (LinkDown, Sl651Error, ValueError) as exc:
            ok = False
            log.info("sl651 %s: timed report of %s not confirmed (%s); its records stay in the journal",
                     self.name, self._station_time(mark), exc)
        for done in waiting:
            if not done.done():
                if ok:
                    done.set_result(None)
                else:
                    done.set_exception(LinkDown("timed report not confirmed"))
                    done.exception()
        if ok and self.config.hourly and mark % 3600 == 0:
            await self._hourly(mark, values)

    async def _hourly(self, mark: int, values: dict[str, float | None]) -> None:
        message = reports.hourly(self.config, self._next_serial(), self._station_time(), self._station_time(mark),
                                 self._marks, values)
        if message is None:
            return
        with contextlib.suppress(LinkDown):
            self.counts["reports"] += 1
            await self._deliver(message)  # its values went in the 32H already; a lost 34H is only logged
            return
        log.info("sl651 %s: hourly report of %s not confirmed", self.name, self._station_time(mark))
