"""The journal: a durable SQLite (WAL) outbox between acquisition and every link.

The contract this code honours is written in docs/durability.md. In short: a record
is *taken* when the transaction that inserts it has committed with
``synchronous=FULL`` (the WAL is fsync'd), which is also the moment it gets its
sequence number; from then on it survives a process kill and a power cut. A commit
stores one ``batches`` row per class and one ``owed`` row per link whose class filter
admits that class, in the same transaction; each link's acks set bits in its row, and
the batch is deleted when the last link acknowledged all of it.

``Journal`` is the blocking API over the parts: ``files.py`` (opening, damage moved aside,
seq reservation, ballast), ``tables.py`` (rows), ``capacity.py`` (bounds, drops, disk-full
relief). All of it runs on one dedicated thread (``writer.AsyncJournal``), so the event loop
never blocks on fsync and the connection is only used from one thread.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from gateway.journal.batch import PLAIN, ZLIB, Run
from gateway.journal.capacity import Capacity
from gateway.journal.config import JournalSettings
from gateway.journal.files import JournalFiles, is_full
from gateway.journal.records import KEEP_ALWAYS, JournalFull, JournalRecord, SeqsNotReserved, journal_event
from gateway.journal.tables import RecordStore
from gateway.shared import Journalable, RecordClass

log = logging.getLogger("fieldgate.journal")


class Journal:
    """Blocking journal API; use it through ``AsyncJournal`` from the event loop."""

    def __init__(self, path: Path, links: dict[str, set[RecordClass]],
                 settings: JournalSettings | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.links = links
        self.settings = settings or JournalSettings()
        self.clock = clock
        self.files = JournalFiles(self.path, self.settings)
        self.store = RecordStore(self.files.open(), links, self.files, ZLIB if self.settings.compress else PLAIN)
        self.db = self.store.db
        self.capacity = Capacity(self.store, self.files, self.settings, clock)
        self.disk_full_events = 0
        self.files.ensure_ballast()
        if self.files.moved_aside:
            self.append([(RecordClass.EVENT, journal_event(
                "damaged", self.clock(), moved_to=self.files.moved_aside[-1], reason=self.files.damage_reason,
                seq_resumes_after=self.store.last))])

    @property
    def counts(self) -> dict[RecordClass, int]:
        """Records held, by class."""
        return self.store.counts

    @property
    def dropped(self) -> dict[str, int]:
        """Records dropped since the journal was created, by "<reason>/<class>"."""
        return self.capacity.dropped

    @property
    def moved_aside(self) -> list[str]:
        return self.files.moved_aside

    def close(self) -> None:
        self.store.close()

    # ----- appending -------------------------------------------------------------------------

    def append(self, items: Sequence[tuple[RecordClass, Journalable]]) -> list[int]:
        """Commit ``items`` in one transaction (one fsync); returns the seqs of what was stored.

        On a full disk droppable records are dropped (oldest first) to make room and the
        commit is retried; if there is still no room, incoming droppable records are dropped
        (counted) and only alarms/evidence are retried; ``JournalFull`` if even those fail.
        """
        if not items:
            return []
        try:
            return self._insert(items)
        except (sqlite3.OperationalError, SeqsNotReserved) as exc:
            if not _full(exc):
                raise
            log.error("journal: disk full (%s); dropping per policy to make room", exc)
            no_seqs = isinstance(exc, SeqsNotReserved)
        self.disk_full_events += 1
        # Room in the file is made by dropping the oldest droppable records; seqs are not (a new
        # reservation needs room on the file system), so then only the incoming droppable ones go.
        for keep_fraction in () if no_seqs else (0.9, 0.7, 0.4):  # more room each time it still does not fit
            self.capacity.relieve_full(keep_fraction)
            try:
                return self._insert(items)
            except (sqlite3.OperationalError, SeqsNotReserved) as exc:
                if not _full(exc):
                    raise
        keep = [(cls, r) for cls, r in items if cls in KEEP_ALWAYS]
        for cls, _ in items:
            if cls not in KEEP_ALWAYS:
                self.capacity.count_drop("disk_full", cls, 1, persist=False)
        if not keep:
            return []
        try:
            return self._insert(keep)
        except (sqlite3.OperationalError, SeqsNotReserved) as exc:
            if _full(exc):
                raise JournalFull(f"no room for {len(keep)} alarm/evidence records: {exc}") from exc
            raise

    def _insert(self, items: Sequence[tuple[RecordClass, Journalable]]) -> list[int]:
        self.store.reserve_for(len(items))
        with self.store.tx(durable=True):
            seqs = self.store.insert(items, self.clock())
        self.store.accounted(items, seqs)
        self.capacity.enforce()
        return seqs

    # ----- reading and acknowledging ---------------------------------------------------------

    def owed(self, link: str, cls: RecordClass, after: int, upto: int, limit: int) -> list[JournalRecord]:
        """What ``link`` still owes of class ``cls`` with after < seq <= upto, oldest first."""
        return self.store.owed(link, cls, after, upto, limit)

    def owed_runs(self, link: str, cls: RecordClass, after: int, upto: int, limit: int) -> list[Run]:
        """``owed`` as runs of records of one batch each (what the link runner pulls)."""
        return self.store.owed_runs(link, cls, after, upto, limit)

    def pending(self, link: str, limit: int, exclude: Iterable[int] = ()) -> list[JournalRecord]:
        """Priority order (alarm first), oldest first within a class, of what ``link`` owes."""
        return self.store.pending(link, limit, exclude)

    def ack(self, link: str, seqs: Sequence[int]) -> None:
        """The link's far side acknowledged ``seqs``: drop its pending rows, then records nobody needs.

        Not fsync'd on its own (``synchronous=NORMAL``): an ack lost in a power cut only means the
        record is sent again with the same seq, which the platform deduplicates.
        """
        try:
            self.store.ack(link, seqs)
        except sqlite3.OperationalError as exc:
            if not is_full(exc):
                raise
            self.disk_full_events += 1
            self.capacity.relieve_full(0.9)  # even a delete needs WAL pages
            self.store.ack(link, seqs)

    def depth(self, link: str | None = None) -> int:
        return self.store.depth(link)

    def last_seq(self) -> int:
        return self.store.last_seq()

    def maintain(self) -> None:
        """Periodic work: age bound, file-system check, ballast, overdue drop event."""
        self.capacity.maintain()

    def stats(self) -> dict[str, Any]:
        """Backlog depth and age, size, drop counters: for metrics and the status message."""
        now = self.clock()
        links: dict[str, dict[str, Any]] = {}
        for link in self.links:
            oldest = self.store.oldest_owed_created(link)
            links[link] = {"pending": self.depth(link),
                           "oldest_age_s": None if oldest is None else round(now - oldest, 1)}
        first = self.store.oldest_created()
        by_class: dict[str, int] = {}
        for key, n in self.dropped.items():
            cls_name = key.split("/", 1)[1]
            by_class[cls_name] = by_class.get(cls_name, 0) + n
        return {
            "records": self.depth(),
            "by_class": {cls.label: n for cls, n in self.counts.items()},
            "bytes": self.store.used_bytes(),
            "limit_bytes": self.capacity.limit(),
            "oldest_age_s": None if first is None else round(now - first, 1),
            "last_seq": self.store.last,
            "links": links,
            "dropped": by_class,
            "dropped_by_reason": dict(sorted(self.dropped.items())),
            "disk_full_events": self.disk_full_events,
            "file_system_low": self.capacity.pinned is not None,
            "moved_aside": list(self.moved_aside),
        }


def _full(exc: sqlite3.OperationalError | SeqsNotReserved) -> bool:
    """A full disk, as SQLite or the seq reservation met it."""
    if isinstance(exc, SeqsNotReserved):
        return exc.errno == errno.ENOSPC
    return is_full(exc)
