"""Satellite links against their emulators on socat pty pairs (virtual rig)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest

from drivers.beidou.config import BeidouConfig
from drivers.beidou.link import BeidouLink
from drivers.beidou.sentences import Dialect, encode_text
from drivers.iridium.config import IridiumConfig
from drivers.iridium.link import IridiumLink
from drivers.satlink import MessageTooLarge, SendRefused
from gateway.shared import NullProgress, OutboundMessage
from sim.beidou import BeidouEmulator
from sim.iridium import IridiumEmulator

pytestmark = [pytest.mark.hil, pytest.mark.timeout(60)]


def run_async(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test body in a fresh loop (pytest-asyncio is not a dependency)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


async def wait_for(cond: Callable[[], bool], limit_s: float = 10.0) -> None:
    """Poll a condition set by another thread (the emulator), within a generous bound."""
    async with asyncio.timeout(limit_s):
        while not cond():  # noqa: ASYNC110 - the state lives in an emulator thread, no Event to await
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(link: Any) -> AsyncIterator[None]:
    task = asyncio.create_task(link.run(NullProgress()))
    try:
        await wait_for(lambda: link.connected or task.done())
        assert link.connected, task.exception() if task.done() else "not connected"
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def msg(payload: bytes, *seqs: int) -> OutboundMessage:
    return OutboundMessage(topic="sat", payload=payload, seqs=seqs)


def beidou_config(port: str, **kw: Any) -> BeidouConfig:
    return BeidouConfig(type="beidou", port=port, dest=247718, probe_timeout=0.5, **kw)


@pytest.mark.parametrize("dialect", [Dialect.V21, Dialect.BDS3, Dialect.V40])
@run_async
async def test_beidou_probe_send_and_receive(pty_pair: tuple[str, str], dialect: Dialect) -> None:
    ours, theirs = pty_pair
    got: list[bytes] = []
    with BeidouEmulator(theirs, dialect=dialect, interval_s=1, noise_period_s=0.05) as emu:
        link = BeidouLink(beidou_config(ours), got.append)
        async with running(link):
            assert link.dialect is dialect
            assert link.interval_s == 1.0 and link.max_bytes == 77
            assert link.modem_identity() == {"card_id": emu.card_id}  # the fleet inventory's card id
            await link.send(msg(b"\x12alarm", 7))
            assert [s.payload for s in emu.sent] == [b"\x12alarm"]
            assert emu.sent[0].dest == 247718
            emu.inject(1234567, b"\x14forged")  # another card: not the platform's, never an ACK or a command
            emu.inject(247718, b"\x15ack")  # the platform's card (dest, as platform_cards is empty)
            await wait_for(lambda: got == [b"\x15ack"])
            assert link.foreign_count == 1
            await asyncio.sleep(0.3)  # let noise through while idle
            assert link.noise_count > 0  # $BDBSI/$BDPWI/$GNRMC recognised and ignored
            assert link.connected


@pytest.mark.parametrize("configured,written", [(None, 0x46), (0x42, 0x42)])
@run_async
async def test_beidou_40_writes_the_links_information_category(pty_pair: tuple[str, str], configured: int | None,
                                                                written: int) -> None:
    ours, theirs = pty_pair
    with BeidouEmulator(theirs, dialect=Dialect.V40, interval_s=1, noise_period_s=None) as emu:
        link = BeidouLink(beidou_config(ours, encoding="code", info_category=configured), lambda _b: None)
        async with running(link):
            await link.send(msg(b"\x12alarm", 7))
            assert [(s.payload, s.category) for s in emu.sent] == [(b"\x12alarm", written)]


@run_async
async def test_beidou_takes_messages_from_the_listed_platform_cards_only(pty_pair: tuple[str, str],
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    ours, theirs = pty_pair
    got: list[bytes] = []
    with BeidouEmulator(theirs, interval_s=1, noise_period_s=None) as emu:
        link = BeidouLink(beidou_config(ours, platform_cards=[300001, 300002]), got.append)
        async with running(link):
            for sender, payload in ((247718, b"dest"), (300002, b"two"), (999, b"x"), (1000, b"y"), (300001, b"one")):
                emu.inject(sender, payload)
            await wait_for(lambda: got == [b"two", b"one"])
    assert link.foreign_count == 3  # dest is not listed: the list replaces it
    assert caplog.text.count("dropped: not a platform card") == 1  # logged once, then counted


@run_async
async def test_beidou_interval_refusal_is_honoured(pty_pair: tuple[str, str]) -> None:
    ours, theirs = pty_pair
    with BeidouEmulator(theirs, interval_s=2, noise_period_s=None) as emu:
        # the gateway believes the interval is shorter than the card's: the module refuses,
        # the link waits the time the module states and resends
        link = BeidouLink(beidou_config(ours, interval=0.1), lambda _b: None)
        async with running(link):
            await link.send(msg(b"one", 1))
            await link.send(msg(b"two", 2))
            assert [s.payload for s in emu.sent] == [b"one", b"two"]
            assert emu.refusals == ["interval"]
            assert emu.sent[1].at - emu.sent[0].at >= 2


@run_async
async def test_beidou_respects_card_interval_without_refusal(pty_pair: tuple[str, str]) -> None:
    ours, theirs = pty_pair
    with BeidouEmulator(theirs, interval_s=1, noise_period_s=None) as emu:
        link = BeidouLink(beidou_config(ours), lambda _b: None)
        async with running(link):
            await link.send(msg(b"one", 1))
            await link.send(msg(b"two", 2))
            assert emu.refusals == []
            assert emu.sent[1].at - emu.sent[0].at >= 1


@run_async
async def test_beidou_oversize_is_refused_before_and_by_the_module(pty_pair: tuple[str, str]) -> None:
    ours, theirs = pty_pair
    with BeidouEmulator(theirs, interval_s=1, noise_period_s=None) as emu:
        link = BeidouLink(beidou_config(ours), lambda _b: None)
        async with running(link):
            with pytest.raises(MessageTooLarge):
                await link.send(msg(bytes(78), 1))
            assert emu.sent == []
        # a max_bytes override larger than the card: the module itself refuses
        link2 = BeidouLink(beidou_config(ours, max_bytes=100), lambda _b: None)
        async with running(link2):
            with pytest.raises(SendRefused):
                await link2.send(msg(bytes(90), 1))
            assert emu.refusals == ["oversize"]


@run_async
async def test_beidou_without_card_never_connects(pty_pair: tuple[str, str]) -> None:
    ours, theirs = pty_pair
    with BeidouEmulator(theirs, has_card=False, noise_period_s=None):
        link = BeidouLink(beidou_config(ours, reopen_delay=0.2), lambda _b: None)
        task = asyncio.create_task(link.run(NullProgress()))
        await asyncio.sleep(1.0)
        assert not link.connected
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@run_async
async def test_beidou_sentence_with_thousands_of_digits_does_not_restart_the_link(pty_pair: tuple[str, str]) -> None:
    """Before: a correctly checksummed $BDICI whose user id had 4 301 digits raised ValueError out of the
    stream decoder; it escaped BeidouLink.run(), so the link runner restarted the link."""
    ours, theirs = pty_pair
    got: list[bytes] = []
    with BeidouEmulator(theirs, interval_s=1, noise_period_s=None) as emu:
        link = BeidouLink(beidou_config(ours), got.append)
        task = asyncio.create_task(link.run(NullProgress()))
        try:
            await wait_for(lambda: link.connected or task.done())
            assert link.connected
            emu.write(encode_text("BDICI", ["9" * 4301, "1", "2", "3", "60", "3", "N"]))
            await wait_for(lambda: link.error_count > 0 or task.done())
            emu.inject(247718, b"\x15after")  # the platform card (dest): a foreign one is dropped
            await wait_for(lambda: got == [b"\x15after"] or task.done())
            assert not task.done() and link.connected and got == [b"\x15after"]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


# --------------------------------------------------------------------------- Iridium SBD


def iridium_config(port: str, **kw: Any) -> IridiumConfig:
    return IridiumConfig(type="iridium_sbd", port=port, backoff_initial=0.05, backoff_max=0.2, **kw)


@run_async
async def test_iridium_send_retries_failed_sessions_and_counts_credits(pty_pair: tuple[str, str]) -> None:
    ours, theirs = pty_pair
    with IridiumEmulator(theirs) as emu:
        emu.fail_next.extend([32, 18])  # no network service, then RF drop
        link = IridiumLink(iridium_config(ours), lambda _b: None)
        async with running(link):
            await link.send(msg(bytes(range(60)), 1, 2))
            assert emu.delivered == [bytes(range(60))]
            assert [s.mo_status for s in emu.sessions] == [32, 18, 0]
            assert link.last_momsn == 1
            assert link.credits_used == 2  # 60 bytes = two 50-byte units
            assert emu.mo_buffer == b""  # cleared: the next session cannot resend it


@run_async
async def test_iridium_gives_up_after_the_configured_attempts(pty_pair: tuple[str, str]) -> None:
    ours, theirs = pty_pair
    with IridiumEmulator(theirs) as emu:
        emu.fail_next.extend([35, 35, 35])
        link = IridiumLink(iridium_config(ours, session_attempts=3), lambda _b: None)
        async with running(link):
            with pytest.raises(SendRefused, match="transceiver busy"):
                await link.send(msg(b"x", 1))
            assert emu.delivered == [] and link.credits_used == 0


@run_async
async def test_iridium_oversize_refused(pty_pair: tuple[str, str]) -> None:
    ours, theirs = pty_pair
    with IridiumEmulator(theirs) as emu:
        link = IridiumLink(iridium_config(ours), lambda _b: None)
        async with running(link):
            assert link.last_signal == 4  # AT+CSQF read at start-up, telemetry only
            assert link.modem_identity() == {"imei": emu.imei}  # the fleet inventory's modem id
            with pytest.raises(MessageTooLarge):
                await link.send(msg(bytes(341), 1))
            assert emu.sessions == []


@run_async
async def test_iridium_mt_by_ring_and_piggy_backed(pty_pair: tuple[str, str]) -> None:
    ours, theirs = pty_pair
    got: list[bytes] = []
    with IridiumEmulator(theirs) as emu:
        link = IridiumLink(iridium_config(ours), got.append)
        async with running(link):
            emu.inject_mt(b"\x15ring\r\n")  # CR LF inside the binary payload on purpose
            await wait_for(lambda: got == [b"\x15ring\r\n"])
            emu.ring_alerts = False  # these two wait at the gateway and ride on the next MO session
            emu.inject_mt(b"one")
            emu.inject_mt(b"two")
            await link.send(msg(b"mo", 5))
            assert got == [b"\x15ring\r\n", b"one", b"two"]
            assert emu.delivered == [b"mo"]


@pytest.mark.parametrize("length", [0xFFFF, len(b"\x15ring") + 100])
@run_async
async def test_iridium_garbled_sbdrb_length_is_rejected_at_once(pty_pair: tuple[str, str], length: int) -> None:
    """Before: an SBDRB length field of FFFF (more than the bounded buffer can ever hold), or one other
    than the session announced, made the link wait its whole command timeout for bytes that never came,
    then reopen the port. Now the reply is rejected at once and read again (the MT buffer still holds it)."""
    ours, theirs = pty_pair
    got: list[bytes] = []
    with IridiumEmulator(theirs) as emu:
        emu.garble_sbdrb.append(length)
        link = IridiumLink(iridium_config(ours, command_timeout=60), got.append)
        async with running(link):
            emu.inject_mt(b"\x15ring")
            await wait_for(lambda: got == [b"\x15ring"])  # well inside the 60 s command timeout
            assert link.connected and not emu.garble_sbdrb


@run_async
async def test_iridium_stale_lines_from_a_cancelled_command_do_not_answer_the_next(
        pty_pair: tuple[str, str]) -> None:
    ours, theirs = pty_pair
    with IridiumEmulator(theirs) as emu:
        emu.fail_next.extend([32])  # the stale "OK" must not be taken for this session's result either
        link = IridiumLink(iridium_config(ours), lambda _b: None)
        async with running(link):
            link._buf.feed(b"OK\r\n0\r\n+SBDIX: 0, 7, 0, 0, 0, 0\r\n")  # what a cancelled send left behind
            await link.send(msg(b"after a cancel", 1))
            assert emu.delivered == [b"after a cancel"]
            assert [s.mo_status for s in emu.sessions] == [32, 0]
