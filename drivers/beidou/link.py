"""BeiDou RDSS short-message link (implements gateway.shared.Link).

run(): open the port, probe the dialect (or use the configured one), read the card's
service interval and communication level, then read the module forever: feedback resolves
the pending send, received messages go to ``on_message``, periodic noise is dropped.
send(): one message at a time, never before the service interval has elapsed since the
last accepted one; "frequency not reached" waits the time the module states and resends.
``$BDFKI`` acceptance only means the module transmitted: the compact codec carries seqs and
the platform's ACK message is the end-to-end confirmation.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from drivers.beidou.config import BeidouConfig
from drivers.beidou.sentences import (
    CardInfo,
    Dialect,
    Encoding,
    Feedback,
    Incoming,
    Outcome,
    ParseError,
    StreamDecoder,
    card_query,
    send_command,
)
from drivers.ports.serialport import SerialTransport
from drivers.ports.settings import SerialSettings
from drivers.ports.stream import PortLost
from drivers.satlink import LinkNotReady, MessageTooLarge, SendRefused, SendTimeout
from gateway.shared import OutboundMessage, Progress

log = logging.getLogger("fieldgate.beidou")

# Data bytes per message by communication level, unencrypted, mixed mode (protocols.md §1b):
# (bits - 8-bit 0xA4 marker) // 8.
LEVEL_BYTES = {1: (110 - 8) // 8, 2: (408 - 8) // 8, 3: (628 - 8) // 8, 4: (848 - 8) // 8}
DEFAULT_BYTES = LEVEL_BYTES[3]  # BDS-3 levels differ and are unpublished here: stay conservative
DEFAULT_INTERVAL_S = 60.0
_PROBE_ORDER = (Dialect.V21, Dialect.BDS3, Dialect.V40)
_WAIT_MARGIN_S = 1.0  # the module's clock and ours differ by up to a second
FOREIGN_LOG_EVERY_S = 600.0  # messages from other cards: the first is logged, then at most this often


class BeidouLink:
    def __init__(
        self,
        config: BeidouConfig,
        on_message: Callable[[bytes], None],
        *,
        clock: Callable[[], float] = time.monotonic,
        on_incoming: Callable[[Incoming], None] | None = None,
    ) -> None:
        self.name = config.name
        self.config = config
        self._on_message = on_message
        # A centre's command receiver (centre/satellite) takes every card's message with its sender;
        # then no sender filter applies here (the bridge maps cards to gateways itself).
        self._on_incoming = on_incoming
        self._clock = clock
        self._port = SerialTransport(SerialSettings(config.port, config.baud))
        self._decoder = StreamDecoder()
        self._card: CardInfo | None = None
        self._dialect: Dialect | None = None
        self._connected = False
        self._send_lock = asyncio.Lock()
        self._card_wait: asyncio.Future[CardInfo] | None = None
        self._feedback_wait: asyncio.Future[Feedback] | None = None
        self._next_allowed = 0.0  # clock() before which the module would refuse a send
        self.noise_count = 0
        self.error_count = 0
        self.foreign_count = 0  # messages from cards that are not the platform's, dropped
        self._foreign_logged: float | None = None

    # ----------------------------------------------------------------- state

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def card(self) -> CardInfo | None:
        return self._card

    @property
    def dialect(self) -> Dialect | None:
        return self._dialect

    @property
    def max_bytes(self) -> int:
        if self.config.max_bytes is not None:
            return self.config.max_bytes
        if self._card is not None and self._dialect is not Dialect.BDS3:
            return LEVEL_BYTES.get(self._card.level, DEFAULT_BYTES)
        return DEFAULT_BYTES

    @property
    def interval_s(self) -> float:
        if self.config.interval is not None:
            return self.config.interval
        if self._card is not None and self._card.interval_s > 0:
            return float(self._card.interval_s)
        return DEFAULT_INTERVAL_S

    # ----------------------------------------------------------------- run

    async def run(self, progress: Progress) -> None:
        """Own the port forever: (re)open, probe, read. Never returns normally."""
        while True:
            try:
                await self._port.open()
                reader = asyncio.create_task(self._read_loop(progress), name=f"{self.name}-reader")
                try:
                    await self._start_up()
                    self._connected = True
                    log.info(
                        "%s: %s dialect, card %s, interval %.0f s, %d bytes per message",
                        self.name, self._dialect, self._card.user_id if self._card else "?",
                        self.interval_s, self.max_bytes,
                    )
                    await reader  # returns only by raising PortLost
                finally:
                    self._connected = False
                    reader.cancel()
                    await asyncio.gather(reader, return_exceptions=True)
            except (PortLost, LinkNotReady) as exc:
                log.warning("%s: %s; retrying in %.0f s", self.name, exc, self.config.reopen_delay)
            finally:
                self._port.close()
                self._fail_waiters(LinkNotReady(f"{self.name}: port closed"))
            progress.beat()
            await asyncio.sleep(self.config.reopen_delay)

    async def _start_up(self) -> None:
        self._decoder.dialect = None  # a new module may sit on the port: probe without prejudice
        order = _PROBE_ORDER if self.config.dialect == "auto" else (Dialect(self.config.dialect),)
        for dialect in order:
            card = await self._query_card(dialect)
            if card is None:
                continue
            if not card.present:
                raise LinkNotReady(f"{self.name}: module answers ({dialect}) but reports no card")
            self._dialect, self._card = dialect, card
            self._decoder.dialect = dialect  # from now on sentences are read as this dialect writes them
            return
        raise LinkNotReady(f"{self.name}: no answer to the card query in dialect(s) {[str(d) for d in order]}")

    async def _query_card(self, dialect: Dialect) -> CardInfo | None:
        loop = asyncio.get_running_loop()
        self._card_wait = loop.create_future()
        try:
            await self._port.send(card_query(dialect))
            async with asyncio.timeout(self.config.probe_timeout):  # not wait_for: 3.11 can swallow a cancel
                card = await self._card_wait
        except TimeoutError:
            return None
        finally:
            self._card_wait = None
        return card if card.dialect is dialect else None

    async def _read_loop(self, progress: Progress) -> None:
        while True:
            data = await self._port.read()
            progress.beat()
            for item in self._decoder.feed(data):
                self._dispatch(item)

    def _dispatch(self, item: object) -> None:
        if isinstance(item, Feedback):
            if self._feedback_wait is not None and not self._feedback_wait.done():
                self._feedback_wait.set_result(item)
            else:
                log.info("%s: feedback with no send pending: %s", self.name, item)
        elif isinstance(item, CardInfo):
            if self._card_wait is not None and not self._card_wait.done():
                self._card_wait.set_result(item)
        elif isinstance(item, Incoming) and self._on_incoming is not None:
            try:
                self._on_incoming(item)
            except Exception:  # a consumer bug must not kill the link
                log.exception("%s: on_incoming failed for a message from card %d", self.name, item.sender)
        elif isinstance(item, Incoming):
            if item.sender not in self.config.senders:
                self._foreign(item)
                return
            try:
                self._on_message(item.payload)
            except Exception:  # a consumer bug must not kill the link
                log.exception("%s: on_message failed for a %d-byte message", self.name, len(item.payload))
        elif isinstance(item, ParseError):
            self.error_count += 1
            log.debug("%s: unparsable input: %s %r", self.name, item.reason, item.raw)
        else:
            self.noise_count += 1  # $BDBSI, $BDPWI, $GNRMC, unknown sentences

    def _foreign(self, item: Incoming) -> None:
        """Not an ACK or a command whatever it holds: it did not come from a platform card."""
        self.foreign_count += 1
        now = self._clock()
        if self._foreign_logged is None or now - self._foreign_logged >= FOREIGN_LOG_EVERY_S:
            self._foreign_logged = now
            log.warning("%s: %d-byte message from card %d dropped: not a platform card %s (%d dropped so far; "
                        "logged at most every %.0f s)", self.name, len(item.payload), item.sender,
                        sorted(self.config.senders), self.foreign_count, FOREIGN_LOG_EVERY_S)

    def _fail_waiters(self, exc: Exception) -> None:
        for fut in (self._card_wait, self._feedback_wait):
            if fut is not None and not fut.done():
                fut.set_exception(exc)

    # ----------------------------------------------------------------- send

    async def send(self, message: OutboundMessage, dest: int | None = None) -> None:
        """Return once the module accepted the message (to card ``dest``, default the configured one);
        raise MessageTooLarge, SendRefused, SendTimeout or LinkNotReady otherwise."""
        size = len(message.payload)
        if size > self.max_bytes:
            raise MessageTooLarge(f"{self.name}: {size} bytes > {self.max_bytes} per message")
        if size == 0:
            raise MessageTooLarge(f"{self.name}: empty message")
        async with self._send_lock:
            for _attempt in range(self.config.max_wait_retries + 1):
                await self._wait_interval()
                fb = await self._send_once(message.payload, self.config.dest if dest is None else dest)
                if fb.outcome is Outcome.ACCEPTED:
                    self._next_allowed = self._clock() + self.interval_s
                    log.info("%s: sent %d bytes (seqs %s)", self.name, size, message.seqs)
                    return
                if fb.outcome is Outcome.REFUSED:
                    raise SendRefused(f"{self.name}: module refused the message: {fb.reason}")
                # frequency not reached: the module says how long; never resend sooner
                wait = max(float(fb.wait_s), 1.0) + _WAIT_MARGIN_S
                log.info("%s: service interval not reached, waiting %.0f s", self.name, wait)
                self._next_allowed = self._clock() + wait
            retries = self.config.max_wait_retries
            raise SendRefused(f"{self.name}: still 'frequency not reached' after {retries} waits")

    async def _wait_interval(self) -> None:
        remaining = self._next_allowed - self._clock()
        if remaining > 0:
            await asyncio.sleep(remaining)

    async def _send_once(self, payload: bytes, dest: int) -> Feedback:
        if not self._connected or self._dialect is None or self._card is None:
            raise LinkNotReady(f"{self.name}: not connected")
        frame = send_command(
            self._dialect, self._card.user_id, dest, payload,
            Encoding(self.config.encoding), freq_point=self.config.freq_point, category=self.config.info_category,
        )
        self._feedback_wait = asyncio.get_running_loop().create_future()
        try:
            await self._port.send(frame)
            async with asyncio.timeout(self.config.feedback_timeout):  # not wait_for: 3.11 can swallow a cancel
                return await self._feedback_wait
        except TimeoutError:
            raise SendTimeout(f"{self.name}: no feedback within {self.config.feedback_timeout} s") from None
        except PortLost as exc:
            raise LinkNotReady(f"{self.name}: {exc}") from exc
        finally:
            self._feedback_wait = None
