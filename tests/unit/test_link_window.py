"""The slot kept free for alarms must be free in the link's own window, not only in the runner's.

The MQTT link lowers its in-flight window to the broker's Receive Maximum (drivers/mqtt/link.py);
a runner that still counts ``max_inflight`` queues telemetry inside the link, and a live alarm
then waits for those PUBACKs behind it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import pytest

from gateway.app import supervise
from gateway.journal import AsyncJournal, Journal, JournalRecord, JournalSettings
from gateway.links import LinkRunner
from gateway.payloads import FieldgateProfile
from gateway.shared import NullProgress, OutboundMessage, Progress, Quality, Reading, RecordClass
from tests.unit.test_journal_replay import LoopbackLink

pytestmark = pytest.mark.timeout(60)


class NarrowLink:
    """A link whose far side allows ``window`` messages in flight and sends one PUBACK per credit."""

    name = "mqtt"
    connected = True

    def __init__(self, window: int) -> None:
        self.window = window
        self._slots = asyncio.Semaphore(window)
        self.credits = asyncio.Semaphore(0)
        self.on_the_wire: list[str] = []  # topic kinds, in the order they got a window slot

    async def run(self, progress: Progress) -> None:
        await asyncio.Event().wait()

    async def send(self, message: OutboundMessage) -> None:
        async with self._slots:
            self.on_the_wire.append(message.topic.rsplit("/", 1)[1])
            assert json.loads(message.payload)["records"]
            await self.credits.acquire()


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.01)


def test_alarm_overtakes_telemetry_queued_for_a_narrow_window(tmp_path: Path) -> None:
    async def scenario() -> int:
        journal = Journal(tmp_path / "j.sqlite", {"mqtt": set(RecordClass)},
                          JournalSettings(reserve_bytes=0, min_free_bytes=0))
        journal.append([(RecordClass.TELEMETRY, Reading(f"p{i}", float(i), Quality.GOOD, 1000.0 + i))
                        for i in range(40)])
        aj = AsyncJournal(journal, queue_size=100, commit_window=0.01)
        link = NarrowLink(window=2)
        runner = LinkRunner(link, aj, FieldgateProfile("gw"), batch=1, max_inflight=8)
        task = asyncio.create_task(runner.run(NullProgress()))
        await settle()  # the backlog fills whatever window the runner believes in
        before = len(link.on_the_wire)
        await aj.append_now(RecordClass.ALARM, Reading("dam.level", 153.0, Quality.GOOD, 1100.0))
        for _ in range(40):  # one PUBACK at a time until the alarm is on the wire
            if "alarm" in link.on_the_wire:
                break
            link.credits.release()
            await settle()
        ahead = link.on_the_wire[before:].index("alarm")
        task.cancel()
        for _ in range(50):
            link.credits.release()
        await asyncio.gather(task, return_exceptions=True)
        await aj.close()
        return ahead

    ahead = asyncio.run(scenario())
    # With the runner counting the link's window of 2 it holds one telemetry message behind the one in
    # flight, which goes first; counting max_inflight=8 it had queued 5 more inside the link.
    assert ahead <= 1, f"{ahead} telemetry messages went out between the alarm's commit and the alarm"


class FlakyProfile(FieldgateProfile):
    """Fails once, the way a bug or a transient error in a pull would crash the runner's loop."""

    def __init__(self) -> None:
        super().__init__("gw")
        self.failed = False

    def encode(self, records: Sequence[JournalRecord], now: float | None = None) -> list[OutboundMessage]:
        if not self.failed:
            self.failed = True
            raise RuntimeError("encoder failed once")
        return super().encode(records, now)


def test_records_pulled_before_a_runner_crash_are_sent_after_its_restart(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int]:
        journal = Journal(tmp_path / "j.sqlite", {"mqtt": set(RecordClass)},
                          JournalSettings(reserve_bytes=0, min_free_bytes=0))
        aj = AsyncJournal(journal, queue_size=100, commit_window=0.01)
        await aj.append_now(RecordClass.ALARM, Reading("dam.level", 153.0, Quality.GOOD, 1100.0))
        link = LoopbackLink()
        runner = LinkRunner(link, aj, FlakyProfile())
        task = asyncio.create_task(supervise("sender mqtt", partial(runner.run, NullProgress())))
        for _ in range(500):  # the supervisor restarts the runner within a second
            if link.records:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        depth = await aj.call(journal.depth)
        await aj.close()
        return len(link.records), depth

    sent, depth = asyncio.run(scenario())
    assert sent == 1 and depth == 0, "the alarm pulled before the crash was skipped by the restarted runner"
