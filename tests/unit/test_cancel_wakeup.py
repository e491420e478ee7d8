"""A loop that is cancelled in the same event-loop step as its wake-up must still stop.

Python 3.11's ``asyncio.wait_for`` returns the inner result and swallows the cancellation when
both land in the same step. Gateway.run's stop path does exactly that: ``journal.flush()``
commits and wakes every link runner, and the very next statements cancel the writer and the
runners. A loop that swallowed that cancel would run on, and the TaskGroup (shutdown, SIGHUP
reload) would wait for it forever.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway import compact
from gateway.journal import AsyncJournal, Journal, JournalSettings
from gateway.links import LinkRunner
from gateway.payloads import FieldgateProfile
from gateway.satellite import SatelliteRunner
from gateway.shared import NullProgress, OutboundMessage, Progress, Quality, Reading, RecordClass, SatellitePolicy
from tests.unit.test_journal_replay import LoopbackLink

pytestmark = pytest.mark.timeout(60)


class IdleSatellite:
    """A satellite link that is up and has nothing to carry (the runner waits for news)."""

    name = "bd"
    connected = True
    max_bytes = 78
    interval_s = 0.0
    foreign_count = None

    async def run(self, progress: Progress) -> None:
        await asyncio.Event().wait()

    async def send(self, message: OutboundMessage) -> None:
        raise AssertionError("nothing should be sent")


def journal(tmp_path: Path, links: dict[str, set[RecordClass]]) -> AsyncJournal:
    settings = JournalSettings(reserve_bytes=0, min_free_bytes=0)
    return AsyncJournal(Journal(tmp_path / "j.sqlite", links, settings), queue_size=100, commit_window=0.01)


async def stops(task: asyncio.Task[None]) -> bool:
    """Whether ``task`` finished after its cancel (bounded wait, so a regression fails instead of hanging)."""
    done, _ = await asyncio.wait([task], timeout=5.0)
    if not done:
        task.cancel()  # a second cancel is not swallowed: leave nothing running behind the test
        await asyncio.gather(task, return_exceptions=True)
    return bool(done)


def test_link_runner_stops_when_cancelled_as_it_is_woken(tmp_path: Path) -> None:
    async def scenario() -> bool:
        aj = journal(tmp_path, {"mqtt": set(RecordClass)})
        runner = LinkRunner(LoopbackLink(), aj, FieldgateProfile("gw"))
        task = asyncio.create_task(runner.run(NullProgress()))
        await asyncio.sleep(0.3)  # idle, waiting for news
        aj._notify()  # what a flush's commit does ...
        task.cancel()  # ... right before Gateway.run cancels the services
        stopped = await stops(task)
        await aj.close()
        return stopped

    assert asyncio.run(scenario()), "the link runner swallowed its cancellation"


def test_satellite_runner_stops_when_cancelled_as_it_is_woken(tmp_path: Path) -> None:
    async def scenario() -> bool:
        aj = journal(tmp_path, {"bd": {RecordClass.ALARM}})
        runner = SatelliteRunner(IdleSatellite(), aj, [], SatellitePolicy(), gateway_number=1,
                                 aliases=compact.AliasTable({}), rule_aliases={}, max_bytes=78, state_dir=tmp_path)
        task = asyncio.create_task(runner.run(NullProgress()))
        await asyncio.sleep(0.5)  # satellite-only: active at once, nothing to send, waiting for news
        assert runner.active
        aj._notify()
        task.cancel()
        stopped = await stops(task)
        await aj.close()
        return stopped

    assert asyncio.run(scenario()), "the satellite runner swallowed its cancellation"


def test_journal_writer_stops_when_cancelled_as_a_reading_arrives(tmp_path: Path) -> None:
    async def scenario() -> tuple[bool, int]:
        aj = journal(tmp_path, {"mqtt": set(RecordClass)})
        writer = asyncio.create_task(aj.run(NullProgress()))
        await asyncio.sleep(0.1)  # idle, waiting for the first queued record
        await aj.put(RecordClass.TELEMETRY, Reading("dam.level", 1.0, Quality.GOOD, 1000.0, "m"))
        writer.cancel()
        stopped = await stops(writer)
        await aj.flush()  # the stop path: whatever the writer did not take is committed now
        depth = await aj.call(aj.journal.depth)
        await aj.close()
        return stopped, depth

    stopped, depth = asyncio.run(scenario())
    assert stopped, "the journal writer swallowed its cancellation"
    assert depth == 1, "the reading queued as the writer stopped was lost"


def test_flush_while_the_writer_holds_a_batch_keeps_queue_order(tmp_path: Path) -> None:
    """Gateway.run's stop path flushes while the writer may be gathering a batch: what was queued
    first must still get the lower seq (seq order is the order readings were taken)."""

    async def scenario() -> list[float]:
        aj = journal(tmp_path, {"mqtt": set(RecordClass)})
        aj.commit_window = 1.0
        writer = asyncio.create_task(aj.run(NullProgress()))
        await asyncio.sleep(0.1)
        await aj.put(RecordClass.TELEMETRY, Reading("dam.level", 1.0, Quality.GOOD, 1000.0, "m"))
        await asyncio.sleep(0)  # the writer takes it and naps, gathering a batch
        await asyncio.sleep(0)
        await aj.put(RecordClass.TELEMETRY, Reading("dam.level", 2.0, Quality.GOOD, 1001.0, "m"))
        await aj.flush()
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        await aj.flush()
        records = await aj.call(aj.journal.pending, "mqtt", 10)
        await aj.close()
        return [r.body["value"] for r in records]

    assert asyncio.run(scenario()) == [1.0, 2.0]
