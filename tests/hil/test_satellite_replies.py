"""SatelliteRunner.queue_reply on the virtual rig: replies to satellite commands leave by the same link whatever
the failover state, after fresh alarms and before resends, within the byte budget.

Real parts: the BeiDou link driver against the module emulator on a socat pty pair, a real
journal on disk. The primary link is a switch (only its ``connected`` is read). What queue_reply decides
on its own is in tests/unit/test_satellite_replies.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from drivers.beidou.config import BeidouConfig
from drivers.beidou.link import BeidouLink
from gateway import compact
from gateway.commands.names import Reason, Status
from gateway.commands.reply import parse_satellite_reply
from gateway.journal import AsyncJournal, Journal
from gateway.satellite import SatelliteRunner
from gateway.shared import EventRecord, NullProgress, RecordClass, SatellitePolicy
from sim.beidou import BeidouEmulator
from tests.unit.test_satellite_replies import (
    ALIASES,
    GATEWAY,
    ISSUER,
    PLATFORM_CARD,
    Primary,
    command,
    reply,
    run_async,
)

pytestmark = [pytest.mark.hil, pytest.mark.timeout(60)]


async def until(cond: Callable[[], bool], limit_s: float = 15.0) -> None:
    async with asyncio.timeout(limit_s):
        while not cond():  # noqa: ASYNC110 - the state lives in the emulator thread
            await asyncio.sleep(0.02)


def alarm_record(value: float) -> EventRecord:
    body = {"rule": "level.danger", "severity": "severe", "message": "high", "transition": "raised",
            "points": {"dam.level": {"value": value}}}
    return EventRecord("alarm", "level.danger", body, time.time())


class Rig:
    def __init__(self, tmp: Path, port: str, emulator: BeidouEmulator, *, primary_up: bool,
                 policy: SatellitePolicy) -> None:
        self.emulator = emulator
        self.journal = AsyncJournal(Journal(tmp / "journal.sqlite", {"county": set(RecordClass),
                                                                     "bd": {RecordClass.ALARM}}))
        self.link = BeidouLink(BeidouConfig(type="beidou", name="bd", port=port, dest=PLATFORM_CARD,
                                            probe_timeout=0.5), lambda _data: None)
        self.primary = Primary(primary_up)
        self.runner = SatelliteRunner(self.link, self.journal, [self.primary], policy, gateway_number=GATEWAY,
                                      aliases=ALIASES, rule_aliases={"level.danger": 7}, max_bytes=77,
                                      state_dir=tmp)

    def kinds(self) -> list[compact.MessageKind]:
        return [compact.decode(s.payload, ALIASES).kind for s in self.emulator.sent]


@contextlib.asynccontextmanager
async def rig(tmp: Path, pair: tuple[str, str], *, primary_up: bool, interval_s: int = 1,
              **policy: Any) -> AsyncIterator[Rig]:
    ours, theirs = pair
    with BeidouEmulator(theirs, interval_s=interval_s, noise_period_s=None) as emulator:
        r = Rig(tmp, ours, emulator, primary_up=primary_up, policy=SatellitePolicy(**policy))
        link_task = asyncio.create_task(r.link.run(NullProgress()))
        try:
            await until(lambda: r.link.connected)
            yield r
        finally:
            link_task.cancel()
            await asyncio.gather(link_task, return_exceptions=True)
            await r.journal.close()


@contextlib.asynccontextmanager
async def running(runner: SatelliteRunner) -> AsyncIterator[None]:
    task = asyncio.create_task(runner.run(NullProgress()))
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("primary_up", [True, False], ids=["primary-up", "primary-down-before-failover"])
@run_async
async def test_reply_leaves_by_satellite_whatever_the_failover_state(
        tmp_path: Path, pty_pair: tuple[str, str], primary_up: bool) -> None:
    async with rig(tmp_path, pty_pair, primary_up=primary_up, failover_after=600) as r:
        seq = await r.journal.append_now(RecordClass.ALARM, alarm_record(152.5))
        assert r.runner.queue_reply(reply(300), command(300))
        async with running(r.runner):
            await until(lambda: bool(r.emulator.sent))
            got = parse_satellite_reply(r.emulator.sent[0].payload)
            assert (got.gateway, got.command_id, got.issuer, got.status) == (GATEWAY, 300, ISSUER, Status.OK)
            assert got.result is not None and got.result["pong"] is True
            assert r.emulator.sent[0].dest == PLATFORM_CARD
            await until(lambda: r.runner.sent_replies == 1)
            assert r.runner.queued_replies == 0 and not r.runner.active
        assert r.kinds() == [compact.MessageKind.REPLY], "an alarm left by satellite before failover"
        # the reply is not a journal record: the alarm is still owed by the satellite
        pending = await r.journal.call(r.journal.journal.pending, "bd", 10)
        assert [p.seq for p in pending] == [seq]


@run_async
async def test_an_alarm_committed_during_the_interval_goes_before_a_queued_reply(
        tmp_path: Path, pty_pair: tuple[str, str]) -> None:
    async with rig(tmp_path, pty_pair, primary_up=False, interval_s=2, failover_after=0, ack_timeout=60) as r:
        first = await r.journal.append_now(RecordClass.ALARM, alarm_record(152.5))
        async with running(r.runner):
            await until(lambda: len(r.emulator.sent) == 1)
            # within the 2 s service interval: a reply is queued, then a new alarm is committed
            r.runner.queue_reply(reply(301), command(301))
            await asyncio.sleep(0.2)
            second = await r.journal.append_now(RecordClass.ALARM, alarm_record(153.0))
            await until(lambda: len(r.emulator.sent) >= 3)
        assert r.kinds()[:3] == [compact.MessageKind.ALARM, compact.MessageKind.ALARM, compact.MessageKind.REPLY]
        assert [compact.decode(s.payload, ALIASES).seqs for s in r.emulator.sent[:2]] == [(first,), (second,)]
        assert parse_satellite_reply(r.emulator.sent[2].payload).command_id == 301
        assert "interval" not in r.emulator.refusals  # one message per service interval


@run_async
async def test_a_reply_goes_before_an_alarm_resend(tmp_path: Path, pty_pair: tuple[str, str]) -> None:
    # the platform's ACK never comes, so the alarm is due again at the next slot
    async with rig(tmp_path, pty_pair, primary_up=False, failover_after=0, ack_timeout=0.1) as r:
        seq = await r.journal.append_now(RecordClass.ALARM, alarm_record(152.5))
        r.runner.queue_reply(reply(302, Status.REJECTED, Reason.REPLAYED), command(302))
        async with running(r.runner):
            await until(lambda: len(r.emulator.sent) >= 3)
        first, second, third = (compact.decode(s.payload, ALIASES) for s in r.emulator.sent[:3])
        assert first.kind is compact.MessageKind.ALARM and first.seqs == (seq,)  # a fresh alarm goes first
        assert second.kind is compact.MessageKind.REPLY  # before the alarm's resend
        got = parse_satellite_reply(r.emulator.sent[1].payload)
        assert (got.command_id, got.status, got.reason) == (302, Status.REJECTED, Reason.REPLAYED)
        assert third.kind is compact.MessageKind.ALARM and third.seqs == (seq,)
        assert "interval" not in r.emulator.refusals


@run_async
async def test_reply_waits_for_the_byte_budget(tmp_path: Path, pty_pair: tuple[str, str],
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "fieldgate.satellite")
    async with rig(tmp_path, pty_pair, primary_up=True, budget_bytes_per_hour=15) as r:
        # accepted commands that failed (not rejected ones: those get a share of the budget, see below)
        assert r.runner.queue_reply(reply(1, Status.FAILED, Reason.TIMEOUT), command(1))  # 10 bytes
        assert r.runner.queue_reply(reply(2, Status.FAILED, Reason.TIMEOUT), command(2))  # 10 more: over 15
        async with running(r.runner):
            await until(lambda: "byte budget reached; reply to command 2 waits" in caplog.text)
        assert [parse_satellite_reply(s.payload).command_id for s in r.emulator.sent] == [1]
        assert r.runner.queued_replies == 1


@run_async
async def test_a_satellite_only_site_sends_at_once_and_forgets_nothing(
        tmp_path: Path, pty_pair: tuple[str, str]) -> None:
    # No primary link at all: the satellite is the primary, with no failover delay and no standby
    # (standby would otherwise "forget" every record as delivered by a primary that does not exist).
    async with rig(tmp_path, pty_pair, primary_up=False, failover_after=600, app_ack=True) as r:
        r.runner.primaries = []
        seq = await r.journal.append_now(RecordClass.ALARM, alarm_record(152.5))
        async with running(r.runner):
            await until(lambda: bool(r.emulator.sent))
            assert r.runner.active
        message = compact.decode(r.emulator.sent[0].payload, ALIASES)
        assert message.kind is compact.MessageKind.ALARM and message.seqs == (seq,)
        pending = await r.journal.call(r.journal.journal.pending, "bd", 10)
        assert [p.seq for p in pending] == [seq], "kept until the platform's ACK"
