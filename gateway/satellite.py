"""The satellite fallback: when every primary link has been down for ``failover_after``, what
must leave (alarms, by default) leaves by satellite, compactly, within the link's budget.

Each satellite link has its own journal cursor (its ``pending`` rows, written for the classes
it carries). While a primary link is up the satellite stays on standby and forgets what a
primary has delivered; when every primary is down long enough it sends, oldest alarm first,
one compact message per service interval. A module's acceptance ($BDFKI) is not delivery:
with ``app_ack`` the record stays pending for the satellite until the platform's compact ACK
names its seq (or ``ack_timeout`` passes and it is sent again). The primary still carries
every record when it returns (a record can leave by satellite and later by MQTT); the platform
deduplicates by (gateway, seq).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from pathlib import Path
from typing import Any

from gateway import compact
from gateway.journal import AsyncJournal, JournalRecord
from gateway.shared import Link, OutboundMessage, Progress, Reading, SatellitePolicy

log = logging.getLogger("fieldgate.satellite")

SEVERITY_LEVEL = {"minor": 1, "moderate": 2, "severe": 3, "extreme": 4}


class Budget:
    """Bytes sent in the last hour and day, persisted so a restart does not reset the bill."""

    def __init__(self, path: Path, per_hour: int | None, per_day: int | None) -> None:
        self.path, self.per_hour, self.per_day = path, per_hour, per_day
        self.sends: deque[tuple[float, int]] = deque(maxlen=10_000)
        try:
            for t, n in json.loads(path.read_text()):
                self.sends.append((float(t), int(n)))
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError) as exc:
            log.warning("satellite budget file %s unreadable (%s); counting afresh", path, exc)

    def used(self, window: float, now: float) -> int:
        return sum(n for t, n in self.sends if now - t < window)

    def allows(self, size: int, now: float) -> bool:
        if self.per_hour is not None and self.used(3600, now) + size > self.per_hour:
            return False
        return self.per_day is None or self.used(86400, now) + size <= self.per_day

    def spend(self, size: int, now: float) -> None:
        self.sends.append((now, size))
        while self.sends and now - self.sends[0][0] > 86400:
            self.sends.popleft()
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(list(self.sends)))
        tmp.replace(self.path)


class SatelliteRunner:
    def __init__(self, link: Link, journal: AsyncJournal, primaries: list[Link], policy: SatellitePolicy, *,
                 gateway_number: int, aliases: compact.AliasTable, rule_aliases: dict[str, int],
                 max_bytes: int, state_dir: Path) -> None:
        self.link, self.journal, self.primaries, self.policy = link, journal, primaries, policy
        self.gateway_number = gateway_number
        self.aliases, self.rule_aliases, self.max_bytes = aliases, rule_aliases, max_bytes
        self.budget = Budget(state_dir / f"satellite-budget-{link.name}.json",
                             policy.budget_bytes_per_hour, policy.budget_bytes_per_day)
        self._down_since: float | None = None
        self._awaiting: dict[int, float] = {}  # seq -> when sent, waiting for the platform's ACK
        self.active = False
        self._new_records = journal.subscribe()  # set when something is committed: an alarm goes at once
        self.sent_messages = 0
        self.failover_at: float | None = None

    def on_platform_ack(self, ranges: tuple[tuple[int, int], ...]) -> list[int]:
        acked = [seq for seq in self._awaiting if any(lo <= seq <= hi for lo, hi in ranges)]
        for seq in acked:
            del self._awaiting[seq]
        return acked

    async def handle_incoming(self, message: compact.CompactMessage) -> None:
        if message.kind is compact.MessageKind.ACK:
            acked = self.on_platform_ack(message.acked)
            if acked:
                await self.journal.call(self.journal.journal.ack, self.link.name, acked)
                log.info("satellite %s: platform acknowledged seqs %s", self.link.name, acked)

    async def run(self, progress: Progress) -> None:
        next_cleanup = 0.0
        while True:
            progress.beat()
            now = time.monotonic()
            if any(p.connected for p in self.primaries) or not self.primaries:
                if self.active:
                    log.info("satellite %s: primary link back; standing by", self.link.name)
                self._down_since, self.active = None, False
                if now >= next_cleanup:  # a query on the journal thread: not on every check
                    await self._forget_delivered()
                    next_cleanup = now + 5.0
                await asyncio.sleep(0.1)  # notice a dead primary within 0.1 s
                continue
            if self._down_since is None:
                self._down_since = now
                log.info("satellite %s: every primary link is down; failover in %.0fs unless one returns",
                         self.link.name, self.policy.failover_after)
            if now - self._down_since < self.policy.failover_after or not self.link.connected:
                await asyncio.sleep(0.1)  # fine-grained, so a primary that comes back briefly resets the clock
                continue
            if not self.active:
                self.active, self.failover_at = True, time.time()
                log.warning("satellite %s: every primary link down for %.0fs; alarms leave by satellite",
                            self.link.name, now - self._down_since)
            self._new_records.clear()
            if not await self._send_next(progress):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._new_records.wait(), timeout=1.0)

    async def _forget_delivered(self) -> None:
        """Standby: what a primary delivered needs no satellite copy."""
        names = [p.name for p in self.primaries]
        delivered: list[int] = await self.journal.call(_delivered_elsewhere, self.journal, self.link.name, names)
        if delivered:
            await self.journal.call(self.journal.journal.ack, self.link.name, delivered)
            for seq in delivered:
                self._awaiting.pop(seq, None)

    async def _send_next(self, progress: Progress) -> bool:
        now = time.time()
        waiting = {s for s, t in self._awaiting.items() if now - t < self.policy.ack_timeout}
        records: list[JournalRecord] = await self.journal.call(
            self.journal.journal.pending, self.link.name, 20, frozenset(waiting))
        if not records:
            return False
        payload, seqs, skip = self._encode(records)
        if skip:
            log.info("satellite %s: records %s cannot travel compactly (no alias); left to the primary",
                     self.link.name, skip)
            await self.journal.call(self.journal.journal.ack, self.link.name, skip)
        if not payload:
            return bool(skip)
        if not self.budget.allows(len(payload), now):
            log.warning("satellite %s: byte budget reached; %d records wait for the primary or the next window",
                        self.link.name, len(records))
            await asyncio.sleep(60)
            return True
        try:
            await asyncio.wait_for(self.link.send(OutboundMessage("", payload, seqs)),
                                   timeout=self.policy.send_timeout)
        except Exception as exc:
            log.warning("satellite %s: send failed (%s); retrying", self.link.name, exc or type(exc).__name__)
            progress.beat()
            await asyncio.sleep(5.0)
            return True
        self.budget.spend(len(payload), now)
        self.sent_messages += 1
        log.info("satellite %s: sent %d bytes carrying seqs %s", self.link.name, len(payload), list(seqs))
        if self.policy.app_ack:
            for seq in seqs:
                self._awaiting[seq] = now
        else:
            await self.journal.call(self.journal.journal.ack, self.link.name, seqs)
        return True

    def _encode(self, records: list[JournalRecord]) -> tuple[bytes, tuple[int, ...], list[int]]:
        """One message: the first alarm alone, else as many readings as fit."""
        skip: list[int] = []
        for record in records:
            if record.body.get("kind") in ("alarm", "detection"):
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
    """Seqs the satellite still owes that no primary owes any more (runs on the journal thread)."""
    marks = ",".join("?" for _ in primaries)
    rows = journal.journal.db.execute(
        f"SELECT seq FROM pending p WHERE link = ? AND NOT EXISTS "
        f"(SELECT 1 FROM pending q WHERE q.seq = p.seq AND q.link IN ({marks})) LIMIT 500",
        (link, *primaries),
    ).fetchall()
    return [int(row[0]) for row in rows]

