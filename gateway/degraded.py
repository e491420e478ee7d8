"""Degraded modes: the daemon's own fault alarms, and the retry that ends them (docs/durability.md).

A site whose journal or audit log cannot be opened still polls, evaluates rules and drives its
outputs (gateway/journal/fallback.py, gateway/alerts/fallback.py). This module says so: one fault
alarm upstream per episode (``journal_unavailable``, ``audit_unavailable``: raised once, cleared
once, the same id across restarts through the alarm book), the systemd status line and the health
message; and it keeps retrying the real journal (merging the temporary one back) and the real audit
log, first every ``RETRY_FIRST`` seconds, then backing off to ``RETRY_MAX``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from gateway.alerts.fallback import ResilientAudit
from gateway.journal import AsyncJournal, Journal, JournalSettings
from gateway.journal.fallback import OPEN_ERRORS, fallback_path, merge, remove
from gateway.rules.continuity import AlarmBook
from gateway.shared import EventRecord, Progress, RecordClass

log = logging.getLogger("fieldgate")

JOURNAL_UNAVAILABLE = "journal_unavailable"
AUDIT_UNAVAILABLE = "audit_unavailable"

Commit = Callable[[RecordClass, EventRecord], Awaitable[bool]]


class DegradedModes:
    RETRY_FIRST = 5.0
    RETRY_MAX = 60.0

    def __init__(self, gateway_id: str, book: AlarmBook, commit: Commit, *, journal_path: Path,
                 links: dict[str, set[RecordClass]], settings: JournalSettings,
                 journal_problem: str | None) -> None:
        self.gateway_id = gateway_id
        self.book = book
        self._commit = commit
        self.journal_path = journal_path
        self.links = links
        self.settings = settings
        self.problems: dict[str, str] = {}
        if journal_problem is not None:
            self.problems[JOURNAL_UNAVAILABLE] = journal_problem
        self.audit: ResilientAudit | None = None

    def spare_dir(self) -> Path:
        """Where the temporary journal, audit log and alarm book live while the real ones cannot be written."""
        return fallback_path(self.journal_path, self.gateway_id).parent

    def open_audit(self, path: Path) -> ResilientAudit:
        self.audit = ResilientAudit(path, self.spare_dir() / "audit" / path.name)
        if self.audit.problem is not None:
            self.problems[AUDIT_UNAVAILABLE] = self.audit.problem
        return self.audit

    # ---- what the status line, the status page and the health message say ----

    def status(self) -> list[dict[str, str]]:
        return [{"fault": kind, "reason": reason[:200]} for kind, reason in sorted(self.problems.items())]

    def status_text(self) -> str | None:
        if not self.problems:
            return None
        return "DEGRADED: " + "; ".join(f"{kind} ({reason[:80]})" for kind, reason in sorted(self.problems.items()))

    # ---- the fault alarms ----

    async def resume(self) -> None:
        """At start: a fault alarm of an earlier run ends now (cleared, same id) or goes on (same id)."""
        for kind, entry in list(self.book.book.faults.items()):
            if kind not in self.problems:
                await self._transition(kind, "cleared", entry, "ended while the gateway was stopped")
                await self.book.set_fault(kind, None)
        for kind, reason in self.problems.items():
            if kind not in self.book.book.faults:
                await self._raise(kind, reason)

    async def _raise(self, kind: str, reason: str) -> None:
        entry = {"alarm_id": f"{kind}-{int(time.time() * 1000)}", "since": round(time.time(), 3), "reason": reason}
        await self.book.set_fault(kind, entry)  # before the record: a restart keeps the id
        await self._transition(kind, "raised", entry, reason)

    async def _clear(self, kind: str, note: str) -> None:
        entry = self.book.book.faults.get(kind)
        if entry is not None:
            await self._transition(kind, "cleared", entry, note)
            await self.book.set_fault(kind, None)
        self.problems.pop(kind, None)

    async def _transition(self, kind: str, transition: str, entry: dict[str, Any], reason: str) -> None:
        log.log(logging.CRITICAL if transition == "raised" else logging.WARNING, "fault alarm %s %s: %s",
                kind, transition, reason)
        body = {"type": kind, "transition": transition, "alarm_id": entry.get("alarm_id"), "class": "fault",
                "severity": "critical", "reason": reason, "ts": round(time.time(), 3)}
        await self._commit(RecordClass.ALARM, EventRecord("fault", "gateway", body, time.time()))

    # ---- the retry ----

    async def run(self, progress: Progress, journal: AsyncJournal, rewind: Callable[[], None]) -> None:
        """Retry what is unavailable until it is available again; then this loop idles."""
        delay = self.RETRY_FIRST
        while True:
            progress.beat()
            if AUDIT_UNAVAILABLE not in self.problems and self.audit is not None and self.audit.problem:
                self.problems[AUDIT_UNAVAILABLE] = self.audit.problem  # an append failed since
                await self._raise(AUDIT_UNAVAILABLE, self.audit.problem)
            if not self.problems:
                delay = self.RETRY_FIRST
                await asyncio.sleep(1.0)
                continue
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, self.RETRY_MAX)
            if JOURNAL_UNAVAILABLE in self.problems and await self._retry_journal(journal):
                rewind()
                await self._clear(JOURNAL_UNAVAILABLE, "journal open again; the temporary journal was merged")
            if AUDIT_UNAVAILABLE in self.problems and self.audit is not None:
                if await asyncio.to_thread(self.audit.retry):
                    await self._clear(AUDIT_UNAVAILABLE, "audit log open again; the temporary log was merged")
                elif self.audit.problem:
                    self.problems[AUDIT_UNAVAILABLE] = self.audit.problem

    async def _retry_journal(self, journal: AsyncJournal) -> bool:
        try:
            real = await asyncio.to_thread(Journal, self.journal_path, self.links, self.settings)
        except OPEN_ERRORS as exc:
            self.problems[JOURNAL_UNAVAILABLE] = str(exc) or type(exc).__name__
            log.info("journal %s still unavailable: %s", self.journal_path, exc)
            return False
        temp = journal.journal
        moved = await journal.call(_swap, journal, real)
        await journal.call(temp.close)  # after every call already queued with it
        remove(temp.path)
        log.warning("journal %s open again: %d records merged from the temporary journal", self.journal_path, moved)
        return True


def _swap(journal: AsyncJournal, real: Journal) -> int:
    """On the journal thread: what the temporary journal still owes into the real one, then use the real one."""
    moved = merge(real, journal.journal)
    journal.journal = real
    return moved
