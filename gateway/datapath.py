"""The data path: bus samples and camera detections → rules → report filter → journal; alarms → broadcast.

Rules see every sample (a deadband must never delay an alarm); the journal sees what the report
filter admits. Alarm transitions are committed synchronously (``append_now``) and handed to the
broadcast subsystem directly, without waiting for any uplink.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from gateway.alerts.subsystem import BroadcastSubsystem
from gateway.health import health_message
from gateway.journal import AsyncJournal, JournalFull
from gateway.report import ReportFilter
from gateway.rules import RuleEngine
from gateway.rules.continuity import AlarmBook
from gateway.rules.engine import AlarmTransition
from gateway.shared import EventRecord, Journalable, Progress, Quality, Reading, RecordClass, now
from gateway.vision.events import DetectionEvent

log = logging.getLogger("fieldgate")

COMMIT_ATTEMPTS = 4  # alarm/evidence commits: 0.5 + 1 + 2 s of retries before giving up loudly

ReadingObserver = Callable[[Reading], Awaitable[None]]


class Background:
    """Tasks started on the side (a siren activation, a command's run); cancelled when the gateway stops."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


class DataPath:
    def __init__(self, journal: AsyncJournal, report_filter: ReportFilter, rules: RuleEngine,
                 background: Background) -> None:
        self.journal = journal
        self.report_filter = report_filter
        self.rules = rules
        self.broadcast: BroadcastSubsystem | None = None  # set when the gateway starts with outputs
        self.observers: list[ReadingObserver] = []
        self.transition_observers: list[Callable[[AlarmTransition], None]] = []  # the trend history's alarm periods
        self.latest: dict[str, Reading] = {}  # one entry per point: bounded by the config
        self.evidence: deque[dict[str, Any]] = deque(maxlen=50)
        self.counters: dict[str, Any] = {"points_read": 0, "alarms_raised": 0, "readings_by_quality": {}}
        self.latest_snapshot: dict[str, Any] | None = None
        self.journal_stats: dict[str, Any] = {}
        self._background = background
        # Set by the gateway: holds each alarm transition until its record is committed (gateway/rules/continuity.py).
        self.alarm_book: AlarmBook | None = None

    async def ingest(self, readings: Sequence[Reading]) -> None:
        """The sink every bus hands its samples to, the samples of one read at a time (gateway.shared.ReadingSink).

        Each reading in turn: latest value, rules (a transition is handled before the next reading, as it
        would be had the readings come one by one), report filter, observers; then the block's admitted
        readings go to the journal queue as one item. One call per block keeps the per-reading work to
        what each reading needs.
        """
        counters = self.counters
        counters["points_read"] += len(readings)
        by_quality = counters["readings_by_quality"]
        latest, admit, observers = self.latest, self.report_filter.admit, self.observers
        evaluate = self.rules.evaluate
        good = len(readings)  # counted once per block: an enum's .value and a dict update per reading cost ~1 us
        for reading in readings:
            if reading.quality is not Quality.GOOD:
                good -= 1
                by_quality[reading.quality.value] = by_quality.get(reading.quality.value, 0) + 1
        if good:
            by_quality[Quality.GOOD.value] = by_quality.get(Quality.GOOD.value, 0) + good
        # The block's admitted readings go to the journal queue as one item (one queue step, not one per
        # reading), before any alarm transition of the block is committed: an alarm is committed at once
        # (append_now) and may overtake telemetry queued before it, as it always could.
        admitted: list[tuple[RecordClass, Journalable]] = []
        for reading in readings:
            latest[reading.point] = reading
            for transition in evaluate(reading):
                await self._on_transition(transition)
            reason = admit(reading)
            if reason is None:
                continue
            admitted.append((RecordClass.STATE if reason == "quality" else RecordClass.TELEMETRY, reading))
            for observer in observers:
                await observer(reading)
        await self.journal.put_many(admitted)

    async def _on_transition(self, transition: AlarmTransition) -> None:
        if transition.kind.value == "raised":
            self.counters["alarms_raised"] += 1
        log.warning("alarm %s %s (rule %s, severity %s)", transition.alarm_id, transition.kind.value,
                    transition.rule_id, transition.severity, extra={"alarm_id": transition.alarm_id})
        for observe in self.transition_observers:
            observe(transition)
        body = transition.to_json()
        body["transition"] = body.pop("kind")  # raised / acknowledged / cleared
        record = EventRecord("alarm", transition.rule_id, body, transition.time)
        # The siren first: it must not wait on an fsync. The record is durable before any link sees it.
        if self.broadcast is not None:
            self._background.spawn(self.broadcast.on_alarm(transition))
        if self.alarm_book is None:
            await self.commit_now(RecordClass.ALARM, record)
            return
        token = await self.alarm_book.pending(self.rules.active_alarms(), body)
        if await self.commit_now(RecordClass.ALARM, record):
            await self.alarm_book.committed(token)

    async def on_detection(self, event: DetectionEvent) -> None:
        """A confirmed (or ended) camera detection: into the rules as a reading, into the journal as a record."""
        confirmed = event.kind != "end"
        point = f"{event.camera}.{event.role}"
        attrs = {"confirmed": confirmed, "event": event.event_id}
        await self.evaluate(Reading(point, event.score if confirmed else 0.0, Quality.GOOD, event.t, attrs=attrs))
        body = event.to_json()
        body["phase"] = body.pop("kind")  # new / update / end
        record = EventRecord("detection", event.camera, body, event.t)
        await self.commit_now(event.record_class, record)
        if event.snapshot and event.kind != "end":
            self.latest_snapshot = {"camera": event.camera, "path": event.snapshot, "ts": event.t,
                                    "boxes": [list(event.box)], "event": event.event_id}
            for chunk in snapshot_chunks(event):
                await self.journal.put(RecordClass.BULK, chunk)

    async def evaluate(self, reading: Reading) -> None:
        """Latest value and the rules: every sample, reported or not."""
        self.latest[reading.point] = reading
        for transition in self.rules.evaluate(reading):
            await self._on_transition(transition)

    async def journal_evidence(self, evidence: dict[str, Any]) -> None:
        self.evidence.append(evidence)
        key = str(evidence.get("output") or evidence.get("alert_id") or "broadcast")
        record = EventRecord("evidence", key, evidence, now())
        await self.commit_now(RecordClass.EVIDENCE, record)

    async def journal_fault(self, fault: dict[str, Any]) -> None:
        key = str(fault.get("output") or "broadcast")
        log.error("broadcast fault: %s", fault)
        await self.commit_now(RecordClass.ALARM, EventRecord("fault", key, fault, now()))

    async def journal_camera_fault(self, fault: dict[str, Any]) -> None:
        """A camera's model configuration fault (or its clearing): a fault alarm upstream, never a siren."""
        await self.commit_now(RecordClass.ALARM, EventRecord("fault", str(fault["camera"]), fault, now()))

    async def commit_now(self, cls: RecordClass, record: Reading | EventRecord) -> bool:
        """Alarms and evidence: durable before anything acts upstream. A full journal must not stop the
        siren (the broadcast path does not wait on this), so it is logged as critical, not raised.
        False when the record was not journalled."""
        for attempt in range(COMMIT_ATTEMPTS):
            try:
                await self.journal.append_now(cls, record)
                return True
            except JournalFull as exc:
                log.critical("journal full: %s record for %s NOT journalled: %s", cls.label, record.point, exc)
                return False
            except (sqlite3.Error, OSError) as exc:
                # A passing I/O error must not lose the alarm record (the rule will not raise it again).
                if attempt + 1 == COMMIT_ATTEMPTS:
                    log.critical("journal error: %s record for %s NOT journalled after %d attempts: %s",
                                 cls.label, record.point, COMMIT_ATTEMPTS, exc)
                    return False
                log.error("journal error on a %s record (%s); retrying", cls.label, exc)
                await asyncio.sleep(0.5 * 2**attempt)
        return False

    async def housekeeping(self, progress: Progress, snapshot: Callable[[], dict[str, Any]],
                           health_interval: float, state_dir: Path) -> None:
        """Journal figures for the status page (every 5 s) and the health message upstream."""
        next_health = time.monotonic() + 5.0
        while True:
            self.journal_stats = self.journal.latest_stats
            if time.monotonic() >= next_health:
                next_health = time.monotonic() + health_interval
                body = health_message(snapshot(), state_dir)
                await self.journal.put(RecordClass.EVENT, EventRecord("health", "gateway", body, now()))
            progress.beat()
            await asyncio.sleep(5.0)

    async def tick_rules(self, progress: Progress) -> None:
        while True:
            for transition in self.rules.tick(now()):
                await self._on_transition(transition)
            progress.beat()
            await asyncio.sleep(1.0)


SNAPSHOT_CHUNK = 48 * 1024  # bytes of JPEG per journal record (base64 makes ~64 KiB messages)
SNAPSHOT_MAX = 1024 * 1024  # a larger file is not sent (the local store keeps it)


def snapshot_chunks(event: DetectionEvent) -> list[EventRecord]:
    """The event's JPEG as BULK journal records: durable, low priority, never over satellite."""
    assert event.snapshot is not None
    try:
        data = Path(event.snapshot).read_bytes()
    except OSError as exc:
        log.warning("snapshot %s unreadable: %s", event.snapshot, exc)
        return []
    if len(data) > SNAPSHOT_MAX:
        log.warning("snapshot %s is %d bytes; not sent upstream", event.snapshot, len(data))
        return []
    parts = [data[i : i + SNAPSHOT_CHUNK] for i in range(0, len(data), SNAPSHOT_CHUNK)] or [b""]
    return [
        EventRecord("snapshot", event.camera, {
            "event": event.event_id, "chunk": i, "chunks": len(parts), "bytes": len(data),
            "jpeg_b64": base64.b64encode(part).decode()}, event.t)
        for i, part in enumerate(parts)
    ]
