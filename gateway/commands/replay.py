"""The persisted replay cache: every accepted (issuer, command id) and (issuer, nonce) until expiry.

SQLite, ``synchronous=FULL``: a command is claimed (committed to disk) before it runs, so
a crash between claim and execution loses the command rather than allowing it twice.
An entry may be deleted once its command could no longer pass the expiry check
(``exp + max_clock_skew``); that happens only when room is needed, and ``max_entries``
bounds the file: a cache full of unexpired entries refuses new commands rather than
forgetting one that could be replayed.

A cache that is missing or unreadable is recreated with a *floor*: commands issued
before ``creation time + max_clock_skew`` are refused, because the old cache may have
seen them. (A freshly installed gateway therefore refuses commands for the first
``max_clock_skew`` seconds; the platform reissues.)
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from gateway.commands.names import Reason
from gateway.fsutil import ensure_dir, move_database_aside, open_checked_database

log = logging.getLogger("fieldgate.commands")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (
    kid TEXT NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (kid, kind, value)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_expires ON seen (expires);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value REAL NOT NULL);
"""


class ReplayRefused(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class ReplayCache:
    def __init__(self, path: Path, *, max_entries: int, max_clock_skew: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.max_entries = max_entries
        self.skew = max_clock_skew
        self._clock = clock
        self._lock = threading.Lock()  # claim() runs in a worker thread
        self._db: sqlite3.Connection | None = None
        self.floor = 0.0
        self._open()

    # ---- opening, with recovery ----

    def _open(self) -> None:
        ensure_dir(self.path.parent)
        fresh = not self.path.exists()
        try:
            self._db = self._connect()
        except sqlite3.DatabaseError as exc:
            aside = move_database_aside(self.path, int(self._clock()))
            log.error("command replay cache %s is unreadable (%s); moved to %s, starting a new one",
                      self.path, exc, aside)
            fresh = True
            self._db = self._connect()
        row = self._db.execute("SELECT value FROM meta WHERE key = 'floor'").fetchone()
        if fresh or row is None:
            self.floor = self._clock() + self.skew
            with self._db:
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('floor', ?)", (self.floor,))
            log.warning("command replay cache %s is new: commands issued before %.0f are refused",
                        self.path, self.floor)
        else:
            self.floor = float(row[0])

    def _connect(self) -> sqlite3.Connection:
        return open_checked_database(self.path, _SCHEMA, check_same_thread=False)  # claim() runs in a worker thread

    # ---- the one operation ----

    def claim(self, kid: str, command_id: int, nonce: bytes, issued_at: float, expires: float) -> None:
        """Remember the command, or raise ReplayRefused if it (or its nonce) was seen, or cannot be proven new."""
        if issued_at < self.floor:
            raise ReplayRefused(Reason.ISSUED_BEFORE_CACHE,
                                f"issued at {issued_at:.0f}, before the replay cache began at {self.floor:.0f}; "
                                "reissue the command")
        keys = [("id", str(command_id))] + ([("nonce", nonce.hex())] if nonce else [])
        with self._lock:
            db = self._db
            if db is None:
                raise ReplayRefused(Reason.REPLAY_CACHE_UNAVAILABLE, "replay cache is closed")
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    self._claim_locked(db, kid, command_id, keys, expires)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                log.error("command replay cache %s: %s", self.path, exc)
                raise ReplayRefused(Reason.REPLAY_CACHE_UNAVAILABLE, f"replay cache error: {exc}") from None

    def _claim_locked(self, db: sqlite3.Connection, kid: str, command_id: int,
                      keys: list[tuple[str, str]], expires: float) -> None:
        for kind, value in keys:
            if db.execute("SELECT 1 FROM seen WHERE kid = ? AND kind = ? AND value = ?",
                          (kid, kind, value)).fetchone():
                what = f"command id {command_id}" if kind == "id" else "nonce"
                raise ReplayRefused(Reason.REPLAYED, f"{what} of issuer {kid} was already used")
        (count,) = db.execute("SELECT COUNT(*) FROM seen").fetchone()
        if count + len(keys) > self.max_entries:
            # Expired entries go only when room is needed: a clock that jumped ahead for a while
            # (and was corrected) must not have emptied the cache of still-valid commands.
            db.execute("DELETE FROM seen WHERE expires < ?", (self._clock(),))
            (count,) = db.execute("SELECT COUNT(*) FROM seen").fetchone()
        if count + len(keys) > self.max_entries:
            raise ReplayRefused(Reason.REPLAY_CACHE_FULL,
                                f"{count} unexpired entries (limit {self.max_entries}); shorten command expiry")
        db.executemany("INSERT INTO seen VALUES (?, ?, ?, ?)",
                       [(kid, kind, value, expires + self.skew) for kind, value in keys])

    def __len__(self) -> int:
        with self._lock:
            if self._db is None:
                return 0
            (count,) = self._db.execute("SELECT COUNT(*) FROM seen").fetchone()
            return int(count)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
