"""Alarm continuity: the active alarms outlive a restart and a reload (docs/durability.md, "Alarms").

The book (``<state_dir>/alarms.json``, replaced atomically and fsync'd) holds every active alarm
(rule alarms and the gateway's own fault alarms such as ``journal_unavailable``): its id, when it
was raised, whether it was acknowledged. A restart or a reload resumes them under the **same id**;
the first reading then clears it (once, upstream) or it stays active. An alarm whose rule is gone
(a reload or an edit removed it) is cleared upstream with a reason.

Between a transition and its journal record the process can die. So a transition is written to
the book's *outbox* before its record is committed and taken out after: a record found in the
outbox at start is committed again (at most one duplicate, same alarm id and transition), never
lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.fsutil import ensure_dir, write_atomic

log = logging.getLogger("fieldgate.rules")

BOOK_VERSION = 1
OUTBOX_MAX = 256  # records waiting for their commit; more would mean the journal is gone for good
RULE_REMOVED = "rule removed from the configuration"


@dataclass
class Book:
    """What the file holds. ``rules``: rule id -> {alarm_id, acknowledged, since, severity, class};
    ``faults``: fault kind -> {alarm_id, since, reason}; ``outbox``: alarm record bodies not yet committed."""

    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: dict[str, dict[str, Any]] = field(default_factory=dict)
    outbox: list[dict[str, Any]] = field(default_factory=list)
    # Counts every write, carried on from the book a start loaded: of the real book and its spare, the one written
    # last has the higher count, whatever the wall clock said ("saved" is for people, and for books without it).
    writes: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"v": BOOK_VERSION, "saved": round(time.time(), 3), "writes": self.writes, "rules": self.rules,
                "faults": self.faults, "outbox": self.outbox}


def _parse(data: Any) -> Book:
    if not isinstance(data, dict) or data.get("v") != BOOK_VERSION:
        raise ValueError("not an alarm book of this version")
    rules = {str(k): dict(v) for k, v in dict(data.get("rules") or {}).items() if isinstance(v, dict)}
    faults = {str(k): dict(v) for k, v in dict(data.get("faults") or {}).items() if isinstance(v, dict)}
    outbox = [dict(v) for v in list(data.get("outbox") or []) if isinstance(v, dict)][-OUTBOX_MAX:]
    writes = data.get("writes", 0)
    return Book(rules, faults, outbox, writes if isinstance(writes, int) and writes >= 0 else 0)


class AlarmBook:
    """The persisted alarm state; ``spare`` is where it is written while ``path`` cannot be (degraded)."""

    def __init__(self, path: Path, spare: Path | None = None) -> None:
        self.path = path
        self.spare = spare
        self.book = Book()
        self._lock = asyncio.Lock()
        self._next_token = 0
        self.write_problem: str | None = None

    def load(self) -> Book:
        """The book written last (the real one or the spare), by its write count, then by its wall stamp (books
        of before the count); an empty one if there is none. The wall stamp alone let a spare written while the
        clock was ahead beat the real book written after it (bench/soak.py --seed 11)."""
        found: list[tuple[int, float, Book]] = []
        for candidate in (self.path, self.spare):
            if candidate is None or not candidate.exists():
                continue
            try:
                data = json.loads(candidate.read_text())
                book = _parse(data)
                found.append((book.writes, float(data.get("saved", 0)), book))
            except (OSError, ValueError, TypeError) as exc:
                log.error("alarm book %s unreadable (%s); active alarms from it are not resumed", candidate, exc)
        self.book = max(found, key=lambda f: (f[0], f[1]))[2] if found else Book()
        return self.book

    # ---- changes: each one written before it counts ----

    async def pending(self, rules: list[dict[str, Any]], record: dict[str, Any]) -> int:
        """A transition about to be committed: the new active set and its record in the outbox."""
        async with self._lock:
            self._next_token += 1
            token = self._next_token
            self.book.rules = {a["rule"]: self._entry(a) for a in rules}
            self.book.outbox = [*self.book.outbox, {**record, "_token": token}][-OUTBOX_MAX:]
            await self._save()
            return token

    async def committed(self, token: int) -> None:
        async with self._lock:
            self.book.outbox = [r for r in self.book.outbox if r.get("_token") != token]
            await self._save()

    async def set_fault(self, kind: str, entry: dict[str, Any] | None) -> None:
        async with self._lock:
            if entry is None:
                self.book.faults.pop(kind, None)
            else:
                self.book.faults[kind] = entry
            await self._save()

    async def replace(self, rules: list[dict[str, Any]], outbox: list[dict[str, Any]]) -> None:
        async with self._lock:
            self.book.rules = {a["rule"]: self._entry(a) for a in rules}
            self.book.outbox = outbox
            await self._save()

    def _entry(self, active: dict[str, Any]) -> dict[str, Any]:
        previous = self.book.rules.get(active["rule"], {})
        since = previous.get("since") if previous.get("alarm_id") == active["alarm_id"] else None
        return {"alarm_id": active["alarm_id"], "acknowledged": bool(active.get("acknowledged")),
                "severity": active.get("severity"), "class": active.get("class"),
                "since": since if since is not None else round(time.time(), 3)}

    async def _save(self) -> None:
        self.book.writes += 1
        data = json.dumps(self.book.to_json(), separators=(",", ":"), default=str).encode()
        try:
            await asyncio.to_thread(_write, self.path, data, self.spare)
            if self.write_problem is not None:
                log.warning("alarm book %s writable again", self.path)
            self.write_problem = None
            return
        except OSError as exc:
            if self.write_problem is None:
                log.error("alarm book %s cannot be written (%s)%s", self.path, exc,
                          f"; written to {self.spare} meanwhile" if self.spare else "")
            self.write_problem = str(exc)
        if self.spare is not None:
            try:
                await asyncio.to_thread(_write, self.spare, data)
            except OSError as exc:
                log.error("alarm book spare %s cannot be written either: %s", self.spare, exc)


def _write(path: Path, data: bytes, stale: Path | None = None) -> None:
    """Write the book; once the real one is written, a spare left from a degraded time is stale: removed."""
    ensure_dir(path.parent)
    write_atomic(path, data)
    if stale is not None:
        with contextlib.suppress(OSError):  # the real book is written: a spare that stays is outcounted anyway
            stale.unlink(missing_ok=True)


def cleared_body(rule: str, entry: dict[str, Any], reason: str, at: float) -> dict[str, Any]:
    """The journal body of an alarm cleared because its rule is gone (same shape as a rule's transition)."""
    return {"transition": "cleared", "rule": rule, "alarm_id": entry.get("alarm_id"),
            "severity": entry.get("severity"), "class": entry.get("class"), "ts": round(at, 3), "points": {},
            "reason": reason}
