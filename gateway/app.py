"""The daemon: buses → (rules, report filter) → journal → link runners, under one TaskGroup.

Rules see every sample (a deadband must never delay an alarm); the journal sees what the
report filter admits. Alarm transitions are committed synchronously (``append_now``) and
handed to the broadcast subsystem directly, without waiting for any uplink.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any, cast

from drivers.beidou.config import BeidouConfig
from drivers.broadcast.busboard import BusLike, CoilWriter
from drivers.iridium.config import IridiumConfig
from drivers.mqtt.config import MqttLinkConfig
from gateway.ackkey import ack_key_for_daemon
from gateway.alerts.inbox import InboxWatcher
from gateway.alerts.subsystem import BroadcastSubsystem
from gateway.commands import CommandKeyError, CommandPlane, ReplayCache, Reply, load_issuer_keys
from gateway.compact import AliasTable, CompactDecodeError, CompactMessage, MessageKind
from gateway.compact import decode as decode_compact
from gateway.config.site import SiteConfig
from gateway.control import GatewayControl
from gateway.degraded import DegradedModes
from gateway.health import health_message
from gateway.journal import AsyncJournal, JournalFull
from gateway.journal.fallback import fallback_path, open_journal, spill
from gateway.links import LinkRunner
from gateway.profiles import PayloadProfile, get_profile
from gateway.registry import (
    SatelliteLink,
    build_bus,
    build_link,
    build_outputs,
    build_satellite_link,
    link_classes,
)
from gateway.report import ReportFilter
from gateway.rules import RuleEngine
from gateway.rules.continuity import RULE_REMOVED, AlarmBook, cleared_body
from gateway.rules.engine import AlarmTransition
from gateway.satellite import SatelliteRunner
from gateway.shared import (
    BusDriver,
    EventRecord,
    Link,
    NullProgress,
    Progress,
    Quality,
    Reading,
    RecordClass,
    now,
)
from gateway.status import StatusServer
from gateway.view import build_snapshot
from gateway.vision.camerafault import CameraGuard
from gateway.vision.events import DetectionEvent

log = logging.getLogger("fieldgate")

COMMIT_ATTEMPTS = 4  # alarm/evidence commits: 0.5 + 1 + 2 s of retries before giving up loudly

ReadingObserver = Callable[[Reading], Awaitable[None]]
ProgressFactory = Callable[[str, float], Progress]


class Gateway:
    def __init__(self, config: SiteConfig, *, progress_factory: ProgressFactory | None = None,
                 config_path: str | None = None,
                 loop_states: Callable[[], list[dict[str, Any]]] | None = None,
                 rules: RuleEngine | None = None) -> None:
        self.config = config
        self.config_path = config_path
        gateway_id = config.gateway.id
        self.mqtt_configs = [link for link in config.links if isinstance(link, MqttLinkConfig)]
        self.profiles: dict[str, PayloadProfile] = {
            link.name: get_profile(link.profile, gateway_id, link, config.journal.historical_after)
            for link in self.mqtt_configs}
        self.buses: list[BusDriver] = [build_bus(bus) for bus in config.buses]
        self.links: list[Link] = [
            build_link(link, gateway_id, self.profiles[link.name], on_command=partial(self._on_mqtt_command, link.name),
                       screen=partial(self._screen_command, link.name))
            for link in self.mqtt_configs]
        self.runners: list[LinkRunner] = []
        self.satellites: list[tuple[SatelliteLink, BeidouConfig | IridiumConfig]] = [
            (build_satellite_link(link, partial(self._on_satellite_message, link.name)), link)
            for link in config.links if not isinstance(link, MqttLinkConfig)
        ]
        self.satellite_runners: dict[str, SatelliteRunner] = {}
        # Continuity (gateway/degraded.py): a journal that cannot be opened is replaced by a temporary one.
        link_map = {link.name: link_classes(link) for link in config.links}
        journal, journal_problem = open_journal(config.journal_path, link_map, config.journal, gateway_id)
        self.journal = AsyncJournal(journal, queue_size=config.journal.queue,
                                    commit_window=config.journal.commit_window)
        self.journal.spill = partial(spill, config.journal_path, link_map, config.journal, gateway_id)
        spare = fallback_path(config.journal_path, gateway_id).parent  # RAM, while the state dir fails
        self.alarm_book = AlarmBook(config.gateway.state_dir / "alarms.json", spare / "alarms.json")
        self.degraded = DegradedModes(gateway_id, self.alarm_book, self._commit_now,
                                      journal_path=config.journal_path, links=link_map, settings=config.journal,
                                      journal_problem=journal_problem)
        # ---- end continuity
        self.report_filter = ReportFilter([p for bus in self.buses for p in bus.points()])
        self.rules = rules or RuleEngine(config.rules)  # carried over by a reload that kept the rules
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
        self.cameras: list[CameraGuard] = []  # built when the cameras start
        self.control = GatewayControl(self)
        self.commands: CommandPlane | None = None
        self._loop_states = loop_states or list
        self.journal_stats: dict[str, Any] = {}
        self.reloading = False  # set by the daemon before a stop that a new gateway follows at once

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
        # The siren first: it must not wait on an fsync. The record is durable before any link sees it.
        if self.broadcast is not None:
            self._spawn(self.broadcast.on_alarm(transition))
        # The alarm book (gateway/rules/continuity.py) holds the record until it is committed.
        token = await self.alarm_book.pending(self.rules.active_alarms(), body)
        if await self._commit_now(RecordClass.ALARM, record):
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
        await self._commit_now(event.record_class, record)
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

    async def _journal_evidence(self, evidence: dict[str, Any]) -> None:
        self.evidence.append(evidence)
        key = str(evidence.get("output") or evidence.get("alert_id") or "broadcast")
        record = EventRecord("evidence", key, evidence, now())
        await self._commit_now(RecordClass.EVIDENCE, record)

    async def _journal_fault(self, fault: dict[str, Any]) -> None:
        key = str(fault.get("output") or "broadcast")
        log.error("broadcast fault: %s", fault)
        await self._commit_now(RecordClass.ALARM, EventRecord("fault", key, fault, now()))

    async def _journal_camera_fault(self, fault: dict[str, Any]) -> None:
        """A camera's model configuration fault (or its clearing): a fault alarm upstream, never a siren."""
        await self._commit_now(RecordClass.ALARM, EventRecord("fault", str(fault["camera"]), fault, now()))

    async def _commit_now(self, cls: RecordClass, record: Reading | EventRecord) -> bool:
        """Alarms and evidence: durable before anything acts upstream. A full journal must not stop the
        siren (the broadcast path does not wait on this), so it is logged as critical, not raised.
        False when it was not journalled."""
        for attempt in range(COMMIT_ATTEMPTS):
            try:
                await self.journal.append_now(cls, record)
                return True
            except JournalFull as exc:
                log.critical("journal full: %s record for %s NOT journalled: %s", cls.name.lower(), record.point, exc)
                return False
            except (sqlite3.Error, OSError) as exc:
                # A passing I/O error must not lose the alarm record (the rule will not raise it again).
                if attempt + 1 == COMMIT_ATTEMPTS:
                    log.critical("journal error: %s record for %s NOT journalled after %d attempts: %s",
                                 cls.name.lower(), record.point, COMMIT_ATTEMPTS, exc)
                    return False
                log.error("journal error on a %s record (%s); retrying", cls.name.lower(), exc)
                await asyncio.sleep(0.5 * 2**attempt)
        return False

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _housekeeping(self, progress: Progress) -> None:
        """Journal figures for the status page (every 5 s) and the health message upstream."""
        next_health = time.monotonic() + 5.0
        while True:
            self.journal_stats = self.journal.latest_stats
            if time.monotonic() >= next_health:
                next_health = time.monotonic() + self.config.health_interval
                body = health_message(self.snapshot(), self.config.gateway.state_dir)
                await self.journal.put(RecordClass.EVENT, EventRecord("health", "gateway", body, now()))
            progress.beat()
            await asyncio.sleep(5.0)

    async def _tick_rules(self, progress: Progress) -> None:
        while True:
            for transition in self.rules.tick(now()):
                await self._on_transition(transition)
            progress.beat()
            await asyncio.sleep(1.0)

    # ---- lifecycle -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        log.info("gateway %s: %d buses, %d links, %d cameras, %d rules, journal %s", self.config.gateway.id,
                 len(self.buses), len(self.config.links), len(self.config.cameras), len(self.config.rules.rules),
                 self.config.journal_path)
        progress = self._progress_factory
        self._start_command_plane()
        if self.config.broadcast.outputs:
            writers = {bus.name: CoilWriter.for_bus(cast(BusLike, bus)) for bus in self.buses
                       if hasattr(bus, "write_point")}
            self.broadcast = BroadcastSubsystem(
                self.config.broadcast, self.degraded.open_audit(self.config.audit_path),
                build_outputs(self.config.broadcast.outputs, coil_writers=writers),
                on_evidence=self._journal_evidence, on_fault_alarm=self._journal_fault)
        try:
            async with asyncio.TaskGroup() as tg:
                writer = tg.create_task(self.journal.run(progress("journal", 30.0)), name="journal")
                await self._resume_alarms()  # before any rule sees a reading or a tick
                services = self._start_links(tg) + self._start_services(tg)
                services.append(tg.create_task(supervise("degraded modes", partial(
                    self.degraded.run, progress("degraded modes", 120.0), self.journal, self._rewind_runners))))
                bus_tasks = [
                    tg.create_task(supervise(
                        f"bus {bus.name}", partial(bus.run, self.ingest, progress(f"bus {bus.name}",
                                                                                  _bus_deadline(bus)))))
                    for bus in self.buses
                ]
                self.ready.set()
                await stop.wait()
                log.info("stopping: outputs off, polling stops, journal flushes, links say offline")
                if self.broadcast is not None:
                    await self.broadcast.close()  # while the buses still run: a bus-routed siren's OFF goes out
                await _cancel(bus_tasks)
                await self.journal.flush()
                writer.cancel()
                for link in self.links:
                    if hasattr(link, "announce_offline_on_stop"):
                        link.announce_offline_on_stop = not self.reloading
                await _cancel(services)
                await _cancel(list(self._background))
        finally:
            if self.commands is not None:
                self.commands.close()
            if self.broadcast is not None:
                await self.broadcast.close()  # idempotent; covers a run that failed before the stop path
                self.broadcast.audit.close()
            await self.journal.close()
        log.info("stopped; %d records committed this run", self.journal.committed)

    async def _resume_alarms(self) -> None:
        """Alarms active before this start (restart or reload) go on under their ids; records a stop or a kill
        kept from the journal are committed now; an alarm whose rule is gone is cleared with the reason."""
        book = await asyncio.to_thread(self.alarm_book.load)
        for body in book.outbox:
            record = {k: v for k, v in body.items() if k != "_token"}
            await self._commit_now(RecordClass.ALARM, EventRecord("alarm", str(record.get("rule")), record, now()))
        orphans = self.rules.resume(book.rules)
        for rule, entry in orphans.items():
            log.warning("alarm %s of rule %s cleared: %s", entry.get("alarm_id"), rule, RULE_REMOVED)
            await self._commit_now(RecordClass.ALARM, EventRecord("alarm", rule, cleared_body(
                rule, entry, RULE_REMOVED, now()), now()))
        await self.alarm_book.replace(self.rules.active_alarms(), [])
        await self.degraded.resume()

    def _rewind_runners(self) -> None:
        for runner in self.runners:
            runner.rewind()

    def _start_links(self, tg: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        """Each link's own loop (connect, reconnect) and the runner that feeds it from the journal."""
        progress = self._progress_factory
        tasks = []
        for link, cfg in zip(self.links, self.mqtt_configs, strict=True):
            runner = LinkRunner(link, self.journal, self.profiles[link.name],
                                batch=cfg.batch_records, max_inflight=cfg.max_inflight,
                                replay_rate=self.config.journal.replay_rate_for(link.name))
            self.runners.append(runner)
            deadline = cfg.reconnect_max + 60.0
            tasks.append(tg.create_task(supervise(
                f"link {link.name}", partial(link.run, progress(f"link {link.name}", deadline)))))
            tasks.append(tg.create_task(supervise(
                f"sender {link.name}", partial(runner.run, progress(f"sender {link.name}", deadline)))))
        base = Path(self.config_path).parent if self.config_path else Path.cwd()
        ack_key = ack_key_for_daemon(self.config.satellite, base) if self.satellites else None
        for sat, sat_cfg in self.satellites:
            sat_runner = SatelliteRunner(
                sat, self.journal, self.links, sat_cfg.policy,
                gateway_number=self.config.satellite.gateway_number,
                aliases=AliasTable(self.config.satellite.aliases),
                rule_aliases=self.config.satellite.rule_aliases, max_bytes=sat.max_bytes,
                state_dir=self.config.gateway.state_dir, ack_key=ack_key)
            self.satellite_runners[sat.name] = sat_runner
            deadline = sat_cfg.policy.send_timeout + 120.0
            tasks.append(tg.create_task(supervise(
                f"link {sat.name}", partial(sat.run, progress(f"link {sat.name}", deadline)))))
            tasks.append(tg.create_task(supervise(
                f"sender {sat.name}", partial(sat_runner.run, progress(f"sender {sat.name}", deadline)))))
        return tasks

    def _start_services(self, tg: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        """Rules clock, housekeeping, alert inbox, status page, cameras."""
        progress = self._progress_factory
        tasks = [
            tg.create_task(supervise("rules", partial(self._tick_rules, progress("rules", 30.0)))),
            tg.create_task(supervise("housekeeping", partial(self._housekeeping, progress("housekeeping", 60.0)))),
        ]
        if self.broadcast is not None:
            inbox = InboxWatcher(self.config.broadcast, self.broadcast, inbox_dir=self.config.inbox_path)
            tasks.append(tg.create_task(supervise("alert inbox", partial(inbox.run, progress("alert inbox", 60.0)))))
        if self.config.status is not None:
            server = StatusServer(self.config.status, self.control)
            tasks.append(tg.create_task(supervise("status page", server.run)))
        self.cameras = [CameraGuard(cam, self.on_detection, progress(f"vision {cam.name}", 60.0),
                                    self._journal_camera_fault) for cam in self.config.cameras]
        tasks.extend(tg.create_task(supervise(f"camera {guard.cfg.name}", guard.run)) for guard in self.cameras)
        return tasks

    # ---- what the status page and `fieldgate status` show -------------------------------

    def snapshot(self) -> dict[str, Any]:
        return build_snapshot(self)

    def _screen_command(self, link_name: str, topic: str, payload: bytes) -> bool:
        """Is this a command signed by one of our issuers? Asked by the link as each message is read."""
        if self.commands is None:
            return False
        profile = self.profiles[link_name]
        if profile.name != "fieldgate":
            inbound = profile.decode_command(topic, payload)
            if inbound is None:
                return False
            payload = json.dumps(inbound.params).encode()
        return self.commands.screen(payload)

    async def _on_mqtt_command(self, link_name: str, topic: str, payload: bytes) -> None:
        if self.commands is None:
            log.warning("command on %s ignored: the command plane is not running (see the start-up log)", topic)
            return
        profile = self.profiles[link_name]
        inbound = None
        if profile.name != "fieldgate":
            # Other platforms' RPCs carry our signed envelope as their params; unsigned ones are refused.
            inbound = profile.decode_command(topic, payload)
            if inbound is None:
                return
            payload = json.dumps(inbound.params).encode()
        # Returns once the command is claimed and audited (or refused): the link then acknowledges it to
        # the broker; the action runs on its own, so a long command never holds up the next one.
        admission = await self.commands.admit_json(payload, via=f"mqtt:{link_name}", topic=topic)
        if admission.run is not None:
            self._spawn(self._run_mqtt_command(link_name, admission.run, inbound))
        elif admission.reply is not None and admission.publish:
            # Not awaited: the link reads no PUBACK while a flood of commands waits to be taken
            # (back-pressure), so waiting here for our reply's PUBACK would wait forever. Refusals
            # that are answered at all are few (rate-limited in the plane).
            self._spawn(self._publish_reply(link_name, admission.reply, inbound))

    async def _run_mqtt_command(self, link_name: str, run: Callable[[], Awaitable[Reply]], inbound: Any) -> None:
        await self._publish_reply(link_name, await run(), inbound)

    async def _publish_reply(self, link_name: str, reply: Reply, inbound: Any) -> None:
        profile = self.profiles[link_name]
        suffix, body = ("reply", reply.payload()) if inbound is None else profile.encode_reply(inbound, reply.to_json())
        link = next(link for link in self.links if link.name == link_name)
        publish = getattr(link, "publish_reply", None)
        if publish is not None:
            try:
                await publish(suffix, body)
            except Exception as exc:  # the outcome is journalled (audit) even if the reply is lost
                log.warning("reply to command %s not published: %s", reply.id, exc)

    async def _on_satellite_command(self, link_name: str, message: CompactMessage) -> None:
        if self.commands is None:
            log.warning("satellite %s: command ignored: the command plane is not running", link_name)
            return
        reply = await self.commands.handle_compact(message, via=link_name)
        runner = self.satellite_runners.get(link_name)
        queued = runner is not None and runner.queue_reply(reply, message)
        log.info("satellite %s: command %s → %s (reply %s)", link_name, reply.id, reply.status,
                 "queued for the satellite" if queued else "only in the journal's audit record")

    async def _journal_command(self, record: dict[str, Any]) -> None:
        event = EventRecord("command", str(record.get("id")), record, float(record.get("ts", now())))
        await self.journal.append_now(RecordClass.EVIDENCE, event)

    def _start_command_plane(self) -> None:
        cfg = self.config.commands
        if not cfg.issuers:
            return
        base = Path(self.config_path).parent if self.config_path else Path.cwd()
        try:
            self.commands = CommandPlane(
                cfg, gateway_id=self.config.gateway.id, keys=load_issuer_keys(cfg, base), target=self.control,
                on_audit=self._journal_command,
                replay=ReplayCache(cfg.replay_cache_path(self.config.gateway.state_dir),
                                   max_entries=cfg.replay_cache_size, max_clock_skew=cfg.max_clock_skew),
                gateway_number=self.config.satellite.gateway_number)
        except (CommandKeyError, OSError, ValueError) as exc:
            # Polling, alarms and the siren must run even if the command keys are broken.
            log.error("command plane NOT started: %s; commands will be ignored until this is fixed", exc)

    def _on_satellite_message(self, link_name: str, data: bytes) -> None:
        """An incoming satellite message (called from the link's reader, on the event loop)."""
        try:
            message = decode_compact(data, AliasTable(self.config.satellite.aliases))
        except CompactDecodeError as exc:
            log.warning("satellite %s: undecodable incoming message (%d bytes): %s", link_name, len(data), exc,
                        extra={"link": link_name})
            return
        runner = self.satellite_runners.get(link_name)
        if message.kind is MessageKind.ACK and runner is not None:
            self._spawn(runner.handle_incoming(message))
        elif message.kind is MessageKind.COMMAND:
            self._spawn(self._on_satellite_command(link_name, message))
        else:
            log.info("satellite %s: incoming %s message ignored", link_name, message.kind.name,
                     extra={"link": link_name})

    async def action(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        return await self.control.action(name, args)


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
