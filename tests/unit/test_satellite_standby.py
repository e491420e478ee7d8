"""Satellite standby: it forgets only what a primary link has delivered.

A record a primary does not carry (its ``classes`` leave that class out) never had a pending row
for that primary, so "no primary owes it" does not mean "delivered": forgetting it would delete
an alarm that was never sent anywhere."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gateway import compact
from gateway.journal import AsyncJournal, Journal, JournalSettings
from gateway.satellite import SatelliteRunner
from gateway.shared import EventRecord, NullProgress, OutboundMessage, Progress, RecordClass, SatellitePolicy

pytestmark = pytest.mark.timeout(60)


class Switch:
    """A link only read for ``connected`` (the primary), or never sent on (the satellite on standby)."""

    max_bytes = 78
    interval_s = 0.0
    foreign_count = None

    def __init__(self, name: str) -> None:
        self.name = name
        self.connected = True

    async def run(self, progress: Progress) -> None:
        await asyncio.Event().wait()

    async def send(self, message: OutboundMessage) -> None:
        raise AssertionError("nothing is sent while the primary is up")


def alarm() -> EventRecord:
    body = {"rule": "level.danger", "severity": "severe", "transition": "raised",
            "points": {"dam.level": {"value": 152.5}}}
    return EventRecord("alarm", "level.danger", body, time.time())


async def standby_pass(tmp_path: Path, primary_classes: set[RecordClass]) -> tuple[list[int], list[int], int]:
    """(what the satellite still owes, what the primary still owes, the alarm's seq) after standby ran."""
    links = {"county": primary_classes, "bd": {RecordClass.ALARM}}
    aj = AsyncJournal(Journal(tmp_path / "j.sqlite", links, JournalSettings(reserve_bytes=0, min_free_bytes=0)))
    seq = await aj.append_now(RecordClass.ALARM, alarm())
    if RecordClass.ALARM in primary_classes:
        await aj.call(aj.journal.ack, "county", [seq])  # the primary delivered it
    runner = SatelliteRunner(Switch("bd"), aj, [Switch("county")], SatellitePolicy(), gateway_number=1,
                             aliases=compact.AliasTable({}), rule_aliases={}, max_bytes=78, state_dir=tmp_path)
    task = asyncio.create_task(runner.run(NullProgress()))
    await asyncio.sleep(0.5)  # the first standby clean-up runs at once
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    sat = [r.seq for r in await aj.call(aj.journal.pending, "bd", 10)]
    primary = [r.seq for r in await aj.call(aj.journal.pending, "county", 10)]
    await aj.close()
    return sat, primary, seq


def test_standby_keeps_an_alarm_no_primary_carries(tmp_path: Path) -> None:
    sat, primary, seq = asyncio.run(standby_pass(tmp_path, {RecordClass.STATE, RecordClass.TELEMETRY}))
    assert primary == []
    assert sat == [seq], "an alarm only the satellite carries was released unsent"


def test_standby_forgets_an_alarm_the_primary_delivered(tmp_path: Path) -> None:
    sat, primary, _ = asyncio.run(standby_pass(tmp_path, set(RecordClass)))
    assert primary == [] and sat == []


class Recorder(Switch):
    """A satellite link that takes every message (the module accepted it; the platform did not ACK)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.sent: list[tuple[int, ...]] = []

    async def send(self, message: OutboundMessage) -> None:
        self.sent.append(message.seqs)


def test_alarm_is_resent_after_ack_timeout_even_if_the_wall_clock_steps_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NTP stepping a Pi's clock back by an hour must not hold an unacknowledged alarm for that hour."""

    async def scenario() -> list[tuple[int, ...]]:
        aj = AsyncJournal(Journal(tmp_path / "j.sqlite", {"bd": {RecordClass.ALARM}},
                                  JournalSettings(reserve_bytes=0, min_free_bytes=0)))
        seq = await aj.append_now(RecordClass.ALARM, alarm())
        link = Recorder("bd")
        runner = SatelliteRunner(link, aj, [], SatellitePolicy(ack_timeout=0.5, app_ack=True), gateway_number=1,
                                 aliases=compact.AliasTable({1: "dam.level"}), rule_aliases={"level.danger": 7},
                                 max_bytes=78, state_dir=tmp_path)
        task = asyncio.create_task(runner.run(NullProgress()))
        for _ in range(200):
            if link.sent:
                break
            await asyncio.sleep(0.01)
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() - 3600.0)  # the clock steps back an hour
        for _ in range(500):
            if len(link.sent) >= 2:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await aj.close()
        assert link.sent[0] == (seq,)
        return link.sent

    sent = asyncio.run(scenario())
    assert len(sent) >= 2, "the unacknowledged alarm was not sent again after ack_timeout"
