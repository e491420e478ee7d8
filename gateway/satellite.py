"""The satellite fallback: when every primary link has been down for ``failover_after``, what
must leave (alarms, by default) leaves by satellite, compactly, within the link's budget.

Each satellite link has its own journal cursor (its ``owed`` rows, written for the classes
it carries). While a primary link is up the satellite stays on standby and forgets what a
primary has delivered; when every primary is down long enough it sends, oldest alarm first,
one compact message per service interval. A module's acceptance ($BDFKI) is not delivery:
with ``app_ack`` the record stays pending for the satellite until the platform's compact ACK
names its seq (or ``ack_timeout`` passes and it is sent again). The primary still carries
every record when it returns (a record can leave by satellite and later by MQTT); the platform
deduplicates by (gateway, seq).

Replies to satellite commands (``queue_reply``) go back over the same link whatever the
failover state: the command came that way, so the platform listens there. They are not journal
records (the command's audit record is) and need no ACK; they wait in a small bounded queue.
Order of one service slot: an alarm never sent yet, then the oldest reply, then everything else
(alarm resends after ``ack_timeout``, readings) — docs/satellite.md §2.1.

Anyone with a BeiDou card, or the Iridium address, can send to the link. So an ACK releases
records only if it carries a valid MAC under this gateway's ACK key, names this gateway's number,
and names seqs this link has sent (§1.4); and replies to *rejected* commands, which anyone can
provoke, are held to a few an hour and a small share of the byte budget (§2.1).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway import compact
from gateway.commands.names import Status
from gateway.commands.reply import Reply
from gateway.contracts import SatelliteLink, Uplink
from gateway.journal import AsyncJournal, JournalRecord
from gateway.satbudget import REJECTED_REPLIES_PER_HOUR, REJECTED_REPLY_SHARE, Budget, RejectedReplyLimit
from gateway.shared import OutboundMessage, Progress, Reading, SatellitePolicy

log = logging.getLogger("fieldgate.satellite")

SEVERITY_LEVEL = {"minor": 1, "moderate": 2, "severe": 3, "extreme": 4}
ALARM_KINDS = ("alarm", "detection")  # journal record kinds sent as a compact ALARM
REPLY_QUEUE = 8  # replies waiting for the link; beyond this the oldest is dropped
REPLY_MAX_AGE_S = 3600.0  # an older reply is dropped unsent: the platform has reissued or read the audit
REPLY_ATTEMPTS = 3  # sends of one reply before it is dropped
REPLY_RETRY_S = 5.0  # after a failed send
BUDGET_RETRY_S = 60.0  # after the byte budget said no
SUPPRESSED_LOG_EVERY_S = 3600.0  # a suppressed reply is logged once, then at most this often


@dataclass(slots=True)
class _QueuedReply:
    reply: Reply
    issuer: int | None  # the issuer number the command named, echoed for correlation
    queued: float  # monotonic
    attempts: int = 0


class SatelliteRunner:
    def __init__(self, link: SatelliteLink, journal: AsyncJournal, primaries: Sequence[Uplink],
                 policy: SatellitePolicy, *,
                 gateway_number: int, aliases: compact.AliasTable, rule_aliases: dict[str, int],
                 max_bytes: int, state_dir: Path, ack_key: bytes | None = None) -> None:
        self.link, self.journal, self.primaries, self.policy = link, journal, primaries, policy
        self.gateway_number = gateway_number
        self.ack_key = ack_key  # None: no platform ACK is believed (fail safe: records are resent)
        self.aliases, self.rule_aliases, self.max_bytes = aliases, rule_aliases, max_bytes
        self.budget = Budget(state_dir / f"satellite-budget-{link.name}.json",
                             policy.budget_bytes_per_hour, policy.budget_bytes_per_day)
        self._down_since: float | None = None
        # seq -> when sent (monotonic: a clock step must not hold a resend), waiting for the platform's ACK
        self._awaiting: dict[int, float] = {}
        self.active = False
        self._new_records = journal.subscribe()  # set when something is committed: an alarm goes at once
        self.sent_messages = 0  # every message, replies included (the bill)
        self.failover_at: float | None = None
        self._replies: deque[_QueuedReply] = deque()
        self._reply_not_before = 0.0  # monotonic: after a failed send or a full budget
        self._sending: _QueuedReply | None = None  # the reply the link is sending now
        self._slot_at = 0.0  # monotonic: the link's service interval since our last send ends here
        self.sent_replies = 0
        self.dropped_replies = 0
        self.rejected_replies = RejectedReplyLimit(policy.budget_bytes_per_hour, policy.budget_bytes_per_day)
        self.suppressed_replies = 0  # replies to rejected commands not sent (RejectedReplyLimit)
        self._suppressed_logged: float | None = None  # monotonic
        self.refused_acks = 0

    # ---- replies to satellite commands ---------------------------------------------------

    def queue_reply(self, reply: Reply, command: compact.CompactMessage | None = None) -> bool:
        """Send ``reply`` (to the satellite ``command``) over this link as soon as the link and its
        service interval allow, whether or not a primary is up. Returns False if it will not be sent
        (no command id to correlate with; a rejection over its limit). Never blocks; the queue is bounded."""
        if reply.id is None:
            log.warning("satellite %s: reply without a command id (%s %s) not sent: nothing to correlate",
                        self.link.name, reply.status, reply.reason)
            return False
        issuer = compact.command_issuer(command) if command is not None else None
        item = _QueuedReply(reply, issuer, time.monotonic())
        if reply.status is Status.REJECTED and not self._admit_rejection(item):
            return False  # before the queue-full check: a suppressed reply must not push out a queued one
        if len(self._replies) >= REPLY_QUEUE:
            # the oldest, unless the modem has it right now (then the next oldest)
            old = self._replies[1] if self._replies[0] is self._sending else self._replies[0]
            self._replies.remove(old)
            self.dropped_replies += 1
            log.warning("satellite %s: reply queue full (%d); reply to command %s (%s) dropped unsent",
                        self.link.name, REPLY_QUEUE, old.reply.id, old.reply.status)
        self._replies.append(item)
        self._new_records.set()  # wake the loop when it waits for work
        return True

    def _admit_rejection(self, item: _QueuedReply) -> bool:
        try:
            size = len(self._encode_reply(item))
        except compact.CompactEncodeError:
            size = 0  # dropped unsent when its turn comes
        if self.rejected_replies.admit(size, item.queued):
            return True
        self.suppressed_replies += 1
        last = self._suppressed_logged
        if last is None or item.queued - last >= SUPPRESSED_LOG_EVERY_S:
            self._suppressed_logged = item.queued
            log.warning("satellite %s: reply to rejected command %s (%s) not sent: replies to rejected commands "
                        "are limited to %d an hour and %.0f%% of the byte budget (%d suppressed so far; logged at "
                        "most hourly)", self.link.name, item.reply.id, item.reply.reason,
                        REJECTED_REPLIES_PER_HOUR, REJECTED_REPLY_SHARE * 100, self.suppressed_replies)
        return False

    @property
    def queued_replies(self) -> int:
        return len(self._replies)

    def _message_limit(self) -> int:
        """Bytes per message: the configured figure, or less if the card says so once read."""
        card = self.link.max_bytes
        return min(self.max_bytes, card) if card > 0 else self.max_bytes

    def _encode_reply(self, item: _QueuedReply) -> bytes:
        reply, limit = item.reply, self._message_limit()
        assert reply.id is not None  # refused by queue_reply
        room = limit - compact.reply_overhead(gateway=self.gateway_number, command_id=reply.id, issuer=item.issuer)
        return compact.encode_reply(reply.compact_body(room), gateway=self.gateway_number,
                                    time=int(max(0.0, reply.ts)), command_id=reply.id, issuer=item.issuer,
                                    max_bytes=limit)

    def _reply_due(self) -> bool:
        now = time.monotonic()
        return bool(self._replies) and self.link.connected and now >= max(self._reply_not_before, self._slot_at)

    def _sent(self) -> None:
        """A message left: what goes next is chosen when the service interval is over, not now, so
        that an alarm committed meanwhile is not queued behind a message picked too early."""
        self._slot_at = time.monotonic() + self.link.interval_s  # BeiDou: the card's; Iridium: 0
        self.sent_messages += 1

    async def _send_reply(self, progress: Progress) -> None:
        """Send the oldest queued reply once (budget and link permitting)."""
        item = self._replies[0]
        command_id = item.reply.id
        if time.monotonic() - item.queued > REPLY_MAX_AGE_S:
            self._drop_reply(item, f"older than {REPLY_MAX_AGE_S:.0f} s")
            return
        try:
            payload = self._encode_reply(item)
        except compact.CompactEncodeError as exc:
            self._drop_reply(item, f"not encodable: {exc}")
            return
        now = time.time()
        if not self.budget.allows(len(payload), now):
            log.warning("satellite %s: byte budget reached; reply to command %s waits", self.link.name, command_id)
            self._reply_not_before = time.monotonic() + BUDGET_RETRY_S
            return
        item.attempts += 1
        self._sending = item
        try:
            async with asyncio.timeout(self.policy.send_timeout):
                await self.link.send(OutboundMessage("", payload, ()))
        except Exception as exc:
            progress.beat()
            if item.attempts >= REPLY_ATTEMPTS:
                self._drop_reply(item, f"send failed {item.attempts} times, last: {exc or type(exc).__name__}")
            else:
                log.warning("satellite %s: reply to command %s not sent (%s); retrying", self.link.name,
                            command_id, exc or type(exc).__name__)
                self._reply_not_before = time.monotonic() + REPLY_RETRY_S
            return
        finally:
            self._sending = None
        self._replies.popleft()  # still first: queue_reply never drops the one being sent
        self.budget.spend(len(payload), now)
        self._sent()
        self.sent_replies += 1
        log.info("satellite %s: sent %d-byte reply to command %s (%s%s)", self.link.name, len(payload),
                 command_id, item.reply.status, f": {item.reply.reason}" if item.reply.reason else "")

    def _drop_reply(self, item: _QueuedReply, why: str) -> None:
        if self._replies and self._replies[0] is item:
            self._replies.popleft()
        self.dropped_replies += 1
        log.warning("satellite %s: reply to command %s (%s) dropped: %s", self.link.name, item.reply.id,
                    item.reply.status, why)

    # ---- journal records -----------------------------------------------------------------

    def on_platform_ack(self, ranges: tuple[tuple[int, int], ...]) -> list[int]:
        """Release what an authentic ACK names *and this link has sent*: a seq never sent (or already
        released) is not in ``_awaiting``, so an ACK naming it releases nothing."""
        acked = [seq for seq in self._awaiting if any(lo <= seq <= hi for lo, hi in ranges)]
        for seq in acked:
            del self._awaiting[seq]
        return acked

    def ack_refusal(self, message: compact.CompactMessage) -> str:
        """Why this ACK must not release anything ("" if it may)."""
        if message.gateway != self.gateway_number:
            return f"addressed to gateway number {message.gateway}, this is {self.gateway_number}"
        if self.ack_key is None:
            return "no ACK key loaded (see the start-up log)"
        if not compact.ack_authentic(message, self.ack_key):
            return "its MAC was not made with this gateway's ACK key"
        return ""

    async def handle_incoming(self, message: compact.CompactMessage) -> None:
        if message.kind is not compact.MessageKind.ACK:
            return
        refusal = self.ack_refusal(message)
        if refusal:
            self.refused_acks += 1
            shown = ", ".join(f"{lo}-{hi}" for lo, hi in message.acked[:3]) + ("…" if len(message.acked) > 3 else "")
            log.warning("satellite %s: ACK (seqs %s) refused, nothing released: %s", self.link.name, shown, refusal)
            return
        acked = self.on_platform_ack(message.acked)
        if acked:
            await self.journal.call(self.journal.journal.ack, self.link.name, acked)
            log.info("satellite %s: platform acknowledged seqs %s", self.link.name, acked)
        else:
            log.info("satellite %s: authentic ACK names no seq this link has in flight; nothing released",
                     self.link.name)

    async def run(self, progress: Progress) -> None:
        self._check_primaries()  # before the first pass of the loop decides standby or not
        watcher = asyncio.create_task(self._watch_primaries(), name=f"{self.link.name}-primaries")
        try:
            await self._loop(progress)
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)

    async def _watch_primaries(self) -> None:
        """Keep ``_down_since`` current even while the loop waits on a send (a reply in standby)."""
        while True:
            await asyncio.sleep(0.1)  # notice a dead primary within 0.1 s; a brief return resets the clock
            self._check_primaries()

    def _check_primaries(self) -> None:
        if not self.primaries:
            # A satellite-only site: the satellite is the primary, always sending, never forgetting.
            if self._down_since is None:
                self._down_since = time.monotonic() - self.policy.failover_after
            return
        if any(p.connected for p in self.primaries):
            self._down_since = None
        elif self._down_since is None:
            self._down_since = time.monotonic()
            log.info("satellite %s: every primary link is down; failover in %.0fs unless one returns",
                     self.link.name, self.policy.failover_after)

    async def _loop(self, progress: Progress) -> None:
        next_cleanup = 0.0
        while True:
            progress.beat()
            now = time.monotonic()
            down_since = self._down_since
            if down_since is None:
                if self.active:
                    log.info("satellite %s: primary link back; standing by", self.link.name)
                    self.active = False
                if now >= next_cleanup:  # a query on the journal thread: not on every check
                    await self._forget_delivered()
                    next_cleanup = now + 5.0
            if down_since is None or now - down_since < self.policy.failover_after or not self.link.connected:
                if self._reply_due():  # standby or not: the command came this way
                    await self._send_reply(progress)
                else:
                    await asyncio.sleep(0.1)
                continue
            if not self.active:
                self.active, self.failover_at = True, time.time()
                log.warning("satellite %s: every primary link down for %.0fs; alarms leave by satellite",
                            self.link.name, now - down_since)
            if now < self._slot_at:  # the link could not send yet: decide what goes when it can
                await asyncio.sleep(min(0.5, self._slot_at - now))
                continue
            self._new_records.clear()
            if not await self._send_next(progress):
                # asyncio.timeout, not wait_for (here and around sends): in 3.11 wait_for swallows a
                # cancel that lands with the wake-up, and the stop path would wait for us forever.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        await self._new_records.wait()

    async def _forget_delivered(self) -> None:
        """Standby: what a primary delivered needs no satellite copy."""
        names = [p.name for p in self.primaries]
        if not names:  # nothing else delivers: never forget (an empty IN () would match every record)
            return
        delivered: list[int] = await self.journal.call(_delivered_elsewhere, self.journal, self.link.name, names)
        if delivered:
            await self.journal.call(self.journal.journal.ack, self.link.name, delivered)
            for seq in delivered:
                self._awaiting.pop(seq, None)

    async def _send_next(self, progress: Progress) -> bool:
        now, mono = time.time(), time.monotonic()  # wall time for the persisted budget only
        waiting = {s for s, t in self._awaiting.items() if mono - t < self.policy.ack_timeout}
        records: list[JournalRecord] = await self.journal.call(
            self.journal.journal.pending, self.link.name, 20, frozenset(waiting))
        if self._reply_due() and not any(self._fresh_alarm(r) for r in records):
            await self._send_reply(progress)
            return True
        if not records:
            return False
        payload, seqs, skip = self._encode(records)
        if skip:
            if self.primaries:
                log.info("satellite %s: records %s cannot travel compactly (no point alias, e.g. a broadcast "
                         "fault); they leave by a primary link", self.link.name, skip)
            else:
                log.warning("satellite %s: records %s cannot travel compactly (no point alias, e.g. a broadcast "
                            "fault) and this site has no other link: they are NOT delivered", self.link.name, skip)
            await self.journal.call(self.journal.journal.ack, self.link.name, skip)
        if not payload:
            return bool(skip)
        if not self.budget.allows(len(payload), now):
            log.warning("satellite %s: byte budget reached; %d records wait for the primary or the next window",
                        self.link.name, len(records))
            await asyncio.sleep(60)
            return True
        try:
            async with asyncio.timeout(self.policy.send_timeout):
                await self.link.send(OutboundMessage("", payload, seqs))
        except Exception as exc:
            log.warning("satellite %s: send failed (%s); retrying", self.link.name, exc or type(exc).__name__)
            progress.beat()
            await asyncio.sleep(5.0)
            return True
        self.budget.spend(len(payload), now)
        self._sent()
        log.info("satellite %s: sent %d bytes carrying seqs %s", self.link.name, len(payload), list(seqs))
        if self.policy.app_ack:
            sent_at = time.monotonic()  # the ACK timeout runs from when the module took it
            for seq in seqs:
                self._awaiting[seq] = sent_at
        else:
            await self.journal.call(self.journal.journal.ack, self.link.name, seqs)
        return True

    def _fresh_alarm(self, record: JournalRecord) -> bool:
        """An alarm this link has not sent yet (a resend after ``ack_timeout`` is not fresh)."""
        return record.body.get("kind") in ALARM_KINDS and record.seq not in self._awaiting

    def _encode(self, records: list[JournalRecord]) -> tuple[bytes, tuple[int, ...], list[int]]:
        """One message: the first alarm alone, else as many readings as fit."""
        skip: list[int] = []
        for record in records:
            if record.body.get("kind") in ALARM_KINDS:
                try:
                    return self._encode_alarm(record), (record.seq,), skip
                except (compact.CompactEncodeError, KeyError, ValueError) as exc:
                    log.debug("seq %d not encodable: %s", record.seq, exc)
                    skip.append(record.seq)
        readings = [_reading(r) for r in records if r.seq not in skip and "point" in r.body]
        others = [r.seq for r in records if r.seq not in skip and "point" not in r.body]
        if not readings:
            return b"", (), skip + others
        packed = compact.pack_readings(readings, gateway=self.gateway_number, aliases=self.aliases,
                                       max_bytes=self.max_bytes)
        return packed.payload if packed.seqs else b"", packed.seqs, skip + list(packed.unencodable)

    def _encode_alarm(self, record: JournalRecord) -> bytes:
        body = record.body
        if body["kind"] == "detection":
            point = f"{body['camera']}.{body['role']}"
            value: Any = body.get("score")
            rule, level, text, cancel = 0, SEVERITY_LEVEL["extreme"], "", body.get("phase") == "end"
        else:
            points = body.get("points") or {}
            point = next(iter(points), "")
            value = (points.get(point) or {}).get("value")
            rule = self.rule_aliases.get(str(body.get("rule")), 0)
            level = SEVERITY_LEVEL.get(str(body.get("severity")), 0)
            text, cancel = str(body.get("message", "")), body.get("transition") == "cleared"
        alarm = compact.CompactAlarm(seq=record.seq, time=int(body.get("ts", record.created)), point=point,
                                     rule=rule, level=level, value=value, text=text)
        encode = compact.encode_alarm_cancel if cancel else compact.encode_alarm
        return encode(alarm, gateway=self.gateway_number, aliases=self.aliases, max_bytes=self.max_bytes)


def _reading(record: JournalRecord) -> Reading:
    body = dict(record.body)
    body["seq"] = record.seq
    return Reading.from_json(body)


def _delivered_elsewhere(journal: AsyncJournal, link: str, primaries: list[str]) -> list[int]:
    """Seqs the satellite still owes that no primary owes any more (runs on the journal thread).

    Only classes some primary carries: a record of a class no primary carries never had a primary
    owed row, so its absence says nothing about delivery."""
    carried = sorted({int(cls) for name in primaries for cls in journal.journal.links.get(name, ())})
    if not carried:
        return []
    return journal.journal.store.delivered_elsewhere(link, primaries, carried, 500)
