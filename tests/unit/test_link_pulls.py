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
