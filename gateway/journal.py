"""The journal: a durable SQLite (WAL) outbox between acquisition and every link.

The contract this code honours is written in docs/durability.md. In short: a record
is *taken* when the transaction that inserts it has committed with
``synchronous=FULL`` (the WAL is fsync'd), which is also the moment it gets its
sequence number; from then on it survives a process kill and a power cut. Each
record gets a ``pending`` row for every link whose class filter admits it, in the
same transaction, and is deleted when the last of those links acknowledged it.

Bounds: the journal's live pages are kept under ``max_bytes`` (and under the size
it had when the file system ran low); over it, bulk then telemetry (optionally
thinned first) then state then events are dropped oldest-first, never alarms or
evidence, every drop counted (persistently) and reported by an event record.
A journal that is damaged is moved aside and a fresh one is started whose
sequence numbers continue above anything the old one can have handed out.

All SQLite work runs on one dedicated thread (``AsyncJournal``), so the event
loop never blocks on fsync and the connection is only used from one thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gateway.fsutil import ensure_dir, fsync_dir, prepare_database, write_atomic
from gateway.journal_config import JournalSettings
from gateway.shared import EventRecord, Journalable, Progress, RecordClass

log = logging.getLogger("fieldgate.journal")

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    cls     INTEGER NOT NULL,
    point   TEXT NOT NULL,
    created REAL NOT NULL,
    body    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_by_cls ON records (cls, seq);
CREATE TABLE IF NOT EXISTS pending (
    link TEXT NOT NULL,
    cls  INTEGER NOT NULL,
    seq  INTEGER NOT NULL,
    PRIMARY KEY (link, cls, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pending_by_seq ON pending (seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
REQUIRED_COLUMNS = {"records": {"seq", "cls", "point", "created", "body"}, "pending": {"link", "cls", "seq"}}

# Never dropped for space or age: an alarm or a piece of broadcast evidence is kept until delivered.
KEEP_ALWAYS = frozenset({RecordClass.ALARM, RecordClass.EVIDENCE})
# What goes first when the journal is full (lowest value first).
DROP_ORDER = (RecordClass.BULK, RecordClass.TELEMETRY, RecordClass.STATE, RecordClass.EVENT)
SEQ_BLOCK = 10_000  # sequence numbers reserved (fsync'd to <journal>.seq) ahead of use
MAX_SEQ = 2**63 - 1
WAL_LIMIT = 8 * 1024 * 1024  # the WAL is truncated to this after a checkpoint
_DAMAGE_CODES = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
JOURNAL_POINT = "journal"  # point id of the journal's own event records


class JournalFull(Exception):
    """An alarm or evidence record could not be stored even after dropping everything droppable."""


class JournalUnavailable(Exception):
    """The journal file cannot be opened for a reason that is not damage (permissions, I/O, lock)."""


@dataclass(frozen=True, slots=True)
class JournalRecord:
    seq: int
    cls: RecordClass
    body: dict[str, Any]
    created: float


def _is_full(exc: sqlite3.Error) -> bool:
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_FULL


def is_damage(exc: sqlite3.Error) -> bool:
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in _DAMAGE_CODES


def journal_event(what: str, now: float, **attrs: Any) -> EventRecord:
    """An event record about the journal itself (damage, drops); the platform sees it on …/event
    as ``{"kind": "<what>", "key": "journal", ...}``."""
    return EventRecord(what, JOURNAL_POINT, attrs, now)


class Journal:
    """Blocking journal API; use it through ``AsyncJournal`` from the event loop."""

    def __init__(self, path: Path, links: dict[str, set[RecordClass]],
                 settings: JournalSettings | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.links = links
        self.settings = settings or JournalSettings()
        self.clock = clock
        self.seq_path = self.path.with_name(self.path.name + ".seq")
        self.reserve_path = self.path.with_name(self.path.name + ".reserve")
        self.moved_aside: list[str] = []  # damaged files moved aside by this instance
        self.counts: dict[RecordClass, int] = dict.fromkeys(RecordClass, 0)
        self.dropped: dict[str, int] = {}  # "<reason>/<class>" -> records, persisted in meta
        self.disk_full_events = 0
        self._unreported: dict[str, int] = {}
        self._last_drop_event = 0.0
        self._pinned: int | None = None  # bytes the file may not grow past (file system low)
        self._thin_bucket: dict[str, int] = {}
        self._synchronous = ""
        self.db = self._open()
        self._page_size = int(self.db.execute("PRAGMA page_size").fetchone()[0])
        self._load_state()
        self._ensure_reserve()
        if self.moved_aside:
            self.append([(RecordClass.EVENT, journal_event(
                "damaged", self.clock(), moved_to=self.moved_aside[-1], reason=self._damage_reason,
                seq_resumes_after=self._last))])

    # ----- opening, damage -------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        prepare_database(self.path)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
        self._synchronous = ""
        return db

    def _open(self) -> sqlite3.Connection:
        ensure_dir(self.path.parent)
        self._damage_reason = ""
        if self.path.exists():
            db, reason = self._probe()
            if db is not None:
                return db
            self._damage_reason = reason
            salvaged = self._salvage_seq()
            self._move_aside(reason)
            floor = max(self._read_reserved(), salvaged)
            if floor == 0:
                # Nothing tells us which seqs the lost file used: continue above any plausible count.
                floor = int(time.time() * 1000)
            db = self._connect()
            db.executescript(SCHEMA)
            db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('records', ?)", (floor,))
            fsync_dir(self.path.parent)
            return db
        db = self._connect()
        db.executescript(SCHEMA)
        fsync_dir(self.path.parent)
        return db

    def _probe(self) -> tuple[sqlite3.Connection | None, str]:
        """Open the existing file; (connection, "") if usable, (None, why) if damaged."""
        db: sqlite3.Connection | None = None
        try:
            db = self._connect()
            if self.settings.integrity_check == "quick":
                result = [row[0] for row in db.execute("PRAGMA quick_check").fetchall()]
                if result != ["ok"]:
                    db.close()
                    return None, "quick_check: " + "; ".join(str(r) for r in result[:5])
            db.executescript(SCHEMA)
            for table, needed in REQUIRED_COLUMNS.items():
                have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                if not needed <= have:
                    db.close()
                    return None, f"not a fieldgate journal: table {table} lacks {sorted(needed - have)}"
            return db, ""
        except sqlite3.DatabaseError as exc:
            if db is not None:
                db.close()
            if is_damage(exc):
                return None, f"{type(exc).__name__}: {exc}"
            raise JournalUnavailable(f"journal {self.path} cannot be opened: {exc}") from exc

    def _salvage_seq(self) -> int:
        try:
            uri = f"file:{self.path}?mode=ro&immutable=1"
            with contextlib.closing(sqlite3.connect(uri, uri=True)) as old:
                row = old.execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()
                return int(row[0]) if row else 0
        except (sqlite3.Error, ValueError, TypeError):
            return 0

    def _move_aside(self, reason: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
        n = 1
        while target.exists():
            target = self.path.with_name(f"{self.path.name}.damaged-{stamp}-{n}")
            n += 1
        for suffix in ("", "-wal", "-shm"):
            src = Path(str(self.path) + suffix)
            if src.exists():
                os.replace(src, Path(str(target) + suffix))
        fsync_dir(self.path.parent)
        self.moved_aside.append(str(target))
        log.error("journal %s is damaged (%s); moved aside to %s, starting a fresh journal",
                  self.path, reason, target)
        self._prune_damaged()

    def _prune_damaged(self) -> None:
        """Keep the newest ``keep_damaged`` moved-aside journals (bounded disk use), saying so."""
        copies = sorted(p for p in self.path.parent.glob(f"{self.path.name}.damaged-*")
                        if not p.name.endswith(("-wal", "-shm")))
        for old in copies[: max(0, len(copies) - self.settings.keep_damaged)]:
            for suffix in ("", "-wal", "-shm"):
                Path(str(old) + suffix).unlink(missing_ok=True)
            log.warning("deleted the oldest moved-aside journal %s (keep_damaged=%d)",
                        old, self.settings.keep_damaged)

    def _read_reserved(self) -> int:
        try:
            return int(json.loads(self.seq_path.read_text())["reserved"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def _reserve(self, upto: int) -> None:
        """Durably note that seqs up to ``upto`` may be in use, before using them."""
        write_atomic(self.seq_path, json.dumps({"reserved": upto}).encode())
        self._reserved = upto

    def _load_state(self) -> None:
        self._last = self.last_seq()
        self._reserved = self._read_reserved()
        if self._reserved < self._last:
            self._reserve(self._last + SEQ_BLOCK)
        for cls, n in self.db.execute("SELECT cls, count(*) FROM records GROUP BY cls"):
            self.counts[RecordClass(cls)] = int(n)
        for key, value in self.db.execute("SELECT key, value FROM meta WHERE key LIKE 'dropped/%'"):
            self.dropped[key.removeprefix("dropped/")] = int(value)
        # A link removed from the config would otherwise pin its records forever.
        known = list(self.links)
        marks = ",".join("?" * len(known)) or "''"
        stale = self.db.execute(f"SELECT count(*) FROM pending WHERE link NOT IN ({marks})", known).fetchone()[0]
        if stale:
            log.warning("journal: %d pending rows for links no longer configured are released", stale)
            with self._tx(durable=False):
                self.db.execute(f"DELETE FROM pending WHERE link NOT IN ({marks})", known)
                self._delete_orphans()

    def _delete_orphans(self) -> None:
        self.db.execute("DELETE FROM records WHERE NOT EXISTS (SELECT 1 FROM pending p WHERE p.seq = records.seq)")
        self.counts = dict.fromkeys(RecordClass, 0)
        for cls, n in self.db.execute("SELECT cls, count(*) FROM records GROUP BY cls"):
            self.counts[RecordClass(cls)] = int(n)

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.db.close()

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
        except sqlite3.OperationalError as exc:
            if not _is_full(exc):
                raise
            log.error("journal: disk full (%s); dropping per policy to make room", exc)
        self.disk_full_events += 1
        for keep_fraction in (0.9, 0.7, 0.4):  # make more room each time the batch still does not fit
            self._relieve_full(keep_fraction)
            try:
                return self._insert(items)
            except sqlite3.OperationalError as exc:
                if not _is_full(exc):
                    raise
        keep = [(cls, r) for cls, r in items if cls in KEEP_ALWAYS]
        for cls, _ in items:
            if cls not in KEEP_ALWAYS:
                self._count_drop("disk_full", cls, 1, persist=False)
        if not keep:
            return []
        try:
            return self._insert(keep)
        except sqlite3.OperationalError as exc:
            if _is_full(exc):
                raise JournalFull(f"no room for {len(keep)} alarm/evidence records: {exc}") from exc
            raise

    def _insert(self, items: Sequence[tuple[RecordClass, Journalable]]) -> list[int]:
        if self._last + len(items) + 1 > self._reserved:
            self._reserve(self._last + len(items) + SEQ_BLOCK)
        with self._tx(durable=True):
            seqs = self._insert_rows(items, self.clock())
        self._accounted(items, seqs)
        self._enforce_capacity()
        return seqs

    def _insert_rows(self, items: Sequence[tuple[RecordClass, Journalable]], created: float) -> list[int]:
        seqs: list[int] = []
        pending: list[tuple[str, int, int]] = []
        for cls, reading in items:
            body = json.dumps(reading.to_json(), separators=(",", ":"))
            cursor = self.db.execute(
                "INSERT INTO records (cls, point, created, body) VALUES (?, ?, ?, ?)",
                (int(cls), reading.point, created, body),
            )
            seq = int(cursor.lastrowid or 0)
            seqs.append(seq)
            pending.extend((link, int(cls), seq) for link, classes in self.links.items() if cls in classes)
        self.db.executemany("INSERT INTO pending (link, cls, seq) VALUES (?, ?, ?)", pending)
        # A record no link carries is not kept (nobody would ever acknowledge it).
        orphans = [(s,) for (cls, _), s in zip(items, seqs, strict=True)
                   if not any(cls in c for c in self.links.values())]
        if orphans:
            self.db.executemany("DELETE FROM records WHERE seq = ?", orphans)
        return seqs

    def _accounted(self, items: Sequence[tuple[RecordClass, Journalable]], seqs: list[int]) -> None:
        if seqs:
            self._last = max(self._last, seqs[-1])
        for cls, _ in items:
            if any(cls in c for c in self.links.values()):
                self.counts[cls] += 1

    # ----- reading and acknowledging ---------------------------------------------------------

    def owed(self, link: str, cls: RecordClass, after: int, upto: int, limit: int) -> list[JournalRecord]:
        """What ``link`` still owes of class ``cls`` with after < seq <= upto, oldest first."""
        if limit <= 0:
            return []
        rows = self.db.execute(
            "SELECT r.seq, r.cls, r.body, r.created FROM pending p JOIN records r ON r.seq = p.seq "
            "WHERE p.link = ? AND p.cls = ? AND p.seq > ? AND p.seq <= ? ORDER BY p.seq LIMIT ?",
            (link, int(cls), after, upto, limit),
        ).fetchall()
        return [JournalRecord(seq, RecordClass(c), json.loads(body), created) for seq, c, body, created in rows]

    def pending(self, link: str, limit: int, exclude: Iterable[int] = ()) -> list[JournalRecord]:
        """Priority order (alarm first), oldest first within a class, of what ``link`` owes."""
        skip = set(exclude)
        out: list[JournalRecord] = []
        for cls in RecordClass:
            for record in self.owed(link, cls, 0, MAX_SEQ, limit - len(out) + len(skip)):
                if record.seq not in skip:
                    out.append(record)
            if len(out) >= limit:
                break
        return out[:limit]

    def ack(self, link: str, seqs: Sequence[int]) -> None:
        """The link's far side acknowledged ``seqs``: drop its pending rows, then records nobody needs.

        Not fsync'd on its own (``synchronous=NORMAL``): an ack lost in a power cut only means the
        record is sent again with the same seq, which the platform deduplicates.
        """
        try:
            self._ack(link, seqs)
        except sqlite3.OperationalError as exc:
            if not _is_full(exc):
                raise
            self.disk_full_events += 1
            self._relieve_full(0.9)  # even a delete needs WAL pages
            self._ack(link, seqs)

    def _ack(self, link: str, seqs: Sequence[int]) -> None:
        with self._tx(durable=False):
            for start in range(0, len(seqs), 500):
                chunk = list(seqs[start:start + 500])
                marks = ",".join("?" * len(chunk))
                self.db.execute(f"DELETE FROM pending WHERE link = ? AND seq IN ({marks})", [link, *chunk])
                gone = self.db.execute(
                    f"DELETE FROM records WHERE seq IN ({marks}) AND NOT EXISTS "
                    f"(SELECT 1 FROM pending p WHERE p.seq = records.seq) RETURNING cls", chunk).fetchall()
                for (cls,) in gone:
                    self.counts[RecordClass(cls)] -= 1

    def depth(self, link: str | None = None) -> int:
        if link is None:
            return sum(self.counts.values())
        return int(self.db.execute("SELECT count(*) FROM pending WHERE link = ?", (link,)).fetchone()[0])

    def last_seq(self) -> int:
        row = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()
        return int(row[0]) if row else 0

    def stats(self) -> dict[str, Any]:
        """Backlog depth and age, size, drop counters: for metrics and the status message."""
        now = self.clock()
        links: dict[str, dict[str, Any]] = {}
        for link in self.links:
            oldest: float | None = None
            for cls in RecordClass:
                row = self.db.execute(
                    "SELECT r.created FROM pending p JOIN records r ON r.seq = p.seq "
                    "WHERE p.link = ? AND p.cls = ? ORDER BY p.seq LIMIT 1", (link, int(cls))).fetchone()
                if row is not None:
                    oldest = row[0] if oldest is None else min(oldest, row[0])
            links[link] = {"pending": self.depth(link),
                           "oldest_age_s": None if oldest is None else round(now - oldest, 1)}
        row = self.db.execute("SELECT created FROM records ORDER BY seq LIMIT 1").fetchone()
        by_class: dict[str, int] = {}
        for key, n in self.dropped.items():
            cls_name = key.split("/", 1)[1]
            by_class[cls_name] = by_class.get(cls_name, 0) + n
        return {
            "records": self.depth(),
            "by_class": {cls.name.lower(): n for cls, n in self.counts.items()},
            "bytes": self._used_bytes(),
            "limit_bytes": self._limit(),
            "oldest_age_s": None if row is None else round(now - row[0], 1),
            "last_seq": self._last,
            "links": links,
            "dropped": by_class,
            "dropped_by_reason": dict(sorted(self.dropped.items())),
            "disk_full_events": self.disk_full_events,
            "file_system_low": self._pinned is not None,
            "moved_aside": list(self.moved_aside),
        }

    # ----- bounds ----------------------------------------------------------------------------

    def _used_bytes(self) -> int:
        pages = int(self.db.execute("PRAGMA page_count").fetchone()[0])
        free = int(self.db.execute("PRAGMA freelist_count").fetchone()[0])
        return (pages - free) * self._page_size

    def _file_bytes(self) -> int:
        return int(self.db.execute("PRAGMA page_count").fetchone()[0]) * self._page_size

    def _limit(self) -> int:
        limit = self.settings.max_bytes
        return limit if self._pinned is None else min(limit, self._pinned)

    def _check_file_system(self) -> None:
        """Below the free-space margin the journal stops growing its file; it reuses its own pages."""
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return
        free = st.f_bavail * st.f_frsize
        margin = min(self.settings.min_free_bytes, st.f_blocks * st.f_frsize // 10)
        if free < margin and self._pinned is None:
            self._pinned = max(self._file_bytes() - 2 * self._page_size, self._page_size * 16)
            log.warning("journal: file system low (%d bytes free < %d); journal held at %d bytes",
                        free, margin, self._pinned)
        elif self._pinned is not None and free > 2 * margin + self.settings.reserve_bytes:
            log.info("journal: file system has room again (%d bytes free); journal may grow", free)
            self._pinned = None

    def _enforce_capacity(self, reason: str = "capacity", target: int | None = None) -> None:
        used = self._used_bytes()
        if target is None:
            self._check_file_system()
            limit = self._limit()
            if used <= limit:
                return
            target = int(limit * 0.9)  # hysteresis: one drop pass makes room for a while
        for _ in range(10_000):
            dropped = self._drop_step(used - target, reason)
            if dropped == 0:
                log.error("journal over its bound (%d > %d bytes) with only alarms/evidence left", used, target)
                return
            used = self._used_bytes()
            if used <= target:
                return

    def _drop_step(self, excess: int, reason: str) -> int:
        total = max(1, sum(self.counts.values()))
        average = max(64, self._used_bytes() // total)
        want = min(20_000, max(200, excess // average + 1))
        for cls in DROP_ORDER:
            if self.counts[cls] <= 0:
                continue
            if cls is RecordClass.TELEMETRY and self.settings.thin_to:
                thinned = self._thin(want)
                if thinned:
                    return thinned
            return self._drop_oldest(cls, want, reason)
        return 0

    def _thin(self, want: int) -> int:
        """Keep one telemetry value per point per ``thin_to`` interval, oldest region first."""
        assert self.settings.thin_to is not None
        interval = self.settings.thin_to
        row = self.db.execute("SELECT value FROM meta WHERE key = 'thinned_upto'").fetchone()
        upto = int(row[0]) if row else 0
        deleted = 0
        while deleted == 0:
            rows = self.db.execute(
                "SELECT seq, point, created FROM records WHERE cls = ? AND seq > ? ORDER BY seq LIMIT ?",
                (int(RecordClass.TELEMETRY), upto, max(want, 1000))).fetchall()
            if not rows:
                return 0
            doomed: list[int] = []
            for seq, point, created in rows:
                bucket = int(created // interval)
                if self._thin_bucket.get(point) == bucket:
                    doomed.append(seq)
                elif len(self._thin_bucket) < 100_000 or point in self._thin_bucket:
                    self._thin_bucket[point] = bucket
            upto = rows[-1][0]
            with self._tx(durable=False):
                self._delete_scattered(doomed)
                self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('thinned_upto', ?)", (upto,))
                if doomed:
                    self._count_drop("thinned", RecordClass.TELEMETRY, len(doomed))
                    self._maybe_drop_event()
            self.counts[RecordClass.TELEMETRY] -= len(doomed)
            deleted = len(doomed)
        return deleted

    def _delete_scattered(self, seqs: list[int]) -> None:
        for start in range(0, len(seqs), 500):
            chunk = seqs[start:start + 500]
            marks = ",".join("?" * len(chunk))
            self.db.execute(f"DELETE FROM pending WHERE seq IN ({marks})", chunk)
            self.db.execute(f"DELETE FROM records WHERE seq IN ({marks})", chunk)

    def _drop_oldest(self, cls: RecordClass, want: int, reason: str, before: float | None = None) -> int:
        """Delete up to ``want`` oldest records of ``cls`` (only those created before ``before``)."""
        if cls in KEEP_ALWAYS:
            return 0
        query = "SELECT seq FROM records WHERE cls = ?" + (" AND created < ?" if before is not None else "")
        args: tuple[Any, ...] = (int(cls), before) if before is not None else (int(cls),)
        rows = self.db.execute(query + " ORDER BY seq LIMIT ?", (*args, want)).fetchall()
        if not rows:
            return 0
        last = rows[-1][0]
        with self._tx(durable=False):
            self._delete_scattered([seq for (seq,) in rows])
            self._count_drop(reason, cls, len(rows))
            self._maybe_drop_event()
        self.counts[cls] -= len(rows)
        log.warning("journal: dropped %d oldest %s records (%s), up to seq %d",
                    len(rows), cls.name.lower(), reason, last)
        return len(rows)

    def _count_drop(self, reason: str, cls: RecordClass, n: int, persist: bool = True) -> None:
        key = f"{reason}/{cls.name.lower()}"
        self.dropped[key] = self.dropped.get(key, 0) + n
        self._unreported[key] = self._unreported.get(key, 0) + n
        if persist:
            self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                            ("dropped/" + key, self.dropped[key]))

    def _maybe_drop_event(self, force: bool = False) -> None:
        """Inside the current transaction: an event record summarising drops since the last one."""
        now = self.clock()
        if not self._unreported or (not force and now - self._last_drop_event < self.settings.drop_event_interval):
            return
        event = journal_event("dropped", now, records=dict(self._unreported), totals=dict(self.dropped))
        if self._last + 2 > self._reserved:
            self._reserve(self._last + SEQ_BLOCK)
        seqs = self._insert_rows([(RecordClass.EVENT, event)], now)
        self._accounted([(RecordClass.EVENT, event)], seqs)
        self._unreported.clear()
        self._last_drop_event = now

    def _relieve_full(self, keep_fraction: float) -> None:
        """SQLITE_FULL: free the ballast, hold the file at its size, drop, checkpoint the WAL."""
        self.reserve_path.unlink(missing_ok=True)
        self._pinned = max(self._page_size * 16, int(self._file_bytes() * 0.9))
        try:
            # Always free part of what is used: the failed write needed pages the file could not get.
            target = min(self._pinned, int(self._used_bytes() * keep_fraction))
            self._enforce_capacity("disk_full", target=target)
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.OperationalError as exc:
            if not _is_full(exc):
                raise
            log.error("journal: still no room after dropping: %s", exc)

    def _ensure_reserve(self) -> None:
        size = self.settings.reserve_bytes
        if size <= 0 or self.reserve_path.exists():
            return
        try:
            st = os.statvfs(self.path.parent)
            if st.f_bavail * st.f_frsize < 4 * size:
                return
            fd = os.open(self.reserve_path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                os.posix_fallocate(fd, 0, size)
            finally:
                os.close(fd)
        except OSError as exc:
            self.reserve_path.unlink(missing_ok=True)
            log.info("journal: no ballast file (%s)", exc)

    def maintain(self) -> None:
        """Periodic work: age bound, file-system check, ballast, overdue drop event."""
        now = self.clock()
        cutoff = now - self.settings.max_age
        for cls in DROP_ORDER:
            oldest = self.db.execute("SELECT created FROM records WHERE cls = ? ORDER BY seq LIMIT 1",
                                     (int(cls),)).fetchone()
            if oldest is None or oldest[0] >= cutoff:
                continue  # checked first so an idle pass never scans a large backlog
            while self._drop_oldest(cls, 5000, "age", before=cutoff):
                pass
        self._enforce_capacity()
        if self._pinned is None:
            self._ensure_reserve()
        if self._unreported and now - self._last_drop_event >= self.settings.drop_event_interval:
            with self._tx(durable=True):
                self._maybe_drop_event()

    # ----- transactions ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _tx(self, durable: bool) -> Iterator[None]:
        mode = "FULL" if durable else "NORMAL"
        if mode != self._synchronous:
            self.db.execute(f"PRAGMA synchronous={mode}")
            self._synchronous = mode
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.db.execute("ROLLBACK")
            raise


class AsyncJournal:
    """The journal's owner in the event loop: a bounded queue and one group-committing writer.

    Queued records (telemetry, state) are committed in batches: whatever is queued, for at
    most ``commit_window``, goes into one transaction with one fsync. ``append_now`` commits
    synchronously and returns the seq, for alarms and evidence that must be durable before
    anything acts on them.
    """

    MAINTAIN_EVERY = 5.0

    def __init__(self, journal: Journal, queue_size: int = 10_000, commit_window: float = 0.2) -> None:
        self.journal = journal
        self.commit_window = commit_window
        self._queue: asyncio.Queue[tuple[RecordClass, Journalable]] = asyncio.Queue(queue_size)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._listeners: list[asyncio.Event] = []
        self._batch_lock = asyncio.Lock()  # held by the writer from its first item to its commit, and by flush()
        self._next_maintenance = time.monotonic() + self.MAINTAIN_EVERY
        self.committed = 0
        # Refreshed by the writer every few seconds: what a status page may read without waiting.
        self.latest_stats: dict[str, Any] = {}

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def subscribe(self) -> asyncio.Event:
        """An event set whenever new records are committed (links wait on it)."""
        event = asyncio.Event()
        self._listeners.append(event)
        return event

    async def put(self, cls: RecordClass, reading: Journalable) -> None:
        """Queue a reading for group commit; waits (back-pressure) when the queue is full."""
        await self._queue.put((cls, reading))

    async def append_now(self, cls: RecordClass, reading: Journalable) -> int:
        """Commit one record now (fsync'd) and return its seq. Raises ``JournalFull`` if it cannot."""
        seqs = await self.call(self.journal.append, [(cls, reading)])
        if not seqs:
            raise JournalFull(f"{cls.name.lower()} record of {reading.point} was not stored (disk full)")
        self._notify()
        return seqs[0]

    async def stats(self) -> dict[str, Any]:
        return await self.call(self.journal.stats)

    def queued(self) -> int:
        return self._queue.qsize()

    async def run(self, progress: Progress) -> None:
        while True:
            try:
                # Not wait_for: in 3.11 it swallows a cancel that lands with the item (the stop path
                # would then wait for this loop forever); a cancelled get() leaves the item queued.
                async with asyncio.timeout(1.0):
                    first = await self._queue.get()
            except TimeoutError:
                progress.beat()
                await self._maintain_if_due()
                continue
            # The batch in hand is committed before flush() may take what is queued behind it:
            # queue order stays seq order (a later reading of a point never gets a lower seq).
            # Uncontended, acquire() does not suspend, so nothing can slip in after the get.
            batch = [first]
            try:
                await self._batch_lock.acquire()
            except asyncio.CancelledError:
                await self._commit(batch)  # flush() ran while we waited; what we took is not dropped
                raise
            try:
                await self._gather_and_commit(batch)
            finally:
                self._batch_lock.release()
            progress.beat()
            await self._maintain_if_due()

    async def _gather_and_commit(self, batch: list[tuple[RecordClass, Journalable]]) -> None:
        deadline = time.monotonic() + self.commit_window
        try:
            # Take what is already queued; a short nap lets a burst (one poll cycle) join the batch.
            while len(batch) < 5000 and time.monotonic() < deadline:
                if self._queue.empty():
                    await asyncio.sleep(0.005)
                    if self._queue.empty():
                        break
                batch.append(self._queue.get_nowait())
        except asyncio.CancelledError:
            await self._commit(batch)  # shutting down: what we hold is committed, not dropped
            raise
        await self._commit(batch)

    async def _maintain_if_due(self) -> None:
        if time.monotonic() < self._next_maintenance:
            return
        self._next_maintenance = time.monotonic() + self.MAINTAIN_EVERY
        try:
            await self.call(self.journal.maintain)
            self.latest_stats = await self.call(self.journal.stats)
        except sqlite3.Error as exc:
            log.error("journal maintenance failed: %s", exc)
        self._notify()

    async def flush(self) -> None:
        """Commit everything queued now (shutdown path), after the batch the writer may hold."""
        async with self._batch_lock:
            batch: list[tuple[RecordClass, Journalable]] = []
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            if batch:
                await self._commit(batch)

    async def _commit(self, batch: list[tuple[RecordClass, Journalable]]) -> None:
        delay = 0.5
        while True:
            try:
                await self.call(self.journal.append, batch)
                break
            except JournalFull as exc:
                # Only alarms/evidence are left in a full journal: hold them (the queue fills and
                # back-pressures the buses) and keep trying; never drop them.
                log.critical("journal full of alarms/evidence: %s; retrying", exc)
            except sqlite3.Error as exc:
                log.error("journal commit of %d records failed: %s; retrying in %.1fs", len(batch), exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
        self.committed += len(batch)
        self._notify()

    def _notify(self) -> None:
        for event in self._listeners:
            event.set()

    async def close(self) -> None:
        await self.call(self.journal.close)
        self._executor.shutdown(wait=True)
