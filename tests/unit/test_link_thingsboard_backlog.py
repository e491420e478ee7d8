"""A ThingsBoard link that starts with a backlog in the journal: its first pull sends device connect messages,
which carry no records. The runner's backlog test took ``min()`` of a message's seqs and crashed on them, and
the supervisor's restart met the same connect messages again: the link never sent anything until the backlog
was gone some other way (found by bench/ingest.py, issue 18 fifth pass; on main since the drain pass d19475f)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.journal import AsyncJournal, Journal, JournalSettings
from gateway.links import LinkRunner
from gateway.payloads import OutboundMessage
from gateway.profiles.options import ThingsboardOptions
from gateway.profiles.thingsboard import ThingsboardProfile
from gateway.shared import NullProgress, RecordClass
from tests.unit.test_journal_replay import LoopbackLink, reading

pytestmark = pytest.mark.timeout(60)


class TopicLink(LoopbackLink):
    """Acknowledges every message and keeps its topic (ThingsBoard payloads are not our envelope)."""

    def __init__(self) -> None:
        super().__init__()
        self.topics: list[str] = []

    async def send(self, message: OutboundMessage) -> None:
        await asyncio.sleep(0.002)
        self.topics.append(message.topic)


def test_a_backlog_with_device_connects_is_sent_not_crashed_on(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, list[str], BaseException | None]:
        journal = Journal(tmp_path / "j.sqlite", {"mqtt": set(RecordClass)},
                          JournalSettings(reserve_bytes=0, min_free_bytes=0))
        aj = AsyncJournal(journal, queue_size=1000, commit_window=0.01)
        writer = asyncio.create_task(aj.run(NullProgress()))
        await aj.put_many([(RecordClass.TELEMETRY, reading(f"dam.p{i}", float(i))) for i in range(50)])
        for _ in range(200):  # the backlog is committed before the link's runner starts (its floor is above it)
            if await aj.call(journal.last_seq) >= 50:
                break
            await asyncio.sleep(0.01)
        link = TopicLink()
        profile = ThingsboardProfile("res-01", ThingsboardOptions(device_of_point={"dam.p0": "Dam"}))
        runner = LinkRunner(link, aj, profile, batch=20, max_inflight=8)
        task = asyncio.create_task(runner.run(NullProgress()))
        for _ in range(500):
            if task.done() or await aj.call(journal.depth) == 0:
                break
            await asyncio.sleep(0.01)
        crashed = task.exception() if task.done() else None
        depth = await aj.call(journal.depth)
        task.cancel()
        writer.cancel()
        await asyncio.gather(task, writer, return_exceptions=True)
        await aj.close()
        return depth, link.topics, crashed

    depth, topics, crashed = asyncio.run(scenario())
    assert crashed is None, repr(crashed)
    assert "v1/gateway/connect" in topics
    assert depth == 0, topics
