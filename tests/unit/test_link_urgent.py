"""A new alarm goes on the wire without waiting for a PUBACK, even while the runner holds telemetry it
already pulled for a full window (the slot kept free for alarms is taken at once)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.journal import AsyncJournal, Journal, JournalSettings
from gateway.links import LinkRunner
from gateway.payloads import FieldgateProfile
from gateway.shared import NullProgress, Quality, Reading, RecordClass
from tests.unit.test_link_window import NarrowLink, settle

pytestmark = pytest.mark.timeout(60)


def test_alarm_needs_no_puback_behind_pulled_telemetry(tmp_path: Path) -> None:
    async def scenario() -> list[str]:
        journal = Journal(tmp_path / "j.sqlite", {"mqtt": set(RecordClass)},
                          JournalSettings(reserve_bytes=0, min_free_bytes=0))
        journal.append([(RecordClass.TELEMETRY, Reading(f"p{i}", float(i), Quality.GOOD, 1000.0 + i))
                        for i in range(40)])
        aj = AsyncJournal(journal, queue_size=100, commit_window=0.01)
        link = NarrowLink(window=3)
        runner = LinkRunner(link, aj, FieldgateProfile("gw"), batch=1, max_inflight=3, replay_rate=1e9)
        task = asyncio.create_task(runner.run(NullProgress()))
        await settle()  # two telemetry messages in flight, a third pulled and waiting for a slot
        assert link.on_the_wire == ["telemetry", "telemetry"]
        await aj.append_now(RecordClass.ALARM, Reading("dam.level", 153.0, Quality.GOOD, 1100.0))
        await settle()  # no PUBACK at all (no credit released)
        wire = list(link.on_the_wire)
        task.cancel()
        for _ in range(50):
            link.credits.release()
        await asyncio.gather(task, return_exceptions=True)
        await aj.close()
        return wire

    wire = asyncio.run(scenario())
    # Today the alarm waits until a PUBACK frees a slot, which the telemetry pulled before it takes first.
    assert wire == ["telemetry", "telemetry", "alarm"]
