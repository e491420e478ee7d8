"""Replay after an outage through the real LinkRunner: urgent first, live before backlog, rate-limited."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from gateway.journal import AsyncJournal, Journal, JournalSettings
from gateway.links import LinkRunner
from gateway.payloads import FieldgateProfile
from gateway.shared import NullProgress, OutboundMessage, Progress, Quality, Reading, RecordClass

ALL = set(RecordClass)


class LoopbackLink:
    """A link whose far side is this object: it acks every message, or fails while ``down``."""

    window = 1 << 16  # the runner's max_inflight decides
    announce_offline_on_stop = True

    def __init__(self, name: str = "mqtt", fail_first: int = 0) -> None:
        self.commands_dropped: dict[str, int] = {}
        self.name = name
        self.fail_first = fail_first
        self.records: list[dict[str, Any]] = []  # in the order the far side received them
        self.up = asyncio.Event()
        self.up.set()

    @property
    def connected(self) -> bool:
        return self.up.is_set()

    async def run(self, progress: Progress) -> None:
        await asyncio.Event().wait()

    async def send(self, message: OutboundMessage) -> None:
        await asyncio.sleep(0.002)
        if self.fail_first > 0:
            self.fail_first -= 1
            raise ConnectionError("link dropped before the acknowledgement")
        envelope = json.loads(message.payload)
        kind = message.topic.rsplit("/", 1)[1]
        self.records.extend({**r, "_kind": kind} for r in envelope["records"])


def reading(point: str, value: float) -> Reading:
    return Reading(point, value, Quality.GOOD, 1000.0 + value, "m")


async def until(predicate: Any, what: str) -> None:
    """Bounded wait for a condition (an event, not a performance assertion)."""
    for _ in range(2000):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for {what}")


async def drained(aj: AsyncJournal, expect: int, link: LoopbackLink) -> None:
    for _ in range(2000):
        if await aj.call(aj.journal.depth) == 0 and len({r["seq"] for r in link.records}) >= expect:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not drained: depth {await aj.call(aj.journal.depth)}")


def run_scenario(tmp_path: Path, link: LoopbackLink, backlog: int, rate: float | None,
                 during: Any = None, historical_after: float = 30.0) -> tuple[LoopbackLink, list[int]]:
    async def scenario() -> list[int]:
        journal = Journal(tmp_path / "j.sqlite", {link.name: ALL},
                          JournalSettings(reserve_bytes=0, min_free_bytes=0))
        journal.append([(RecordClass.TELEMETRY, reading(f"p{i % 3}", float(i))) for i in range(backlog)])
        aj = AsyncJournal(journal, queue_size=100, commit_window=0.01)
        runner = LinkRunner(link, aj, FieldgateProfile("gw", historical_after=historical_after),
                            batch=20, max_inflight=4, replay_rate=rate)
        tasks = [asyncio.create_task(aj.run(NullProgress())), asyncio.create_task(runner.run(NullProgress()))]
        extra: list[int] = []
        if during is not None:
            extra = await during(aj, link)
        await drained(aj, backlog + len(extra), link)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await aj.close()
        return extra

    return link, asyncio.run(scenario())


def test_live_alarm_and_fresh_state_jump_a_rate_limited_backlog(tmp_path: Path) -> None:
    async def during(aj: AsyncJournal, link: LoopbackLink) -> list[int]:
        await until(lambda: len(link.records) >= 20, "replay to start")
        alarm = await aj.append_now(RecordClass.ALARM, reading("alarm", 1.0))
        state = await aj.append_now(RecordClass.STATE, reading("p0", 99.0))
        return [alarm, state]

    link, (alarm, state) = run_scenario(tmp_path, LoopbackLink(), backlog=400, rate=400.0, during=during)
    order = [r["seq"] for r in link.records]
    backlog_positions = [i for i, r in enumerate(link.records) if r["seq"] <= 400]
    assert order.index(alarm) < backlog_positions[-1], "the alarm waited for the whole backlog"
    assert order.index(state) < backlog_positions[-1], "the fresh state change waited for the whole backlog"
    assert link.records[order.index(alarm)]["_kind"] == "alarm"
    # The backlog itself went oldest first, so per point too.
    backlog_seqs = [order[i] for i in backlog_positions]
    assert backlog_seqs == sorted(backlog_seqs) == list(range(1, 401))


def test_failed_sends_are_resent_with_the_same_seq(tmp_path: Path) -> None:
    link, _ = run_scenario(tmp_path, LoopbackLink(fail_first=3), backlog=100, rate=None)
    by_seq: dict[int, list[dict[str, Any]]] = {}
    for record in link.records:
        by_seq.setdefault(record["seq"], []).append(record)
    assert sorted(by_seq) == list(range(1, 101))
    for copies in by_seq.values():  # a duplicate is the same record: same seq, same content
        assert all(c == copies[0] for c in copies)


def test_replayed_records_are_marked_historical(tmp_path: Path) -> None:
    link, _ = run_scenario(tmp_path, LoopbackLink(), backlog=30, rate=None, historical_after=0.0)
    assert link.records and all(r.get("hist") is True for r in link.records)
    fresh, _ = run_scenario(tmp_path / "b", LoopbackLink(), backlog=30, rate=None, historical_after=3600.0)
    assert all("hist" not in r for r in fresh.records)


def test_two_links_each_with_their_own_filter(tmp_path: Path) -> None:
    """An alarm leaves by satellite and by MQTT; telemetry only by MQTT; all gone once both acked."""
    async def scenario() -> tuple[LoopbackLink, LoopbackLink, int]:
        journal = Journal(tmp_path / "j.sqlite", {"mqtt": ALL, "sat": {RecordClass.ALARM}},
                          JournalSettings(reserve_bytes=0, min_free_bytes=0))
        aj = AsyncJournal(journal, queue_size=100, commit_window=0.01)
        mqtt, sat = LoopbackLink("mqtt"), LoopbackLink("sat")
        mqtt.up.clear()  # MQTT is down at first: the alarm leaves by satellite only
        runners = [LinkRunner(link, aj, FieldgateProfile("gw")) for link in (mqtt, sat)]
        tasks = [asyncio.create_task(r.run(NullProgress())) for r in runners]
        tasks.append(asyncio.create_task(aj.run(NullProgress())))
        await aj.put(RecordClass.TELEMETRY, reading("p", 1.0))
        await aj.append_now(RecordClass.ALARM, reading("alarm", 1.0))
        await until(lambda: bool(sat.records), "the satellite to carry the alarm")
        depth_after_sat = await aj.call(journal.depth)
        mqtt.up.set()
        await until(lambda: len(mqtt.records) >= 2, "MQTT to carry both")
        await drained(aj, 2, mqtt)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await aj.close()
        return mqtt, sat, depth_after_sat

    mqtt, sat, depth_after_sat = asyncio.run(scenario())
    assert [r["point"] for r in sat.records] == ["alarm"]
    assert depth_after_sat == 2  # the alarm stays until MQTT has it too
    assert sorted(r["point"] for r in mqtt.records) == ["alarm", "p"]
    assert sat.records[0]["seq"] == next(r["seq"] for r in mqtt.records if r["point"] == "alarm")
