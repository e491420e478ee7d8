"""The trend store: one SQLite file of per-point minute buckets and alarm transitions.

Writes come in batches (``write``: one transaction for everything since the last flush) and the file
runs in WAL mode with ``synchronous=NORMAL``: few, sequential writes, which is what an SD card lasts
longest on. Blocking: call it from a thread (``HistoryService`` does).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MINUTE = 60

_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets(
  point TEXT NOT NULL, minute INTEGER NOT NULL, n INTEGER NOT NULL, total REAL NOT NULL,
  low REAL, high REAL, last REAL, bad INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY(point, minute)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS buckets_by_minute ON buckets(minute);
CREATE TABLE IF NOT EXISTS alarms(
  id INTEGER PRIMARY KEY, ts REAL NOT NULL, kind TEXT NOT NULL, rule TEXT NOT NULL, alarm_id TEXT NOT NULL,
  severity TEXT NOT NULL, by TEXT, points TEXT NOT NULL);
"""


@dataclass(slots=True)
class Bucket:
    """One point's samples in one minute: count of good numeric values, their sum, min, max, last; bad samples."""

    n: int = 0
    total: float = 0.0
    low: float | None = None
    high: float | None = None
    last: float | None = None
    bad: int = 0

    def add(self, value: float | None) -> None:
        if value is None:
            self.bad += 1
            return
        self.n += 1
        self.total += value
        self.low = value if self.low is None else min(self.low, value)
        self.high = value if self.high is None else max(self.high, value)
        self.last = value

    def merge(self, other: Bucket) -> None:
        self.n += other.n
        self.total += other.total
        self.bad += other.bad
        if other.low is not None:
            self.low = other.low if self.low is None else min(self.low, other.low)
        if other.high is not None:
            self.high = other.high if self.high is None else max(self.high, other.high)
        if other.last is not None:
            self.last = other.last

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None


@dataclass(frozen=True, slots=True)
class AlarmRow:
    ts: float
    kind: str  # raised / acknowledged / cleared
    rule: str
    alarm_id: str
    severity: str
    by: str | None
    points: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"ts": self.ts, "kind": self.kind, "rule": self.rule, "alarm_id": self.alarm_id,
                "severity": self.severity, "by": self.by, "points": list(self.points)}


class TrendStore:
    def __init__(self, path: Path, max_bytes: int, max_alarm_rows: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.max_alarm_rows = max_alarm_rows
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def write(self, buckets: dict[tuple[str, int], Bucket], alarms: Iterable[AlarmRow], oldest_kept: float) -> None:
        """One transaction: merge the buckets, add the alarm rows, delete what is too old or too much."""
        with self._lock:
            db = self._db
            db.execute("BEGIN")
            try:
                for (point, minute), b in buckets.items():
                    row = db.execute("SELECT n, total, low, high, last, bad FROM buckets WHERE point=? AND minute=?",
                                     (point, minute)).fetchone()
                    merged = Bucket(*row) if row else Bucket()
                    merged.merge(b)
                    db.execute("INSERT OR REPLACE INTO buckets VALUES (?,?,?,?,?,?,?,?)",
                               (point, minute, merged.n, merged.total, merged.low, merged.high, merged.last,
                                merged.bad))
                db.executemany("INSERT INTO alarms(ts, kind, rule, alarm_id, severity, by, points) "
                               "VALUES (?,?,?,?,?,?,?)",
                               [(a.ts, a.kind, a.rule, a.alarm_id, a.severity, a.by, json.dumps(list(a.points)))
                                for a in alarms])
                db.execute("DELETE FROM buckets WHERE minute < ?", (int(oldest_kept // MINUTE),))
                db.execute("DELETE FROM alarms WHERE ts < ? OR id <= (SELECT MAX(id) FROM alarms) - ?",
                           (oldest_kept, self.max_alarm_rows))
                self._shrink_to_size(db)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def _shrink_to_size(self, db: sqlite3.Connection) -> None:
        """Over max_bytes (live pages, not free ones): drop the oldest tenth of the minutes until under."""
        for _ in range(10):
            pages, free, size = (db.execute(f"PRAGMA {name}").fetchone()[0]
                                 for name in ("page_count", "freelist_count", "page_size"))
            if (pages - free) * size <= self.max_bytes:
                return
            low, high = db.execute("SELECT MIN(minute), MAX(minute) FROM buckets").fetchone()
            if low is None or low >= high:
                return
            db.execute("DELETE FROM buckets WHERE minute < ?", (low + max(1, (high - low) // 10),))

    def buckets(self, point: str, first_minute: int, last_minute: int) -> dict[int, Bucket]:
        with self._lock:
            rows = self._db.execute(
                "SELECT minute, n, total, low, high, last, bad FROM buckets WHERE point=? AND minute BETWEEN ? AND ?",
                (point, first_minute, last_minute)).fetchall()
        return {minute: Bucket(*rest) for minute, *rest in rows}

    def alarms(self, since: float, limit: int) -> list[AlarmRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT ts, kind, rule, alarm_id, severity, by, points FROM alarms WHERE ts >= ? "
                "ORDER BY id DESC LIMIT ?", (since, limit)).fetchall()
        return [AlarmRow(ts, kind, rule, alarm_id, severity, by, tuple(json.loads(points)))
                for ts, kind, rule, alarm_id, severity, by, points in reversed(rows)]

    def size_bytes(self) -> int:
        with self._lock:
            pages, size = (self._db.execute(f"PRAGMA {name}").fetchone()[0] for name in ("page_count", "page_size"))
        return int(pages * size)
