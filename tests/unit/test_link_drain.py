"""A backlog drain through the link runner: whole, in order, in messages of at most ``batch`` records, with
fewer journal round trips than messages (acks merged, pulls of several messages; bench/RESULTS.md, "Drain,
fourth pass"). Counted, never timed."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.journal import AsyncJournal, Journal, JournalSettings
from gateway.links import AckBatcher, LinkRunner, collect
from gateway.payloads import FieldgateProfile
from gateway.shared import NullProgress, OutboundMessage, Quality, Reading, RecordClass
from tests.unit.test_journal_replay import LoopbackLink

pytestmark = pytest.mark.timeout(60)

BACKLOG = 6_000
BATCH = 200


class CountingJournal(AsyncJournal):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pulls = 0
        self.acks: list[int] = []  # seqs per journal ack call

    async def call(self, fn: Any, *args: Any) -> Any:
        if fn is collect:
            self.pulls += 1
        if fn == self.journal.ack:
            self.acks.append(len(args[1]))
        return await super().call(fn, *args)


class SizedLink(LoopbackLink):
    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    async def send(self, message: OutboundMessage) -> None:
        self.sizes.append(len(json.loads(message.payload)["records"]))
        await super().send(message)


def _journal(tmp_path: Path) -> Journal:
    journal = Journal(tmp_path / "j.sqlite", {"mqtt": set(RecordClass)},
                      JournalSettings(reserve_bytes=0, min_free_bytes=0))
    for base in range(0, BACKLOG, 1000):
        journal.append([(RecordClass.TELEMETRY, Reading(f"p{i % 7}", float(i), Quality.GOOD, 1000.0 + i))
                        for i in range(base, base + 1000)])
    return journal


def test_a_backlog_drains_whole_in_order_with_fewer_round_trips_than_messages(tmp_path: Path) -> None:
    async def scenario() -> tuple[SizedLink, CountingJournal]:
        aj = CountingJournal(_journal(tmp_path), queue_size=1000, commit_window=0.01)
        link = SizedLink()
        runner = LinkRunner(link, aj, FieldgateProfile("gw"), batch=BATCH, max_inflight=16)
        task = asyncio.create_task(runner.run(NullProgress()))
        for _ in range(500):
            if len(link.records) >= BACKLOG and not await aj.call(aj.journal.depth):
                break
            await asyncio.sleep(0.02)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await aj.close()
        return link, aj

    link, aj = asyncio.run(scenario())
    seqs = [r["seq"] for r in link.records]
    assert seqs == sorted(seqs) and len(set(seqs)) == BACKLOG == len(seqs)
    assert max(link.sizes) <= BATCH  # the envelope's size bound holds with pulls of several messages
    messages = len(link.sizes)
    assert sum(aj.acks) == BACKLOG
    # Before: one ack call per PUBACK and one pull per message (30 and 30 here).
    assert len(aj.acks) < messages and aj.pulls < messages


def test_acks_arriving_while_one_is_written_go_in_one_call(tmp_path: Path) -> None:
    async def scenario() -> list[int]:
        journal = _journal(tmp_path)
        aj = CountingJournal(journal, queue_size=1000, commit_window=0.01)
        acks = AckBatcher(aj, "mqtt")
        seqs = [r.seq for r in journal.pending("mqtt", 300)]
        first = asyncio.create_task(acks.ack(seqs[:100]))
        for _ in range(3):
            await asyncio.sleep(0)  # the first is being written on the journal thread now
        await asyncio.gather(first, acks.ack(seqs[100:200]), acks.ack(seqs[200:]))
        assert journal.depth("mqtt") == BACKLOG - 300
        await aj.close()
        return aj.acks

    # The first goes at once; the two handed in while it was written go together.
    assert asyncio.run(scenario()) == [100, 200]
