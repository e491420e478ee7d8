"""SatelliteRunner.queue_reply on its own: the reply queue is bounded, replies to rejected commands are a few an
hour and a small share of the byte budget. A real journal on disk; the runner is never run.

How queued replies leave by the BeiDou link (the module emulator on a pty pair) is in
tests/hil/test_satellite_replies.py."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from drivers.beidou.config import BeidouConfig
from drivers.beidou.link import BeidouLink
from gateway import compact
from gateway.commands.names import Reason, Status
from gateway.commands.reply import Reply
from gateway.journal import AsyncJournal, Journal
from gateway.satbudget import REJECTED_REPLIES_PER_HOUR, RejectedReplyLimit
from gateway.satellite import REPLY_QUEUE, SatelliteRunner
from gateway.shared import OutboundMessage, Progress, RecordClass, SatellitePolicy

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


def reply(command_id: int | None, status: Status = Status.OK, reason: Reason = Reason.NONE) -> Reply:
    result = {"pong": True, "gw": "sat-gw", "time": 1795853524.0} if status is Status.OK else None
    return Reply(gw="sat-gw", id=command_id, kid="ops", cmd="ping", status=status, reason=reason, detail="",
                 result=result, ts=time.time(), via="bd")


def command(command_id: int) -> compact.CompactMessage:
    """A COMMAND as it came in (only its header id and issuer number matter to the reply)."""
    body = bytes([0x00]) + bytes([ISSUER]) + b"\x80\x01" + bytes(64)
    return compact.decode(compact.encode_command(body, gateway=GATEWAY, time=int(time.time()), command_id=command_id))


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
