"""Iridium SBD link (implements gateway.shared.Link) for 9602/9603 modems.

One AT command at a time (``_lock``). A reader task feeds every byte into a bounded
ResponseBuffer; the command holding the lock takes its lines (or SBDRB's binary run) from
it, and while no command runs the reader looks for ``SBDRING`` itself. MT traffic is only
fetched on a ring or piggy-backed on an MO session: an empty mailbox check costs a credit,
so the link never polls. Failed sessions are retried with jittered exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable
from typing import Any

from drivers.iridium.at import (
    AtParseError,
    ResponseBuffer,
    SessionResult,
    WriteResult,
    is_ring,
    parse_csq,
    parse_imei,
    parse_sbdix,
    parse_sbdrb,
    parse_write_result,
    sbdrb_size,
    sbdwb_body,
    sbdwb_command,
)
from drivers.iridium.config import IridiumConfig
from drivers.ports.serialport import SerialTransport
from drivers.ports.settings import SerialSettings
from drivers.ports.stream import PortLost
from drivers.satlink import LinkNotReady, MessageTooLarge, SendRefused, SendTimeout
from gateway.shared import OutboundMessage, Progress

log = logging.getLogger("fieldgate.iridium")


class AtCommandError(SendRefused):
    """The modem answered ERROR or something the command does not allow."""


class IridiumLink:
    def __init__(
        self,
        config: IridiumConfig,
        on_message: Callable[[bytes], None],
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.name = config.name
        self.config = config
        self._on_message = on_message
        self._rng = rng or random.Random()
        self._port = SerialTransport(SerialSettings(config.port, config.baud))
        self._buf = ResponseBuffer()
        self._data = asyncio.Event()
        self._ring = asyncio.Event()
        self._lock = asyncio.Lock()
        self._connected = False
        self.credits_used = 0
        self.last_momsn: int | None = None
        self.last_signal: int | None = None
        self.imei: str | None = None

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def max_bytes(self) -> int:
        return self.config.max_bytes

    @property
    def interval_s(self) -> float:
        return 0.0  # SBD has no service interval: the next send may follow at once

    def modem_identity(self) -> dict[str, Any]:
        return {"imei": self.imei}  # the platform's fleet list; the IMEI is what the SBD gateway routes by

    @property
    def foreign_count(self) -> None:
        return None  # the gateway's own IMEI receives only what the platform sends to it

    # ----------------------------------------------------------------- run

    async def run(self, progress: Progress) -> None:
        """Own the modem forever: (re)open, initialise, answer rings. Never returns normally."""
        while True:
            try:
                await self._port.open()
                self._buf = ResponseBuffer()
                reader = asyncio.create_task(self._read_loop(progress), name=f"{self.name}-reader")
                try:
                    await self._initialise()
                    self._connected = True
                    log.info("%s: modem ready (signal %s bars)", self.name, self.last_signal)
                    while not reader.done():
                        ring = asyncio.create_task(self._ring.wait())
                        await asyncio.wait({reader, ring}, return_when=asyncio.FIRST_COMPLETED)
                        ring.cancel()
                        if self._ring.is_set():
                            self._ring.clear()
                            await self._answer_ring()
                        progress.beat()
                    await reader  # raises PortLost
                finally:
                    self._connected = False
                    reader.cancel()
                    await asyncio.gather(reader, return_exceptions=True)
            except (PortLost, LinkNotReady, SendTimeout, SendRefused) as exc:
                log.warning("%s: %s; reopening in %.0f s", self.name, exc, self.config.reopen_delay)
            finally:
                self._port.close()
            progress.beat()
            await asyncio.sleep(self.config.reopen_delay)

    async def _initialise(self) -> None:
        async with self._lock:
            await self._at("AT")
            await self._at("ATE0")  # echo pollutes the parser
            await self._at("AT&K0")  # no RTS/CTS when only TX/RX/GND are wired
            await self._at("AT+SBDMTA=1" if self.config.ring_alerts else "AT+SBDMTA=0")
            for line in await self._at("AT+CSQF"):  # last value at once; AT+CSQ may take 10 s
                bars = parse_csq(line)
                if isinstance(bars, int):
                    self.last_signal = bars
            try:  # inventory only: a modem that will not say its IMEI still sends
                imei = parse_imei(await self._at("AT+CGSN"))
            except AtCommandError as exc:
                imei = AtParseError(str(exc), b"")
            if isinstance(imei, str):
                self.imei = imei
            else:
                log.warning("%s: modem IMEI unknown (%s)", self.name, imei)

    async def _read_loop(self, progress: Progress) -> None:
        while True:
            self._buf.feed(await self._port.read())
            self._data.set()
            progress.beat()
            if not self._lock.locked():  # idle: only unsolicited lines can be here
                while (line := self._buf.next_line()) is not None:
                    if is_ring(line):
                        self._ring.set()
                    else:
                        log.debug("%s: unsolicited %r", self.name, line)

    # ----------------------------------------------------------------- AT plumbing

    async def _wait_data(self, deadline: float) -> None:
        """Return once bytes came that the reader has not looked at; SendTimeout at ``deadline``.

        Bytes fed after the reader's last look answer at once, even past the deadline, and so do
        bytes fed in the loop step the deadline fell in (the timeout's cancel wins the wait, the
        feed is counted). Before, the event was cleared and waited on, so those were a timeout
        with the reply in the buffer. Past the deadline nothing is awaited.
        """
        while not self._buf.unseen:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SendTimeout(f"{self.name}: modem did not answer in time")
            self._data.clear()
            try:
                async with asyncio.timeout(remaining):  # not wait_for: 3.11 can swallow a cancel
                    await self._data.wait()
            except TimeoutError:
                pass  # the loop looks at the arrivals once more, then raises
        self._buf.told = self._buf.arrivals

    async def _line(self, deadline: float) -> str:
        while True:
            line = self._buf.next_line()
            if line is None:
                await self._wait_data(deadline)
            elif is_ring(line):
                self._ring.set()  # answered once the current command is done
            else:
                return line

    async def _until_ok(self, deadline: float) -> list[str]:
        lines: list[str] = []
        while (line := await self._line(deadline)) != "OK":
            if line == "ERROR":
                raise AtCommandError(f"{self.name}: modem answered ERROR")
            if len(lines) < 16:
                lines.append(line)
        return lines

    def _drop_stale_lines(self) -> None:
        """Lines left over from a command that was cancelled mid-way must not answer the next one."""
        while (line := self._buf.next_line()) is not None:
            if is_ring(line):
                self._ring.set()
            else:
                log.debug("%s: stale %r dropped", self.name, line)

    async def _at(self, command: str, timeout_s: float | None = None) -> list[str]:
        deadline = time.monotonic() + (timeout_s or self.config.command_timeout)
        self._drop_stale_lines()
        await self._port.send(command.encode("ascii") + b"\r")
        return [ln for ln in await self._until_ok(deadline) if ln != command]  # echo before ATE0

    # ----------------------------------------------------------------- SBD steps

    async def _write_mo(self, payload: bytes) -> None:
        deadline = time.monotonic() + self.config.command_timeout
        self._drop_stale_lines()
        await self._port.send(sbdwb_command(len(payload)))
        line = await self._line(deadline)
        if line != "READY":
            raise AtCommandError(f"{self.name}: SBDWB answered {line!r} instead of READY")
        await self._port.send(sbdwb_body(payload))
        result = parse_write_result(await self._line(deadline))
        if result is WriteResult.TIMEOUT:  # no OK follows a 1
            raise SendTimeout(f"{self.name}: SBDWB transfer timed out")
        if result is not WriteResult.OK:
            await self._until_ok(deadline)
            raise AtCommandError(f"{self.name}: SBDWB failed: {result}")
        await self._until_ok(deadline)

    async def _session(self, answer_ring: bool) -> SessionResult:
        command = "AT+SBDIXA" if answer_ring else "AT+SBDIX"
        deadline = time.monotonic() + self.config.session_timeout
        self._drop_stale_lines()
        await self._port.send(command.encode() + b"\r")
        result: SessionResult | AtParseError | None = None
        for line in await self._until_ok(deadline):
            if line.startswith("+SBDIX"):
                result = parse_sbdix(line)
        if not isinstance(result, SessionResult):
            raise AtCommandError(f"{self.name}: no usable +SBDIX result ({result})")
        return result

    async def _read_mt(self, announced: int) -> bytes | None:
        """The MT message a session announced (``announced`` bytes long), or None.

        The message stays in the modem's MT buffer until the next session, so a garbled
        reply is read once more before the message is given up.
        """
        for attempt in (1, 2):
            payload = await self._read_sbdrb(announced)
            if not isinstance(payload, AtParseError):
                return payload
            log.warning("%s: SBDRB reply %d of 2 unusable: %s", self.name, attempt, payload.reason)
        log.warning("%s: MT message dropped", self.name)
        return None

    async def _read_sbdrb(self, announced: int) -> bytes | AtParseError:
        deadline = time.monotonic() + self.config.command_timeout
        self._drop_stale_lines()
        await self._port.send(b"AT+SBDRB\r")
        while True:
            self._buf.skip_blank()
            head = self._buf.take(2)
            if head is not None:
                break
            await self._wait_data(deadline)
        size = sbdrb_size(head, announced)
        if isinstance(size, AtParseError):  # never wait for a length that cannot come
            await self._until_ok(deadline)  # the rest of the reply, up to its OK
            return size
        assert size is not None
        while (rest := self._buf.take(size - 2)) is None:
            await self._wait_data(deadline)
        await self._until_ok(deadline)
        return parse_sbdrb(head + rest)

    def _credits(self, nbytes: int) -> int:
        return max(1, math.ceil(nbytes / self.config.bytes_per_credit))

    async def _after_session(self, result: SessionResult) -> None:
        """Deliver the MT message a session brought; drain the queue within the ring budget."""
        for _ in range(self.config.max_mt_per_ring):
            if result.mt_received:
                self.credits_used += self._credits(result.mt_length)
                payload = await self._read_mt(result.mt_length)
                if payload is not None:
                    try:
                        self._on_message(payload)
                    except Exception:  # a consumer bug must not kill the link
                        log.exception("%s: on_message failed", self.name)
            if result.mt_queued == 0:
                return
            await self._at("AT+SBDD0")  # empty MO: the next session must not resend it
            result = await self._session(answer_ring=False)
            if not result.mo_ok:
                return
            self.credits_used += 1  # a mailbox check costs a credit

    async def _answer_ring(self) -> None:
        async with self._lock:
            await self._at("AT+SBDD0")
            result = await self._session(answer_ring=True)
            if result.mo_ok:
                self.credits_used += 1
                await self._after_session(result)
            else:
                log.warning("%s: ring answer failed: %s", self.name, result.reason)

    # ----------------------------------------------------------------- send

    async def send(self, message: OutboundMessage) -> None:
        """Return once a session delivered the message (MO status 0-4); raise MessageTooLarge,
        SendRefused (all attempts failed), SendTimeout or LinkNotReady otherwise."""
        size = len(message.payload)
        if not 1 <= size <= self.max_bytes:
            raise MessageTooLarge(f"{self.name}: {size} bytes, allowed 1..{self.max_bytes}")
        if not self._connected:
            raise LinkNotReady(f"{self.name}: not connected")
        async with self._lock:
            try:
                await self._send_locked(message)
            except PortLost as exc:
                raise LinkNotReady(f"{self.name}: {exc}") from exc

    async def _send_locked(self, message: OutboundMessage) -> None:
        await self._write_mo(message.payload)
        delay = self.config.backoff_initial
        last = ""
        for attempt in range(1, self.config.session_attempts + 1):
            result = await self._session(answer_ring=False)
            if result.mo_ok:
                self.last_momsn = result.momsn
                self.credits_used += self._credits(len(message.payload))
                log.info("%s: sent %d bytes, MOMSN %d (seqs %s)", self.name, len(message.payload),
                         result.momsn, message.seqs)
                await self._at("AT+SBDD0")
                await self._after_session(result)
                return
            last = f"MO status {result.mo_status}: {result.reason}"
            log.warning("%s: session %d/%d failed (%s)", self.name, attempt, self.config.session_attempts, last)
            if attempt < self.config.session_attempts:
                # full jitter around the delay so a fleet does not retry in lockstep
                await asyncio.sleep(delay * (0.5 + self._rng.random()))
                delay = min(delay * 2, self.config.backoff_max)
        raise SendRefused(f"{self.name}: {self.config.session_attempts} sessions failed, last {last}")
