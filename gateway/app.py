"""The daemon: wires buses → report filter → journal → link runners under one TaskGroup."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from functools import partial
from typing import Any

from gateway.config.site import SiteConfig
from gateway.journal import AsyncJournal, Journal
from gateway.links import LinkRunner
from gateway.payloads import FieldgateProfile
from gateway.registry import build_bus, build_link, link_classes
from gateway.report import ReportFilter
from gateway.shared import BusDriver, NullProgress, Progress, Reading, RecordClass

log = logging.getLogger("fieldgate")

ReadingObserver = Callable[[Reading], Awaitable[None]]


class Gateway:
    def __init__(self, config: SiteConfig, progress_factory: Callable[[str, float], Progress] | None = None):
        self.config = config
        gateway_id = config.gateway.id
        self.profiles = {
            link.name: FieldgateProfile(gateway_id, link.topic_prefix) for link in config.links
        }
        self.buses: list[BusDriver] = [build_bus(bus) for bus in config.buses]
        self.links = [
            build_link(link, gateway_id, self.profiles[link.name].status) for link in config.links
        ]
        self.journal = AsyncJournal(
            Journal(config.journal_path, {link.name: link_classes(link) for link in config.links}),
            queue_size=config.journal.queue,
            commit_window=config.journal.commit_window,
        )
        self.report_filter = ReportFilter([p for bus in self.buses for p in bus.points()])
        self.observers: list[ReadingObserver] = []
        self._progress_factory = progress_factory or (lambda _name, _deadline: NullProgress())
        self.ready = asyncio.Event()
        self.latest: dict[str, Reading] = {}  # one entry per point: bounded by the config

    async def ingest(self, reading: Reading) -> None:
        """The sink every bus hands its samples to."""
        self.latest[reading.point] = reading
        reason = self.report_filter.admit(reading)
        if reason is None:
            return
        cls = RecordClass.STATE if reason == "quality" else RecordClass.TELEMETRY
        await self.journal.put(cls, reading)
        for observer in self.observers:
            await observer(reading)

    async def run(self, stop: asyncio.Event) -> None:
        log.info("gateway %s: %d buses, %d links, journal %s", self.config.gateway.id,
                 len(self.buses), len(self.links), self.config.journal_path)
        progress = self._progress_factory
        async with asyncio.TaskGroup() as tg:
            writer = tg.create_task(self.journal.run(progress("journal", 30.0)), name="journal")
            link_tasks = []
            for link, cfg in zip(self.links, self.config.links, strict=True):
                runner = LinkRunner(link, self.journal, self.profiles[link.name],
                                    batch=cfg.batch_records, max_inflight=cfg.max_inflight)
                link_tasks.append(tg.create_task(supervise(
                    f"link {link.name}", partial(link.run, progress(f"link {link.name}", 60.0)))))
                link_tasks.append(tg.create_task(supervise(
                    f"sender {link.name}", partial(runner.run, progress(f"sender {link.name}", 60.0)))))
            bus_tasks = [
                tg.create_task(supervise(
                    f"bus {bus.name}", partial(bus.run, self.ingest, progress(f"bus {bus.name}", 60.0))))
                for bus in self.buses
            ]
            self.ready.set()
            await stop.wait()
            log.info("stopping: polling stops, journal flushes, links say offline")
            await _cancel(bus_tasks)
            await self.journal.flush()
            writer.cancel()
            await _cancel(link_tasks)
        await self.journal.close()
        log.info("stopped; %d records committed this run", self.journal.committed)


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


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
