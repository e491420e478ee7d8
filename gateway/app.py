"""The daemon: buses → (rules, report filter) → journal → link runners, under one TaskGroup.

Rules see every sample (a deadband must never delay an alarm); the journal sees what the
report filter admits. Alarm transitions are committed synchronously (``append_now``) and
handed to the broadcast subsystem directly, without waiting for any uplink.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any, cast

from gateway.alerts.audit import AuditLog
from gateway.alerts.subsystem import BroadcastSubsystem
from gateway.config.site import SiteConfig
from gateway.journal import AsyncJournal, Journal
from gateway.links import LinkRunner
from gateway.payloads import FieldgateProfile
from gateway.registry import build_bus, build_link, build_outputs, link_classes
from gateway.report import ReportFilter
from gateway.rules import RuleEngine
from gateway.rules.engine import AlarmTransition
from gateway.shared import BusDriver, EventRecord, NullProgress, Progress, Quality, Reading, RecordClass, now
from gateway.vision.events import DetectionEvent
from gateway.vision.pipeline import run_camera

log = logging.getLogger("fieldgate")

ReadingObserver = Callable[[Reading], Awaitable[None]]
ProgressFactory = Callable[[str, float], Progress]


class Gateway:
    def __init__(self, config: SiteConfig, *, progress_factory: ProgressFactory | None = None,
                 config_path: str | None = None) -> None:
        self.config = config
        self.config_path = config_path
        gateway_id = config.gateway.id
        self.profiles = {link.name: FieldgateProfile(gateway_id, link.topic_prefix) for link in config.links}
        self.buses: list[BusDriver] = [build_bus(bus) for bus in config.buses]
        self.links = [build_link(link, gateway_id, self.profiles[link.name].status) for link in config.links]
        self.runners: list[LinkRunner] = []
        self.journal = AsyncJournal(
            Journal(config.journal_path, {link.name: link_classes(link) for link in config.links}),
            queue_size=config.journal.queue,
            commit_window=config.journal.commit_window,
        )
        self.report_filter = ReportFilter([p for bus in self.buses for p in bus.points()])
        self.rules = RuleEngine(config.rules)
        self.broadcast: BroadcastSubsystem | None = None
        self.observers: list[ReadingObserver] = []
        self._progress_factory = progress_factory or (lambda _name, _deadline: NullProgress())
        self.ready = asyncio.Event()
        self.started = time.time()
        self.latest: dict[str, Reading] = {}  # one entry per point: bounded by the config
        self.evidence: deque[dict[str, Any]] = deque(maxlen=50)
        self.counters: dict[str, Any] = {"points_read": 0, "alarms_raised": 0, "readings_by_quality": {}}
        self._background: set[asyncio.Task[Any]] = set()
        self.latest_snapshot: dict[str, Any] | None = None

    # ---- the data path -------------------------------------------------------------------

    async def ingest(self, reading: Reading) -> None:
        """The sink every bus hands its samples to."""
        self.counters["points_read"] += 1
        by_quality = self.counters["readings_by_quality"]
        by_quality[reading.quality.value] = by_quality.get(reading.quality.value, 0) + 1
        await self.evaluate(reading)
        reason = self.report_filter.admit(reading)
        if reason is None:
            return
        cls = RecordClass.STATE if reason == "quality" else RecordClass.TELEMETRY
        await self.journal.put(cls, reading)
        for observer in self.observers:
            await observer(reading)

    async def _on_transition(self, transition: AlarmTransition) -> None:
        if transition.kind.value == "raised":
            self.counters["alarms_raised"] += 1
        log.warning("alarm %s %s (rule %s, severity %s)", transition.alarm_id, transition.kind.value,
                    transition.rule_id, transition.severity, extra={"alarm_id": transition.alarm_id})
        body = transition.to_json()
        body["transition"] = body.pop("kind")  # raised / acknowledged / cleared
        record = EventRecord("alarm", transition.rule_id, body, transition.time)
        await self.journal.append_now(RecordClass.ALARM, cast(Reading, record))
        if self.broadcast is not None:
            self._spawn(self.broadcast.on_alarm(transition))

    async def on_detection(self, event: DetectionEvent) -> None:
        """A confirmed (or ended) camera detection: into the rules as a reading, into the journal as a record."""
        confirmed = event.kind != "end"
        await self.evaluate(Reading(f"{event.camera}.{event.role}", event.score if confirmed else 0.0,
                                            Quality.GOOD, event.t, attrs={"confirmed": confirmed,
                                                                          "event": event.event_id}))
        body = event.to_json()
        body["phase"] = body.pop("kind")  # new / update / end
        record = EventRecord("detection", event.camera, body, event.t)
        await self.journal.append_now(event.record_class, cast(Reading, record))
        if event.snapshot and event.kind != "end":
            self.latest_snapshot = {"camera": event.camera, "path": event.snapshot, "ts": event.t,
                                    "boxes": [list(event.box)], "event": event.event_id}
            for chunk in snapshot_chunks(event):
                await self.journal.put(RecordClass.BULK, cast(Reading, chunk))

    async def evaluate(self, reading: Reading) -> None:
        """Latest value and the rules: every sample, reported or not."""
        self.latest[reading.point] = reading
        for transition in self.rules.evaluate(reading):
            await self._on_transition(transition)

    async def _journal_evidence(self, evidence: dict[str, Any]) -> None:
        self.evidence.append(evidence)
        key = str(evidence.get("output") or evidence.get("alert_id") or "broadcast")
        record = EventRecord("evidence", key, evidence, now())
        await self.journal.append_now(RecordClass.EVIDENCE, cast(Reading, record))

    async def _journal_fault(self, fault: dict[str, Any]) -> None:
        key = str(fault.get("output") or "broadcast")
        log.error("broadcast fault: %s", fault)
        await self.journal.append_now(RecordClass.ALARM, cast(Reading, EventRecord("fault", key, fault, now())))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _tick_rules(self, progress: Progress) -> None:
        while True:
            for transition in self.rules.tick(now()):
                await self._on_transition(transition)
            progress.beat()
            await asyncio.sleep(1.0)

    # ---- lifecycle -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        log.info("gateway %s: %d buses, %d links, %d rules, journal %s", self.config.gateway.id,
                 len(self.buses), len(self.links), len(self.config.rules.rules), self.config.journal_path)
        progress = self._progress_factory
        if self.config.broadcast.outputs:
            self.broadcast = BroadcastSubsystem(
                self.config.broadcast, AuditLog(self.config.audit_path), build_outputs(self.config.broadcast.outputs),
                on_evidence=self._journal_evidence, on_fault_alarm=self._journal_fault)
        try:
            async with asyncio.TaskGroup() as tg:
                writer = tg.create_task(self.journal.run(progress("journal", 30.0)), name="journal")
                link_tasks = []
                for link, cfg in zip(self.links, self.config.links, strict=True):
                    runner = LinkRunner(link, self.journal, self.profiles[link.name],
                                        batch=cfg.batch_records, max_inflight=cfg.max_inflight)
                    self.runners.append(runner)
                    deadline = cfg.reconnect_max + 60.0
                    link_tasks.append(tg.create_task(supervise(
                        f"link {link.name}", partial(link.run, progress(f"link {link.name}", deadline)))))
                    link_tasks.append(tg.create_task(supervise(
                        f"sender {link.name}", partial(runner.run, progress(f"sender {link.name}", deadline)))))
                link_tasks.append(tg.create_task(supervise("rules", partial(
                    self._tick_rules, progress("rules", 30.0)))))
                link_tasks.extend(
                    tg.create_task(supervise(f"camera {cam.name}", partial(
                        run_camera, cam, self.on_detection, progress(f"vision {cam.name}", 60.0))))
                    for cam in self.config.cameras)
                bus_tasks = [
                    tg.create_task(supervise(
                        f"bus {bus.name}", partial(bus.run, self.ingest, progress(f"bus {bus.name}",
                                                                                  _bus_deadline(bus)))))
                    for bus in self.buses
                ]
                self.ready.set()
                await stop.wait()
                log.info("stopping: polling stops, journal flushes, links say offline")
                await _cancel(bus_tasks)
                await self.journal.flush()
                writer.cancel()
                await _cancel(link_tasks)
                await _cancel(list(self._background))
        finally:
            if self.broadcast is not None:
                await self.broadcast.close()
                self.broadcast.audit.close()
            await self.journal.close()
        log.info("stopped; %d records committed this run", self.journal.committed)

    # ---- what the status page and `fieldgate status` show -------------------------------

    def snapshot(self) -> dict[str, Any]:
        t = time.time()
        journal = self.journal.journal
        return {
            "gateway": {"id": self.config.gateway.id, "name": self.config.gateway.name, "started": self.started,
                        "uptime_s": round(t - self.started, 1), "config": self.config_path},
            "points": [
                {"point": r.point, "value": r.value, "unit": r.unit, "q": r.quality.value, "ts": r.source_time,
                 "age_s": round(t - r.source_time, 1)}
                for r in sorted(self.latest.values(), key=lambda r: r.point)
            ],
            "devices": [d for bus in self.buses for d in _device_states(bus)],
            "links": [
                {"name": link.name, "type": cfg.type, "connected": link.connected,
                 "sent_messages": runner.sent_messages if runner else 0,
                 "failed_sends": runner.failed_sends if runner else 0}
                for link, cfg, runner in zip(self.links, self.config.links, self._runner_list(), strict=True)
            ],
            "journal": {"committed": self.journal.committed, "path": str(journal.path)},
            "alarms": self.rules.active_alarms(),
            "evidence": list(self.evidence),
            "snapshot": self.latest_snapshot,
            "counters": dict(self.counters),
        }

    def _runner_list(self) -> list[LinkRunner | None]:
        by_name = {r.link.name: r for r in self.runners}
        return [by_name.get(link.name) for link in self.links]

    async def action(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """Technician actions from the status page (behind its login)."""
        if name == "selftest":
            if self.broadcast is None:
                return {"ok": False, "error": "no broadcast outputs configured"}
            results = await self.broadcast.selftest()
            return {"ok": all(r.ok for r in results), "results": [r.to_json() for r in results]}
        return {"ok": False, "error": f"unknown action '{name}'"}


def _device_states(bus: BusDriver) -> list[dict[str, Any]]:
    devices = getattr(bus, "devices", [])
    out = []
    for state in devices:
        config = getattr(state, "config", None)
        out.append({"bus": bus.name, "device": getattr(config, "name", "?"),
                    "unit_id": getattr(config, "unit_id", None), "online": bool(getattr(state, "online", True)),
                    **dict(getattr(state, "stats", {}))})
    return out


def _bus_deadline(bus: BusDriver) -> float:
    """How long a healthy bus may go without progress: its slowest cycle plus every timeout, with margin."""
    devices = getattr(getattr(bus, "config", None), "devices", [])
    worst = float(sum(d.timeout * (d.retries + 1) * 4 for d in devices))
    slowest = float(max((d.poll_interval for d in devices), default=0.0))
    return max(60.0, 2 * (slowest + worst))


async def supervise(name: str, factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a long-lived loop; if it crashes, log it and start it again with backoff (never a crash loop)."""
    delay = 1.0
    while True:
        try:
            await factory()
            log.error("%s returned; restarting", name)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s crashed; restarting in %.0fs", name, delay)
        await asyncio.sleep(random.uniform(delay / 2, delay))
        delay = min(delay * 2, 60.0)


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


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
