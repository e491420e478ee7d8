"""SatelliteRunner.queue_reply: replies to satellite commands leave by the same link whatever the
failover state, after fresh alarms and before resends, bounded, within the byte budget.

Real parts: the BeiDou link driver against the module emulator on a socat pty pair, a real
journal on disk. The primary link is a switch (only its ``connected`` is read)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.beidou.config import BeidouConfig
from drivers.beidou.link import BeidouLink
from gateway import compact
from gateway.commands.names import Reason, Status
from gateway.commands.reply import Reply, parse_satellite_reply
from gateway.journal import AsyncJournal, Journal
from gateway.satbudget import REJECTED_REPLIES_PER_HOUR, RejectedReplyLimit
from gateway.satellite import REPLY_QUEUE, SatelliteRunner
from gateway.shared import EventRecord, NullProgress, OutboundMessage, Progress, RecordClass, SatellitePolicy
from sim.beidou import BeidouEmulator
from sim.serial_pty import socat_pair

pytestmark = pytest.mark.timeout(60)
GATEWAY, PLATFORM_CARD, ISSUER = 42, 1234, 3
ALIASES = compact.AliasTable({1: "dam.level"})


def run_async(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


class Primary:
    """Stands in for the MQTT link: the runner only reads ``connected``."""

    name = "county"

    def __init__(self, up: bool) -> None:
        self.connected = up

    async def run(self, progress: Progress) -> None:
        await asyncio.Event().wait()

    async def send(self, message: OutboundMessage) -> None:
        raise AssertionError("the satellite runner never sends on a primary")


@pytest.fixture
def pty_pair() -> Iterator[tuple[str, str]]:
    with socat_pair() as pair:
        yield pair


async def until(cond: Callable[[], bool], limit_s: float = 15.0) -> None:
    async with asyncio.timeout(limit_s):
        while not cond():  # noqa: ASYNC110 - the state lives in the emulator thread
            await asyncio.sleep(0.02)


def reply(command_id: int | None, status: Status = Status.OK, reason: Reason = Reason.NONE) -> Reply:
    result = {"pong": True, "gw": "sat-gw", "time": 1795853524.0} if status is Status.OK else None
    return Reply(gw="sat-gw", id=command_id, kid="ops", cmd="ping", status=status, reason=reason, detail="",
                 result=result, ts=time.time(), via="bd")


def command(command_id: int) -> compact.CompactMessage:
    """A COMMAND as it came in (only its header id and issuer number matter to the reply)."""
    body = bytes([0x00]) + bytes([ISSUER]) + b"\x80\x01" + bytes(64)
    return compact.decode(compact.encode_command(body, gateway=GATEWAY, time=int(time.time()), command_id=command_id))


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
                                            probe_timeout_s=0.5), lambda _data: None)
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


@contextlib.asynccontextmanager
async def idle_runner(tmp: Path, **policy: Any) -> AsyncIterator[SatelliteRunner]:
    """A runner that is never run: for what queue_reply decides on its own."""
    journal = AsyncJournal(Journal(tmp / "j.sqlite", {"bd": {RecordClass.ALARM}}))
    link = BeidouLink(BeidouConfig(type="beidou", name="bd", port="/nonexistent", dest=1), lambda _d: None)
    try:
        yield SatelliteRunner(link, journal, [Primary(True)], SatellitePolicy(**policy), gateway_number=GATEWAY,
                              aliases=ALIASES, rule_aliases={}, max_bytes=77, state_dir=tmp)
    finally:
        await journal.close()


@run_async
async def test_queue_is_bounded_and_drops_the_oldest(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with idle_runner(tmp_path) as runner:
        assert not runner.queue_reply(reply(None, Status.REJECTED, Reason.MALFORMED))  # nothing to correlate
        for command_id in range(REPLY_QUEUE + 2):
            assert runner.queue_reply(reply(command_id), command(command_id))
        assert runner.queued_replies == REPLY_QUEUE and runner.dropped_replies == 2
        assert "reply to command 0 (ok) dropped unsent" in caplog.text
        assert "reply to command 1 (ok) dropped unsent" in caplog.text
        assert "reply to command 2 " not in caplog.text


@run_async
async def test_replies_to_rejected_commands_are_a_few_an_hour(tmp_path: Path,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """Anyone who can reach the link can provoke rejections: a flood queues a few replies, not one each."""
    async with idle_runner(tmp_path) as runner:
        admitted = [runner.queue_reply(reply(i, Status.REJECTED, Reason.BAD_SIGNATURE), command(i)) for i in range(20)]
        assert admitted == [True] * REJECTED_REPLIES_PER_HOUR + [False] * (20 - REJECTED_REPLIES_PER_HOUR)
        assert runner.suppressed_replies == 20 - REJECTED_REPLIES_PER_HOUR
        assert caplog.text.count("not sent: replies to rejected commands are limited") == 1  # logged once
        # the answer to a command that was accepted is never held back
        assert runner.queue_reply(reply(99), command(99))
        assert runner.queue_reply(reply(98, Status.FAILED, Reason.TIMEOUT), command(98))
        assert runner.queued_replies == REJECTED_REPLIES_PER_HOUR + 2
        for i in range(REPLY_QUEUE - runner.queued_replies):  # fill the queue with answers to accepted commands
            runner.queue_reply(reply(200 + i), command(200 + i))
        assert not runner.queue_reply(reply(300, Status.REJECTED, Reason.EXPIRED), command(300))
        assert runner.dropped_replies == 0, "a suppressed rejection pushed a queued reply out"


@run_async
async def test_replies_to_rejected_commands_get_a_small_share_of_the_byte_budget(tmp_path: Path) -> None:
    async with idle_runner(tmp_path, budget_bytes_per_day=200) as runner:  # 10 % = 20 bytes: two 10-byte replies
        admitted = [runner.queue_reply(reply(i, Status.REJECTED, Reason.EXPIRED), command(i)) for i in range(4)]
        assert admitted == [True, True, False, False]


def test_rejected_reply_limit_is_a_sliding_hour_and_day() -> None:
    limit = RejectedReplyLimit(per_hour=None, per_day=1000)  # 100 bytes a day for rejections
    assert all(limit.admit(10, t) for t in (0.0, 1.0, 2.0, 3.0))
    assert not limit.admit(10, 3599.0)  # four in the last hour already
    assert all(limit.admit(10, 3600.0 + t) for t in (0.0, 1.0, 2.0, 3.0))  # the first four left the window
    assert limit.admit(10, 7200.0) and limit.admit(10, 7201.0)  # 100 bytes in the day now
    assert not limit.admit(10, 7202.0)
    assert limit.admit(10, 86400.0 + 0.5)  # the first left the day window
    assert len(limit.admitted) <= REJECTED_REPLIES_PER_HOUR * 24  # bounded


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
