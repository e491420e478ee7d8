"""A live link asks the journal thread once per commit, not three times: once a pull took everything the
link was owed, neither the runner nor the acknowledgement of what it sent pulls again until the next
commit (each pull is an executor round trip and a few SQL reads; bench/RESULTS.md, issue 18 third pass)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.journal import AsyncJournal, Journal, JournalSettings
from gateway.links import LinkRunner, collect
from gateway.payloads import FieldgateProfile
from gateway.shared import NullProgress, Quality, Reading, RecordClass
from tests.unit.test_journal_replay import LoopbackLink
from tests.unit.test_link_window import NarrowLink, settle

pytestmark = pytest.mark.timeout(60)

COMMITS = 6


class CountingJournal(AsyncJournal):
    pulls = 0

    async def call(self, fn: Any, *args: Any) -> Any:
        if fn is collect:
            self.pulls += 1
        return await super().call(fn, *args)


def test_one_pull_per_commit_on_a_live_link(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int]:
        journal = Journal(tmp_path / "j.sqlite", {"mqtt": set(RecordClass)},
                          JournalSettings(reserve_bytes=0, min_free_bytes=0))
        aj = CountingJournal(journal, queue_size=1000, commit_window=0.01)
        link = LoopbackLink()
        runner = LinkRunner(link, aj, FieldgateProfile("gw"), batch=200, max_inflight=8)
        writer = asyncio.create_task(aj.run(NullProgress()))
        task = asyncio.create_task(runner.run(NullProgress()))
        await asyncio.sleep(0.1)
        before = aj.pulls
        for c in range(COMMITS):
            await aj.put_many([(RecordClass.TELEMETRY, Reading(f"p{i}", float(c), Quality.GOOD, 1000.0 + c))
                               for i in range(20)])
            await asyncio.sleep(0.1)
        pulls = aj.pulls - before
        task.cancel()
        writer.cancel()
        await asyncio.gather(task, writer, return_exceptions=True)
        await aj.close()
        return pulls, len(link.records)

    pulls, delivered = asyncio.run(scenario())
    assert delivered == COMMITS * 20
    # Before: a pull per commit, an empty one straight after it, and an empty one after each PUBACK (3 each).
    assert pulls <= COMMITS + 1


def test_a_commit_seen_while_waiting_for_a_slot_is_pulled_once_the_slot_frees(tmp_path: Path) -> None:
    """The runner waits for a window slot and a commit lands meanwhile: that news must not be lost to the
    'nothing more to pull' shortcut (it would wait for the next commit, or a second)."""
    async def scenario() -> tuple[list[str], float]:
        journal = Journal(tmp_path / "j.sqlite", {"mqtt": set(RecordClass)},
                          JournalSettings(reserve_bytes=0, min_free_bytes=0))
        aj = AsyncJournal(journal, queue_size=1000, commit_window=0.01)
        link = NarrowLink(window=2)  # telemetry gets one slot (one kept free for alarms)
        runner = LinkRunner(link, aj, FieldgateProfile("gw"), batch=200, max_inflight=2)
        writer = asyncio.create_task(aj.run(NullProgress()))
        task = asyncio.create_task(runner.run(NullProgress()))

        async def commit(value: float) -> None:
            await aj.put_many([(RecordClass.TELEMETRY, Reading(f"p{i}", value, Quality.GOOD, 1000.0))
                               for i in range(5)])
            await settle()

        await settle()
        await commit(1.0)  # on the wire, no PUBACK yet: the slot stays taken
        await commit(2.0)  # pulled, waits for the slot
        await commit(3.0)  # committed while the runner waits for the slot
        link.credits.release()  # PUBACK of the first: the second goes out
        link.credits.release()
        started = asyncio.get_running_loop().time()
        for _ in range(200):  # up to 2 s
            if len(link.on_the_wire) >= 3:
                break
            await asyncio.sleep(0.01)
        waited = asyncio.get_running_loop().time() - started
        wire = list(link.on_the_wire)
        task.cancel()
        writer.cancel()
        for _ in range(10):
            link.credits.release()
        await asyncio.gather(task, writer, return_exceptions=True)
        await aj.close()
        return wire, waited

    wire, waited = asyncio.run(scenario())
    assert wire == ["telemetry"] * 3
    assert waited < 0.5  # not the runner's one-second wait for news
