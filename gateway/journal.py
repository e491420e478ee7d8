"""The journal: a durable SQLite (WAL) outbox between acquisition and every link.

A record is *taken* when its transaction has committed; with ``synchronous=FULL``
the WAL is fsync'd at every commit, so it then survives a process kill and a power
cut. Each record gets the next per-gateway sequence number (AUTOINCREMENT: never
reused, even after deletion, so seq is monotonic across restarts). For every link
whose class filter admits the record a ``pending`` row is written in the same
transaction; the record is deleted when the last link acknowledges it.

All SQLite work runs on one dedicated thread, so the event loop never blocks on
fsync and the connection is only ever used from the thread that opened it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gateway.shared import Progress, Reading, RecordClass

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
CREATE TABLE IF NOT EXISTS pending (
    link TEXT NOT NULL,
    cls  INTEGER NOT NULL,
    seq  INTEGER NOT NULL,
    PRIMARY KEY (link, cls, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pending_by_seq ON pending (seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class JournalRecord:
    seq: int
    cls: RecordClass
    body: dict[str, Any]
    created: float


class Journal:
    """Blocking journal API; use it through ``AsyncJournal`` from the event loop."""

    def __init__(self, path: Path, links: dict[str, set[RecordClass]]) -> None:
        self.path = path
        self.links = links
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def append(self, items: Sequence[tuple[RecordClass, Reading]]) -> list[int]:
        """Commit ``items`` in one transaction (one fsync); returns their sequence numbers."""
        seqs: list[int] = []
        created = time.time()
        with self._transaction():
            for cls, reading in items:
                body = json.dumps(reading.to_json(), separators=(",", ":"))
                cursor = self.db.execute(
                    "INSERT INTO records (cls, point, created, body) VALUES (?, ?, ?, ?)",
                    (int(cls), reading.point, created, body),
                )
                seq = int(cursor.lastrowid or 0)
                seqs.append(seq)
                self.db.executemany(
                    "INSERT INTO pending (link, cls, seq) VALUES (?, ?, ?)",
                    [(link, int(cls), seq) for link, classes in self.links.items() if cls in classes],
                )
        return seqs

    def pending(self, link: str, limit: int, exclude: Iterable[int] = ()) -> list[JournalRecord]:
        """Oldest-first within priority order (alarm first) of what ``link`` still has to carry."""
        skip = set(exclude)
        rows = self.db.execute(
            "SELECT r.seq, r.cls, r.body, r.created FROM pending p JOIN records r ON r.seq = p.seq "
            "WHERE p.link = ? ORDER BY p.cls, p.seq LIMIT ?",
            (link, limit + len(skip)),
        ).fetchall()
        out = [
            JournalRecord(seq, RecordClass(cls), json.loads(body), created)
            for seq, cls, body, created in rows
            if seq not in skip
        ]
        return out[:limit]

    def ack(self, link: str, seqs: Sequence[int]) -> None:
        """The link's far side acknowledged ``seqs``: drop its pending rows, then records nobody needs."""
        with self._transaction():
            self.db.executemany("DELETE FROM pending WHERE link = ? AND seq = ?", [(link, s) for s in seqs])
            self.db.executemany(
                "DELETE FROM records WHERE seq = ? AND NOT EXISTS (SELECT 1 FROM pending WHERE seq = ?)",
                [(s, s) for s in seqs],
            )

    def depth(self, link: str | None = None) -> int:
        if link is None:
            return int(self.db.execute("SELECT count(*) FROM records").fetchone()[0])
        return int(self.db.execute("SELECT count(*) FROM pending WHERE link = ?", (link,)).fetchone()[0])

    def last_seq(self) -> int:
        row = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()
        return int(row[0]) if row else 0

    def _transaction(self) -> _Tx:
        return _Tx(self.db)


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self.db.execute("COMMIT" if exc_type is None else "ROLLBACK")


class AsyncJournal:
    """The journal's owner in the event loop: a bounded queue and one group-committing writer.

    Telemetry is queued and committed in batches (everything queued at that moment,
    within ``commit_window``); ``append_now`` commits synchronously and returns the seq,
    for alarms and evidence that must be durable before anything acts on them.
    """

    def __init__(self, journal: Journal, queue_size: int = 10_000, commit_window: float = 0.2) -> None:
        self.journal = journal
        self.commit_window = commit_window
        self._queue: asyncio.Queue[tuple[RecordClass, Reading]] = asyncio.Queue(queue_size)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._listeners: list[asyncio.Event] = []
        self.committed = 0

    async def call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def subscribe(self) -> asyncio.Event:
        """An event set whenever new records are committed (links wait on it)."""
        event = asyncio.Event()
        self._listeners.append(event)
        return event

    async def put(self, cls: RecordClass, reading: Reading) -> None:
        """Queue a reading for group commit; waits (back-pressure) when the queue is full."""
        await self._queue.put((cls, reading))

    async def append_now(self, cls: RecordClass, reading: Reading) -> int:
        seqs: list[int] = await self.call(self.journal.append, [(cls, reading)])
        self._notify(1)
        return seqs[0]

    async def run(self, progress: Progress) -> None:
        while True:
            try:
                first = await asyncio.wait_for(self._queue.get(), timeout=5.0)
            except TimeoutError:
                progress.beat()
                continue
            batch = [first]
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
            progress.beat()

    async def flush(self) -> None:
        """Commit everything queued now (shutdown path)."""
        batch: list[tuple[RecordClass, Reading]] = []
        while not self._queue.empty():
            batch.append(self._queue.get_nowait())
        if batch:
            await self._commit(batch)

    async def _commit(self, batch: list[tuple[RecordClass, Reading]]) -> None:
        while True:
            try:
                await self.call(self.journal.append, batch)
                break
            except sqlite3.Error as exc:
                # Disk full or I/O error: keep the batch in memory (bounded by the queue, which now
                # fills and back-pressures the buses) and retry; never drop it silently.
                log.error("journal commit of %d records failed: %s; retrying in 1s", len(batch), exc)
                await asyncio.sleep(1.0)
        self.committed += len(batch)
        self._notify(len(batch))

    def _notify(self, _count: int) -> None:
        for event in self._listeners:
            event.set()

    async def close(self) -> None:
        await self.call(self.journal.close)
        self._executor.shutdown(wait=True)
