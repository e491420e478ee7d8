"""The journal: durable, ordered, per-link acknowledgement, seq never reused."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from gateway.journal import AsyncJournal, Journal, JournalSettings
from gateway.payloads import FieldgateProfile
from gateway.shared import NullProgress, Quality, Reading, RecordClass

ALL = set(RecordClass)


def reading(point: str, value: float, t: float = 1000.0) -> Reading:
    return Reading(point, value, Quality.GOOD, t, "m")


def test_append_pending_ack_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    j = Journal(path, {"mqtt": ALL})
    seqs = j.append([(RecordClass.TELEMETRY, reading("a", 1.0)), (RecordClass.TELEMETRY, reading("b", 2.0))])
    assert seqs == [1, 2]
    j.close()
    j = Journal(path, {"mqtt": ALL})  # survives a restart
    pending = j.pending("mqtt", 10)
    assert [(p.seq, p.body["point"], p.body["value"]) for p in pending] == [(1, "a", 1.0), (2, "b", 2.0)]
    j.ack("mqtt", [1, 2])
    assert j.depth() == 0
    # AUTOINCREMENT: a seq is never reused, even after every record was deleted and the file reopened.
    j.close()
    j = Journal(path, {"mqtt": ALL})
    assert j.append([(RecordClass.TELEMETRY, reading("a", 3.0))]) == [3]


def test_alarms_jump_the_queue(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite", {"mqtt": ALL})
    j.append([(RecordClass.TELEMETRY, reading("a", float(i))) for i in range(5)])
    j.append([(RecordClass.ALARM, reading("alarm", 1.0))])
    order = [(p.cls, p.seq) for p in j.pending("mqtt", 10)]
    assert order[0] == (RecordClass.ALARM, 6)
    assert [seq for _, seq in order[1:]] == [1, 2, 3, 4, 5]
    assert [p.seq for p in j.pending("mqtt", 3, exclude={6, 1})] == [2, 3, 4]


def test_record_kept_until_every_link_acked(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite", {"mqtt": ALL, "beidou": {RecordClass.ALARM}})
    j.append([(RecordClass.ALARM, reading("alarm", 1.0)), (RecordClass.TELEMETRY, reading("a", 1.0))])
    assert j.depth("beidou") == 1 and j.depth("mqtt") == 2
    j.ack("beidou", [1])
    assert j.depth() == 2  # mqtt still owes both
    j.ack("mqtt", [1, 2])
    assert j.depth() == 0


def test_async_group_commit_and_flush(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int]:
        aj = AsyncJournal(Journal(tmp_path / "j.sqlite", {"mqtt": ALL}), queue_size=100, commit_window=0.05)
        writer = asyncio.create_task(aj.run(NullProgress()))
        for i in range(50):
            await aj.put(RecordClass.TELEMETRY, reading("a", float(i)))
        seq = await aj.append_now(RecordClass.ALARM, reading("alarm", 1.0))
        await aj.flush()
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        depth = await aj.call(aj.journal.depth)
        await aj.close()
        return seq, depth

    seq, depth = asyncio.run(scenario())
    assert depth == 51
    assert 1 <= seq <= 51


def test_put_many_keeps_order_and_bounds_the_queue_in_readings(tmp_path: Path) -> None:
    """One queue item per bus read; the queue's bound still counts readings (back-pressure per read)."""
    async def scenario() -> tuple[int, bool, list[float]]:
        aj = AsyncJournal(Journal(tmp_path / "j.sqlite", {"mqtt": ALL}), queue_size=10, commit_window=0.01)
        await aj.put_many([(RecordClass.TELEMETRY, reading("a", float(i))) for i in range(8)])
        await aj.put_many([])  # a read with nothing admitted queues nothing
        await aj.put(RecordClass.TELEMETRY, reading("a", 8.0))
        await aj.put_many([(RecordClass.TELEMETRY, reading("a", float(i))) for i in range(9, 12)])  # 12 >= 10
        blocked = asyncio.create_task(aj.put(RecordClass.TELEMETRY, reading("a", 12.0)))
        await asyncio.sleep(0.05)
        queued, waited = aj.queued(), not blocked.done()
        writer = asyncio.create_task(aj.run(NullProgress()))
        await blocked
        await aj.flush()
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        values = [r.body["value"] for r in await aj.call(aj.journal.pending, "mqtt", 100)]
        await aj.close()
        return queued, waited, values

    queued, waited, values = asyncio.run(scenario())
    assert queued == 12 and waited  # held at the bound, not dropped
    assert values == [float(i) for i in range(13)]


def test_envelope_marks_replayed_records_historical(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite", {"mqtt": ALL})
    j.append([(RecordClass.TELEMETRY, reading("a", 1.0)), (RecordClass.ALARM, reading("alarm", 2.0))])
    records = j.pending("mqtt", 10)
    profile = FieldgateProfile("gw-1")
    fresh = profile.encode(records, now=records[0].created + 1)
    assert {m.topic for m in fresh} == {"fieldgate/v1/gw-1/alarm", "fieldgate/v1/gw-1/telemetry"}
    assert all(b'"hist"' not in m.payload for m in fresh)
    late = profile.encode(records, now=records[0].created + 3600)
    assert all(b'"hist":true' in m.payload for m in late)
    assert sorted(s for m in late for s in m.seqs) == [1, 2]


def test_min_commit_interval_gathers_several_bursts_into_one_commit(tmp_path: Path) -> None:
    """journal.min_commit_interval (SD-card wear, docs/durability.md): bursts queued 50 ms apart are one commit
    when the commit is held open 0.4 s, and one commit each without it."""

    async def commits(hold: float) -> int:
        journal = Journal(tmp_path / f"j{hold}.sqlite", {"mqtt": ALL},
                          JournalSettings(min_commit_interval=hold, reserve_bytes=0, min_free_bytes=0))
        appends = 0
        real_append = journal.append

        def counted(items: Any) -> list[int]:
            nonlocal appends
            appends += 1
            return real_append(items)

        journal.append = counted  # type: ignore[method-assign]
        aj = AsyncJournal(journal, queue_size=100, commit_window=0.5)
        writer = asyncio.create_task(aj.run(NullProgress()))
        for i in range(4):
            await aj.put(RecordClass.TELEMETRY, Reading("a", float(i), Quality.GOOD, 1.0))
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.6)
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        assert journal.depth() == 4
        await aj.close()
        return appends

    assert asyncio.run(commits(0.4)) == 1
    assert asyncio.run(commits(0.0)) == 4
