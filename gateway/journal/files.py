"""The journal's files: opening the database, moving a damaged one aside, the seq reservation, the ballast.

Beside ``<journal>`` (and its ``-wal``/``-shm``) live ``<journal>.seq`` (sequence numbers reserved,
fsync'd, ahead of use, so that a fresh journal started after damage continues above anything the
lost one can have handed out), ``<journal>.reserve`` (ballast deleted when the disk is full) and at
most ``keep_damaged`` moved-aside copies ``<journal>.damaged-<utc>``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import time
from pathlib import Path

from gateway.fsutil import ensure_dir, fsync_dir, prepare_database, write_atomic
from gateway.journal.batch import damaged as batch_damage
from gateway.journal.config import JournalSettings
from gateway.journal.records import LEGACY_COLUMNS, REQUIRED_COLUMNS, SCHEMA, JournalUnavailable

log = logging.getLogger("fieldgate.journal")

WAL_LIMIT = 8 * 1024 * 1024  # the WAL is truncated to this after a checkpoint
# Every commit writes each page it touched whole to the WAL (and a checkpoint writes it again): an alarm
# committed on its own touched ~10 pages in schema 1 (records, its index, pending, its index, sqlite_sequence). With
# 1 KiB pages instead of SQLite's 4 KiB that is 13.6 kB written per alarm instead of 41 kB, and 428 instead
# of 539 bytes per group-committed telemetry reading (bench/RESULTS.md, issue 18). Applies to a journal
# created from now on; an existing file keeps its page size (changing it needs a VACUUM).
PAGE_SIZE = 1024
_DAMAGE_CODES = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
_SIDE_FILES = ("", "-wal", "-shm")


def is_full(exc: sqlite3.Error) -> bool:
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_FULL


def is_damage(exc: sqlite3.Error) -> bool:
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) in _DAMAGE_CODES


class JournalFiles:
    """The files of one journal on disk; knows nothing of what the records mean."""

    def __init__(self, path: Path, settings: JournalSettings) -> None:
        self.path = path
        self.settings = settings
        self.seq_path = path.with_name(path.name + ".seq")
        self.reserve_path = path.with_name(path.name + ".reserve")
        self.moved_aside: list[str] = []  # damaged files moved aside by this instance
        self.damage_reason = ""  # why the last one was moved aside

    def open(self) -> sqlite3.Connection:
        """The journal's database with its tables; a damaged file is moved aside for a fresh one."""
        ensure_dir(self.path.parent)
        if self.path.exists():
            db, reason = self._probe()
            if db is not None:
                return db
            self.damage_reason = reason
            salvaged = self._salvage_seq()
            self._move_aside(reason)
            floor = max(self.read_reserved(), salvaged)
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

    def _connect(self) -> sqlite3.Connection:
        prepare_database(self.path)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # before the first table: a no-op on an existing file
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
        # This SQLite is built with SECURE_DELETE: every deleted record would be zeroed, a page written for
        # nothing (the journal holds telemetry, not secrets). FAST zeroes only where it costs no extra I/O.
        db.execute("PRAGMA secure_delete=FAST")
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
                if "batches" in {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}:
                    reason = batch_damage(db)
                    if reason:
                        db.close()
                        return None, reason
            db.executescript(SCHEMA)
            # A schema 1 journal (records, pending) is migrated by migrate.py once the tables are checked.
            legacy = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND "
                                                     "name IN ('records', 'pending')")}
            for table, needed in [*REQUIRED_COLUMNS.items(), *((t, LEGACY_COLUMNS[t]) for t in sorted(legacy))]:
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
        for suffix in _SIDE_FILES:
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
            for suffix in _SIDE_FILES:
                Path(str(old) + suffix).unlink(missing_ok=True)
            log.warning("deleted the oldest moved-aside journal %s (keep_damaged=%d)",
                        old, self.settings.keep_damaged)

    # ----- sequence numbers reserved ahead of use ----------------------------------------------

    def read_reserved(self) -> int:
        try:
            return int(json.loads(self.seq_path.read_text())["reserved"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def write_reserved(self, upto: int) -> None:
        """Durably note that seqs up to ``upto`` may be in use, before using them."""
        write_atomic(self.seq_path, json.dumps({"reserved": upto}).encode())

    # ----- free space: the ballast and the file system -----------------------------------------

    def ensure_ballast(self) -> None:
        """A ``reserve_bytes`` file to delete when the disk is full, if the file system has room for it."""
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

    def release_ballast(self) -> None:
        self.reserve_path.unlink(missing_ok=True)

    def free_space(self) -> tuple[int, int] | None:
        """(bytes free to us, the free-space margin to keep) on the journal's file system; None if unknown."""
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize, min(self.settings.min_free_bytes, st.f_blocks * st.f_frsize // 10)
