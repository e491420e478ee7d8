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

The floor is a moment, not a reading of the wall clock: it is kept with the monotonic clock
and the boot id it was taken on (gateway/bootclock.py) and put on the wall clock as it reads
at each claim, moved by every step since, either way. A bare wall floor was wrong by whatever
the clock was off when the cache began: a box whose clock was ahead then (bad RTC, GPS glitch,
a wrong ``date -s``) and was set back by NTP refused every signed command issued at the true
time, ``cancel_broadcast`` included, until the true time passed it; one that was behind let
older commands in. The floor is written again, on the clocks of the moment, when a step has
moved it (at the next claim, or at close). Across a reboot nothing monotonic compares: a floor
written in another boot is taken as written, never moved by this boot's steps, but never after
this open + ``max_clock_skew`` either (that part is this boot's, and moves with its steps): the
lost cache was lost before this one began, and every command this one accepted is in it.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from gateway.bootclock import Stamp, on_clock_now, this_boot
from gateway.commands.names import Reason
from gateway.fsutil import ensure_dir, move_database_aside, open_checked_database, write_transaction

log = logging.getLogger("fieldgate.commands")

# ``meta.floor`` is the floor as last written (an earlier version's whole floor, and what it reads still);
# ``floor_clocks`` the clocks it was written on (wall, monotonic, boot) and the floor as first noted.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (
    kid TEXT NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL, expires REAL NOT NULL,
    PRIMARY KEY (kid, kind, value)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_expires ON seen (expires);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value REAL NOT NULL);
CREATE TABLE IF NOT EXISTS floor_clocks (
    one INTEGER PRIMARY KEY CHECK (one = 1), wall REAL NOT NULL, mono REAL NOT NULL, boot TEXT NOT NULL,
    noted REAL NOT NULL);
