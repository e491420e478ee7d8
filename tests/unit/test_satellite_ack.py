"""SatelliteRunner.handle_incoming: only an authentic ACK for this gateway releases records, and only
records this link has sent (docs/satellite.md §1.4). The daemon-level versions, through the BeiDou
emulator, are in tests/adversarial/test_satellite_forgery.py."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway import compact
from gateway.journal import AsyncJournal, Journal, JournalSettings
from gateway.satellite import SatelliteRunner
from gateway.shared import EventRecord, NullProgress, OutboundMessage, Progress, RecordClass, SatellitePolicy

pytestmark = pytest.mark.timeout(60)
GATEWAY = 42
KEY = bytes(range(32))


class Recorder:
    """A satellite link whose module accepts every message (the platform's ACK is the only release)."""

    name = "bd"
    max_bytes = 77
    interval_s = 0.0
    foreign_count = None
    connected = True

    def __init__(self) -> None:
        self.sent: list[tuple[int, ...]] = []

    async def run(self, progress: Progress) -> None:
        await asyncio.Event().wait()

    async def send(self, message: OutboundMessage) -> None:
        self.sent.append(message.seqs)


@dataclass
class Site:
    runner: SatelliteRunner
    journal: AsyncJournal
    seq: int  # the alarm the link has sent and waits an ACK for

    async def owed(self) -> list[int]:
        return [r.seq for r in await self.journal.call(self.journal.journal.pending, "bd", 10)]


@asynccontextmanager
async def sent_alarm(tmp: Path, ack_key: bytes | None = KEY) -> AsyncIterator[Site]:
    """A satellite-only site that has sent one alarm by satellite and waits for the platform's ACK."""
    journal = AsyncJournal(Journal(tmp / "j.sqlite", {"bd": {RecordClass.ALARM}},
                                   JournalSettings(reserve_bytes=0, min_free_bytes=0)))
    body = {"rule": "level.danger", "severity": "severe", "transition": "raised",
            "points": {"dam.level": {"value": 152.5}}}
    seq = await journal.append_now(RecordClass.ALARM, EventRecord("alarm", "level.danger", body, time.time()))
    link = Recorder()
    runner = SatelliteRunner(link, journal, [], SatellitePolicy(app_ack=True, ack_timeout=3600), gateway_number=GATEWAY,
                             aliases=compact.AliasTable({1: "dam.level"}), rule_aliases={}, max_bytes=77,
                             state_dir=tmp, ack_key=ack_key)
    task = asyncio.create_task(runner.run(NullProgress()))
    try:
        async with asyncio.timeout(10):
            while not link.sent:  # noqa: ASYNC110 - the runner's own task sends
                await asyncio.sleep(0.01)
    finally:  # stopped after one send: what the test commits next stays unsent
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    try:
        assert link.sent == [(seq,)]
        yield Site(runner, journal, seq)
    finally:
        await journal.close()


def ack(ranges: list[tuple[int, int]], *, gateway: int = GATEWAY, key: bytes = KEY) -> compact.CompactMessage:
    return compact.decode(compact.encode_ack(ranges, gateway=gateway, time=int(time.time()), key=key))


FORGERIES = {
    "wrong-gateway-number": lambda seq: ack([(seq, seq)], gateway=GATEWAY + 1),  # right key, another gateway
    "another-key": lambda seq: ack([(seq, seq)], key=bytes(32)),
    "truncated-mac-of-another-ack": lambda seq: compact.CompactMessage(
        compact.MessageKind.ACK, GATEWAY, int(time.time()), (), acked=((seq, seq),),
        ack_mac=ack([(seq + 1, seq + 1)]).ack_mac),
}


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_a_forged_ack_releases_nothing(tmp_path: Path, forgery: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "fieldgate.satellite")

    async def scenario() -> None:
        async with sent_alarm(tmp_path) as site:
            await site.runner.handle_incoming(FORGERIES[forgery](site.seq))
            assert await site.owed() == [site.seq], "a forged ACK released the alarm"
            assert site.runner.refused_acks == 1
            await site.runner.handle_incoming(ack([(site.seq, site.seq)]))  # the platform's own
            assert await site.owed() == []

    asyncio.run(scenario())
    assert "refused, nothing released" in caplog.text and "platform acknowledged seqs" in caplog.text


def test_without_a_key_no_ack_is_believed(tmp_path: Path) -> None:
    """Fail safe: a key that could not be loaded means every record stays owed (resent, or by a primary)."""

    async def scenario() -> None:
        async with sent_alarm(tmp_path, ack_key=None) as site:
            await site.runner.handle_incoming(ack([(site.seq, site.seq)]))
            assert await site.owed() == [site.seq]
            assert site.runner.ack_refusal(ack([(site.seq, site.seq)])).startswith("no ACK key loaded")

    asyncio.run(scenario())


def test_an_authentic_ack_releases_only_what_this_link_sent(tmp_path: Path) -> None:
    """A genuine ACK replayed, or one naming seqs never sent, releases nothing it does not name in flight."""

    async def scenario() -> None:
        async with sent_alarm(tmp_path) as site:
            later = await site.journal.append_now(RecordClass.ALARM, EventRecord("alarm", "x", {}, time.time()))
            # `later` is committed but never sent: an ACK naming it, and every seq around, must not release it
            await site.runner.handle_incoming(ack([(0, site.seq - 1), (site.seq + 1, site.seq + 1000)]))
            assert later in await site.owed() and site.seq in await site.owed()
            genuine = ack([(site.seq, site.seq)])
            await site.runner.handle_incoming(genuine)
            assert site.seq not in await site.owed()
            await site.runner.handle_incoming(genuine)  # the same ACK again: nothing more to release
            assert site.runner.refused_acks == 0

    asyncio.run(scenario())
