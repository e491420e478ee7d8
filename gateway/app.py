"""The daemon's wiring: builds the drivers (through the registry), the data path, the command router and
the services, and runs them under one TaskGroup until stopped.

The data path (gateway/datapath.py) carries buses → rules → report filter → journal and alarms →
broadcast; the command router (gateway/router.py) carries commands back from the links; the link
runners feed the links from the journal. What the status view and the command target read of a
running gateway is the GatewayState protocol (gateway/state.py), which this class implements.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Coroutine, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.ackkey import ack_key_for_daemon
from gateway.alerts.inbox import InboxWatcher
from gateway.alerts.subsystem import BroadcastSubsystem
from gateway.config.site import SiteConfig
from gateway.contracts import BusDriver, LinkWiring, ReportLink, ReportLinkSettings
from gateway.control import GatewayControl
from gateway.datapath import Background, DataPath, ReadingObserver
from gateway.degraded import DegradedModes
from gateway.fleet.inventory import inventory
from gateway.history import attach_history
from gateway.journal import AsyncJournal
from gateway.journal.fallback import fallback_path, open_journal, spill
from gateway.links import LinkRunner
from gateway.profiles import get_profile
from gateway.registry import (
    build_bus,
    build_link,
    build_outputs,
    build_report_link,
    build_satellite_link,
    link_classes,
    primary_links,
    report_links,
    satellite_links,
)
from gateway.report import ReportFilter
from gateway.router import CommandRouter
from gateway.rules import RuleEngine
from gateway.rules.continuity import RULE_REMOVED, AlarmBook, cleared_body
from gateway.shared import EventRecord, NullProgress, Progress, Reading, RecordClass, now
from gateway.state import PrimarySlot, SatelliteSlot
from gateway.view import build_snapshot

if TYPE_CHECKING:  # a site without cameras imports nothing of the vision pipeline
    from gateway.vision.camerafault import CameraGuard

log = logging.getLogger("fieldgate")

ProgressFactory = Callable[[str, float], Progress]


class Gateway:
    def __init__(self, config: SiteConfig, *, progress_factory: ProgressFactory | None = None,
                 config_path: str | None = None,
                 loop_states: Callable[[], list[dict[str, Any]]] | None = None,
                 rules: RuleEngine | None = None) -> None:
        self.config = config
        self.config_path = config_path
        gateway_id = config.gateway.id
        self._progress_factory = progress_factory or (lambda _name, _deadline: NullProgress())
        self._loop_states = loop_states or list
        self._background = Background()
        self.ready = asyncio.Event()
        self.started = time.time()
        self.reloading = False  # set by the daemon before a stop that a new gateway follows at once
        self.broadcast: BroadcastSubsystem | None = None
        # Continuity (gateway/degraded.py): a journal that cannot be opened is replaced by a temporary one.
        link_map = {link.name: link_classes(link) for link in config.links}
        journal, journal_problem = open_journal(config.journal_path, link_map, config.journal, gateway_id)
        self.journal = AsyncJournal(journal, queue_size=config.journal.queue,
                                    commit_window=config.journal.commit_window)
        self.journal.spill = partial(spill, config.journal_path, link_map, config.journal, gateway_id)
        spare = fallback_path(config.journal_path, gateway_id).parent  # RAM, while the state dir fails
        self.alarm_book = AlarmBook(config.gateway.state_dir / "alarms.json", spare / "alarms.json")
        self.link_runners: list[LinkRunner] = []
        # ---- end continuity
        self.buses: list[BusDriver] = [build_bus(bus) for bus in config.buses]
        self.primaries: list[PrimarySlot] = []
        self.satellites: list[SatelliteSlot] = []
        self.router = CommandRouter(config, config_path, self.journal, self.primaries, self.satellites,
                                    self._background)
        for link_config in primary_links(config.links):
            profile = get_profile(link_config.profile, gateway_id, link_config, config.journal.historical_after)
            link = build_link(link_config, LinkWiring(
                gateway_id, profile, on_command=partial(self.router.on_mqtt_command, link_config.name),
                screen=partial(self.router.screen_command, link_config.name)))
            self.primaries.append(PrimarySlot(link, link_config, profile))
        for sat_config in satellite_links(config.links):
            sat = build_satellite_link(sat_config, partial(self.router.on_satellite_message, sat_config.name))
            self.satellites.append(SatelliteSlot(sat, sat_config))
        # Report links (SL 651 to flood-control centres) report to third parties, not the platform: not
        # primaries for the satellite failover, no command plane; each has its own runner and journal cursor.
        self.report_links: list[tuple[ReportLink, ReportLinkSettings]] = [
            (build_report_link(link_config), link_config) for link_config in report_links(config.links)]
        self.datapath = DataPath(self.journal, ReportFilter([p for bus in self.buses for p in bus.points()]),
                                 rules or RuleEngine(config.rules),  # carried over by a reload that kept the rules
                                 self._background)
        self.datapath.alarm_book = self.alarm_book
        self.degraded = DegradedModes(gateway_id, self.alarm_book, self.datapath.commit_now,
                                      journal_path=config.journal_path, links=link_map, settings=config.journal,
                                      journal_problem=journal_problem)
        self.cameras: list[CameraGuard] = []  # built when the cameras start
        self.history = attach_history(config, self.datapath)  # the status page's trends: an observer, not the journal
        self.control = GatewayControl(self)
        # The daemon's roll-out manager replaces this with the full inventory (config hash, roll-out state).
        self.inventory_source: Callable[[], dict[str, Any]] = partial(inventory, None, None, [], None)

    # ---- what the status view and the command target read (GatewayState) -----------------

    @property
    def rules(self) -> RuleEngine:
        return self.datapath.rules

    @property
    def observers(self) -> list[ReadingObserver]:
        """Called with every reading the report filter admits (the demo shows them)."""
        return self.datapath.observers

    @property
    def latest(self) -> dict[str, Reading]:
        return self.datapath.latest

    @property
    def latest_snapshot(self) -> dict[str, Any] | None:
        return self.datapath.latest_snapshot

    @property
    def evidence(self) -> Sequence[dict[str, Any]]:
        return self.datapath.evidence

    @property
    def counters(self) -> dict[str, Any]:
        return self.datapath.counters

    @property
    def journal_stats(self) -> dict[str, Any]:
        return self.datapath.journal_stats

    def snapshot(self) -> dict[str, Any]:
        return build_snapshot(self)

    def inventory(self) -> dict[str, Any]:
        return self.inventory_source()

    @property
    def commands_running(self) -> bool:
        return self.router.commands is not None

    def loop_states(self) -> list[dict[str, Any]]:
        return self._loop_states()

    def degraded_status(self) -> list[dict[str, str]]:
        return self.degraded.status()

    async def action(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        return await self.control.action(name, args)

    # ---- lifecycle -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        log.info("gateway %s: %d buses, %d links, %d cameras, %d rules, journal %s", self.config.gateway.id,
                 len(self.buses), len(self.config.links), len(self.config.cameras), len(self.config.rules.rules),
                 self.config.journal_path)
        progress = self._progress_factory
        self.router.start(self.control)
        if self.config.broadcast.outputs:
            self.broadcast = BroadcastSubsystem(
                self.config.broadcast, self.degraded.open_audit(self.config.audit_path),
                build_outputs(self.config.broadcast.outputs, self.buses, self.config.buses),
                on_evidence=self.datapath.journal_evidence,
                on_fault_alarm=self.datapath.journal_fault)
            self.datapath.broadcast = self.broadcast
        try:
            async with asyncio.TaskGroup() as tg:
                writer = tg.create_task(self.journal.run(progress("journal", 30.0)), name="journal")
                await self._resume_alarms()  # before any rule sees a reading or a tick
                services = self._start_links(tg) + self._start_services(tg)
                services.append(tg.create_task(supervise("degraded modes", partial(
                    self.degraded.run, progress("degraded modes", 120.0), self.journal, self._rewind_runners))))
                bus_tasks = [
                    tg.create_task(supervise(
                        f"bus {bus.name}", partial(bus.run, self.datapath.ingest, progress(f"bus {bus.name}",
                                                                                  bus.stall_deadline))))
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
                for slot in self.primaries:
                    slot.link.announce_offline_on_stop = not self.reloading
                await _cancel(services)
                await _cancel(list(self._background.tasks))
        finally:
            self.router.close()
            if self.broadcast is not None:
                await self.broadcast.close()  # idempotent; covers a run that failed before the stop path
                self.broadcast.audit.close()
            await self.journal.close()
        log.info("stopped; %d records committed this run", self.journal.committed)

    async def _resume_alarms(self) -> None:
        """Alarms active before this start (restart or reload) go on under their ids; records a stop or a kill
        kept from the journal are committed now; an alarm whose rule is gone is cleared with the reason
        (gateway/rules/continuity.py)."""
        book = await asyncio.to_thread(self.alarm_book.load)
        for body in book.outbox:
            record = {k: v for k, v in body.items() if k != "_token"}
            await self.datapath.commit_now(RecordClass.ALARM, EventRecord("alarm", str(record.get("rule")), record,
                                                                          now()))
        for rule, entry in self.rules.resume(book.rules).items():
            log.warning("alarm %s of rule %s cleared: %s", entry.get("alarm_id"), rule, RULE_REMOVED)
            await self.datapath.commit_now(RecordClass.ALARM, EventRecord("alarm", rule, cleared_body(
                rule, entry, RULE_REMOVED, now()), now()))
        await self.alarm_book.replace(self.rules.active_alarms(), [])
        await self.degraded.resume()

    def _rewind_runners(self) -> None:
        """The journal under the runners was replaced (the temporary one merged into the real one)."""
        for runner in self.link_runners:
            runner.rewind()

    def _start_links(self, tg: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
        """Each link's own loop (connect, reconnect) and the runner that feeds it from the journal."""
        progress = self._progress_factory
        tasks = []
        for slot in self.primaries:
            link, cfg = slot.link, slot.config
            runner = slot.runner = LinkRunner(link, self.journal, slot.profile,
                                              batch=cfg.batch_records, max_inflight=cfg.max_inflight,
                                              replay_rate=self.config.journal.replay_rate_for(link.name))
            self.link_runners.append(runner)
            deadline = cfg.reconnect_max + 60.0
            tasks.append(tg.create_task(supervise(
                f"link {link.name}", partial(link.run, progress(f"link {link.name}", deadline)))))
            tasks.append(tg.create_task(supervise(
                f"sender {link.name}", partial(runner.run, progress(f"sender {link.name}", deadline)))))
        for report_link, report_cfg in self.report_links:
            runner = LinkRunner(report_link, self.journal, report_link.encoder, batch=report_cfg.batch_records,
                                max_inflight=report_cfg.max_inflight,
                                replay_rate=self.config.journal.replay_rate_for(report_link.name))
            self.link_runners.append(runner)
            deadline = report_link.stall_deadline
            tasks.append(tg.create_task(supervise(f"link {report_link.name}", partial(
                report_link.run, progress(f"link {report_link.name}", deadline)))))
            tasks.append(tg.create_task(supervise(f"sender {report_link.name}", partial(
                runner.run, progress(f"sender {report_link.name}", deadline)))))
        base = Path(self.config_path).parent if self.config_path else Path.cwd()
        ack_key = ack_key_for_daemon(self.config.satellite, base) if self.satellites else None
        if self.satellites:
            from gateway.compact import AliasTable
            from gateway.satellite import SatelliteRunner  # ~1 MB: only a site with a satellite link
        for sat_slot in self.satellites:
            sat, sat_cfg = sat_slot.link, sat_slot.config
            sat_runner = sat_slot.runner = SatelliteRunner(
                sat, self.journal, [slot.link for slot in self.primaries], sat_cfg.policy,
                gateway_number=self.config.satellite.gateway_number,
                aliases=AliasTable(self.config.satellite.aliases),
                rule_aliases=self.config.satellite.rule_aliases, max_bytes=sat.max_bytes,
                state_dir=self.config.gateway.state_dir, ack_key=ack_key)
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
            tg.create_task(supervise("rules", partial(self.datapath.tick_rules, progress("rules", 30.0)))),
            tg.create_task(supervise("housekeeping", partial(
                self.datapath.housekeeping, progress("housekeeping", 60.0), self.snapshot, self.config.health_interval,
                self.config.gateway.state_dir))),
        ]
        if self.broadcast is not None:
            inbox = InboxWatcher(self.config.broadcast, self.broadcast, inbox_dir=self.config.inbox_path)
            tasks.append(tg.create_task(supervise("alert inbox", partial(inbox.run, progress("alert inbox", 60.0)))))
        if self.history is not None:
            tasks.append(tg.create_task(supervise("history", self.history.run)))
        if self.config.status is not None:
            from gateway.status.server import StatusServer  # the page, its texts and views: only with a page

            server = StatusServer(self.config.status, self.control)
            tasks.append(tg.create_task(supervise("status page", server.run)))
        # A camera whose model is refused is a configuration fault (an alarm upstream, never a siren), held
        # until the manifest or model changes, not a crash loop (gateway/vision/camerafault.py).
        if self.config.cameras:
            from gateway.vision.camerafault import CameraGuard

            self.cameras = [CameraGuard(cam, self.datapath.on_detection, progress(f"vision {cam.name}", 60.0),
                                        self.datapath.journal_camera_fault) for cam in self.config.cameras]
        tasks.extend(tg.create_task(supervise(f"camera {guard.cfg.name}", guard.run)) for guard in self.cameras)
        return tasks


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