"""
_MOVED_S = 1.0  # a floor moved by a step at least this much is written again (slewing moves it by less)


class ReplayRefused(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class ReplayCache:
    def __init__(self, path: Path, *, max_entries: int, max_clock_skew: float,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 boot: str | None = None) -> None:
        self.path = path
        self.max_entries = max_entries
        self.skew = max_clock_skew
        self._clock = clock
        self._monotonic = monotonic
        self.boot = boot or this_boot()
        self._lock = threading.Lock()  # claim() runs in a worker thread
        self._db: sqlite3.Connection | None = None
        # The floor is the earlier of two: ``_fixed``, one written in another boot (or a bare wall floor of an
        # earlier version), taken as written (inf: none); ``_moment``, one of this boot, on the wall clock as it
        # read at ``_anchor``, moved by every step since. ``_written``: the file holds ``_moment`` and its clocks.
        # ``noted`` is the floor as the cache first wrote it, before any step moved it (for the refusal).
        self._fixed = math.inf
        self._moment = math.inf
        self._anchor = Stamp(0.0, None, None)
        self._written = False
        self.noted = 0.0
        self._open()

    @property
    def floor(self) -> float:
        """Commands issued before this (on the wall clock as it reads now) are refused."""
        return min(self._fixed, self._moment_at(self._clock(), self._monotonic()))

    def _moment_at(self, wall: float, mono: float) -> float:
        moved = on_clock_now(self._anchor, self.boot, wall, mono)
        return self._moment if moved is None else self._moment + (moved - self._anchor.at)

    # ---- opening, with recovery ----

    def _open(self) -> None:
        ensure_dir(self.path.parent)
        fresh = not self.path.exists()
        try:
            self._db = self._connect()
        except sqlite3.OperationalError:
            # A full disk, an I/O error, a lock: nothing says the file is damaged. Moving it aside would throw
            # away the claims it holds for a fresh cache the same disk cannot write either (the router tries
            # the plane again later).
            raise
        except sqlite3.DatabaseError as exc:
            aside = move_database_aside(self.path, int(self._clock()))
            log.error("command replay cache %s is unreadable (%s); moved to %s, starting a new one",
                      self.path, exc, aside)
            fresh = True
            self._db = self._connect()
        row = self._db.execute("SELECT value FROM meta WHERE key = 'floor'").fetchone()
        clocks = self._db.execute("SELECT wall, mono, boot, noted FROM floor_clocks").fetchone()
        wall, mono = self._clock(), self._monotonic()
        # The lost cache was lost before this one began, so before this open: the floor is never later than this
        # open + skew, whatever the clock read when it was written (every command accepted since is in the file).
        self._anchor, self._moment = Stamp(wall, mono, self.boot), wall + self.skew
        if fresh or row is None:
            self.noted = self._moment
            log.warning("command replay cache %s is new: commands issued before %s are refused",
                        self.path, _utc(self._moment))
        else:
            written = float(row[0])
            self.noted = written if clocks is None else float(clocks[3])
            stamp = None if clocks is None else Stamp(float(clocks[0]), float(clocks[1]), str(clocks[2]))
            kept = None if stamp is None else on_clock_now(stamp, self.boot, wall, mono)
            if stamp is None or kept is None:  # another boot's floor, or an earlier version's: as written
                self._fixed = written
            elif written + (kept - stamp.at) < self._moment:  # this boot's: every step since drops out
                self._anchor, self._moment, self._written = stamp, written, True
        self._follow_steps(self._db)

    def _follow_steps(self, db: sqlite3.Connection) -> float:
        """The floor on the clock as it reads now. When this boot's part is the floor, it is written with today's
        clocks once a step has moved it (or it has just become the floor), so that the next start reads it right,
        also after a reboot that follows before any other write (a power cut): there it is read as written."""
        wall, mono = self._clock(), self._monotonic()
        moment = self._moment_at(wall, mono)
        if moment < self._fixed and (not self._written or abs(moment - self._moment) >= _MOVED_S):
            self._anchor, self._moment = Stamp(wall, mono, self.boot), moment
            try:
                with write_transaction(db):  # both or neither: a floor read with other clocks would be off by a step
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('floor', ?)", (moment,))
                    db.execute("INSERT OR REPLACE INTO floor_clocks VALUES (1, ?, ?, ?, ?)",
                               (wall, mono, self.boot, self.noted))
                self._written = True
            except sqlite3.Error as exc:  # tried again at the next claim; meanwhile the floor here is right
                log.error("command replay cache %s: the floor was not written: %s", self.path, exc)
        return min(self._fixed, moment)

    def _connect(self) -> sqlite3.Connection:
        return open_checked_database(self.path, _SCHEMA, check_same_thread=False)  # claim() runs in a worker thread

    # ---- the one operation ----

    def claim(self, kid: str, command_id: int, nonce: bytes, issued_at: float, expires: float) -> None:
        """Remember the command, or raise ReplayRefused if it (or its nonce) was seen, or cannot be proven new."""
        keys = [("id", str(command_id))] + ([("nonce", nonce.hex())] if nonce else [])
        with self._lock:
            db = self._db
            if db is None:
                raise ReplayRefused(Reason.REPLAY_CACHE_UNAVAILABLE, "replay cache is closed")
            floor = self._follow_steps(db)
            if issued_at < floor:
                raise ReplayRefused(Reason.ISSUED_BEFORE_CACHE, self._before_floor(issued_at, floor))
            try:
                with write_transaction(db):
                    self._claim_locked(db, kid, command_id, keys, expires)
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

    def _before_floor(self, issued_at: float, floor: float) -> str:
        """What the platform's operator needs: when the command was issued, where the floor lies on the gateway's
        clock now, why there is one, and whether the clock was stepped since the floor was noted."""
        shift = floor - self.noted
        step = ""
        if shift <= -_MOVED_S:
            step = (f"; the gateway's clock has been set back, by {-shift:.0f} s at least, since the floor was "
                    f"noted as {_utc(self.noted)}")
        elif shift >= _MOVED_S:
            step = f"; the gateway's clock has been set forward by {shift:.0f} s since the floor was noted"
        return (f"issued {_utc(issued_at)}, before this gateway's replay cache begins ({_utc(floor)} on the "
                f"gateway's clock now{step}): the cache is new or was lost, and a command issued before it may "
                "have run already; reissue the command, issued at or after that time")

    def __len__(self) -> int:
        with self._lock:
            if self._db is None:
                return 0
            (count,) = self._db.execute("SELECT COUNT(*) FROM seen").fetchone()
            return int(count)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._follow_steps(self._db)  # a clean shutdown before a reboot takes the steps of this boot along
                self._db.close()
                self._db = None




def _utc(moment: float) -> str:
    return f"{dt.datetime.fromtimestamp(moment, dt.UTC):%Y-%m-%d %H:%M:%S} UTC"
