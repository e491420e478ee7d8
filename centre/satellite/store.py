"""What the centre bridge must not forget across a restart, in one small SQLite file (``state_file``).

* the publications decoded but not yet confirmed by the broker, as the exact bytes to publish: after a
  restart the same bytes go out (a record decoded again later could differ, e.g. in its ``hist`` mark);
* per gateway number, the seqs the broker confirmed (the (gateway, seq) de-duplication), and those still
  owed an ACK: a copy resent after a restart is ACKed, not published a second time;
* per gateway number, the platform's commands waiting for the card's turn (the broker's QoS 1 delivery
  was acknowledged when they were queued: only this file still has them).

Changes are written by one writer thread, not on the event loop (an fsync on a slow or busy disk takes
from milliseconds to seconds): each change method queues its statements and returns at once; the thread
commits whatever has queued meanwhile as one transaction, ``synchronous=FULL`` (group commit: one fsync
for a burst). Nothing the centre tells the outside waits on memory alone: ``await saved()`` returns
once every change made before it is on disk, and the service awaits it before it publishes a message,
acknowledges a platform command's MQTT delivery or sends an ACK or command to a card (docs/satellite.md).
A change not yet saved when the process dies is one the outside has not been told of: the gateway
resends its message, the card is ACKed again, the command is sent again (the gateway refuses the
replay). Row ids are given here, not by SQLite, so a change need not wait for its INSERT. Bounded like
the bridge's memory: ``max_queued`` publications,
``dedup_per_gateway`` seqs seen and ``owed_max`` seqs owed per gateway, ``commands_max`` commands per
gateway; the bridge trims its memory and this file together. An unreadable file is moved aside (logged)
and a new one begun: the gateways resend what is not ACKed, so that costs duplicates, not records.
Keyed by gateway number, not card: a gateway given a new card in the config keeps its state.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from gateway.fsutil import ensure_dir, move_database_aside, open_checked_database, write_transaction

log = logging.getLogger("fieldgate.satcentre")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY, gw INTEGER NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL,
    seqs TEXT NOT NULL, expiry INTEGER);
CREATE TABLE IF NOT EXISTS seen (gw INTEGER NOT NULL, seq INTEGER NOT NULL, UNIQUE (gw, seq));
CREATE TABLE IF NOT EXISTS owed (gw INTEGER NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (gw, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS commands (id INTEGER PRIMARY KEY, gw INTEGER NOT NULL, payload BLOB NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class StoredPublication:
    row: int
    gateway: int
    topic: str
    payload: bytes
    seqs: tuple[int, ...]
    expiry_s: int | None


@dataclass(slots=True)
class GatewayState:
    """One gateway's rows, oldest first."""

    seen: list[int] = field(default_factory=list)
    owed: list[int] = field(default_factory=list)
    commands: list[tuple[int, bytes]] = field(default_factory=list)  # (row, compact COMMAND)


Change = Callable[[sqlite3.Connection], None]


class _Writer:
    """The thread that applies changes in order, a batch per transaction, and tells who waits when they are on disk.

    Holds no reference to its store: a store dropped without ``close`` (a test) stops it by its finalizer."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self._path = path
        self._pending: queue.SimpleQueue[Change | None] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards committed, failure and the waiters
        self.submitted = 0  # changes queued so far (counted on the submitting thread)
        self.committed = 0  # changes on disk
        self.failure: sqlite3.Error | None = None
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._thread = threading.Thread(target=self._run, name="satcentre-state", daemon=True)
        self._thread.start()

    def submit(self, change: Change) -> None:
        if self.failure is not None:
            raise self.failure
        self.submitted += 1
        self._pending.put(change)

    def stop(self) -> None:
        self._pending.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            batch = [self._pending.get()]
            while not self._pending.empty():
                batch.append(self._pending.get())
            changes = [c for c in batch if c is not None]
            if changes and not self._commit(changes):
                return
            if None in batch:
                return

    def _commit(self, changes: list[Change]) -> bool:
        try:
            with write_transaction(self._db):
                for change in changes:
                    change(self._db)
        except sqlite3.Error as exc:
            log.error("centre state %s: cannot write (%s); the bridge stops", self._path, exc)
            self._tell(failure=exc)
            return False
        self._tell(committed=len(changes))
        return True

    def _tell(self, *, committed: int = 0, failure: sqlite3.Error | None = None) -> None:
        with self._lock:
            self.committed += committed
            self.failure = failure or self.failure
            ready = [w for w in self._waiters if w[0] <= self.committed or self.failure is not None]
            self._waiters = [w for w in self._waiters if w not in ready]
        for _ticket, loop, future in ready:
            loop.call_soon_threadsafe(_settle, future, self.failure)

    async def saved(self) -> None:
        ticket = self.submitted
        with self._lock:
            if self.failure is not None:
                raise self.failure
            if self.committed >= ticket:
                return
            loop = asyncio.get_running_loop()
            future = loop.create_future()
            self._waiters.append((ticket, loop, future))
        await future


def _settle(future: asyncio.Future[None], failure: sqlite3.Error | None) -> None:
    if future.done():
        return  # its waiter was cancelled
    if failure is not None:
        future.set_exception(failure)
    else:
        future.set_result(None)


class CentreStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        ensure_dir(path.parent)
        try:
            self._db = self._connect()
        except sqlite3.DatabaseError as exc:
            aside = move_database_aside(path, int(time.time()))
            log.error("centre state %s is unreadable (%s); moved to %s, starting a new one (the gateways resend "
                      "what is not ACKed: duplicates with the same seq, no loss)", path, exc, aside)
            self._db = self._connect()
        self._next_row = {table: int(self._db.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {table}").fetchone()[0])
                          for table in ("queue", "commands")}
        self._writer: _Writer | None = None  # started by the first change: start-up reads need the connection

    def _connect(self) -> sqlite3.Connection:
        return open_checked_database(self.path, _SCHEMA, check_same_thread=False)  # the writer thread uses it

    def close(self) -> None:
        """Write what is queued, stop the writer, close the file."""
        if self._writer is not None:
            self._writer.stop()
        self._db.close()

    async def saved(self) -> None:
        """Return once every change made before this call is on disk; raise the writer's sqlite3.Error if any."""
        if self._writer is not None:
            await self._writer.saved()

    @property
    def backlog(self) -> int:
        """Changes queued and not yet on disk (the bridge takes no new message beyond a bound)."""
        return 0 if self._writer is None else self._writer.submitted - self._writer.committed

    def _change(self, change: Change) -> None:
        if self._writer is None:
            self._writer = _Writer(self._db, self.path)
            weakref.finalize(self, self._writer.stop)
        self._writer.submit(change)

    def _row(self, table: str) -> int:
        row = self._next_row[table]
        self._next_row[table] = row + 1
        return row

    # ---- reading it back at start (on the caller's thread: before the first change) -------------------

    def _reading(self) -> sqlite3.Connection:
        if self._writer is not None:
            raise RuntimeError("the state file is read back at start only, before the first change")
        return self._db

    def queue(self) -> list[StoredPublication]:
        rows = self._reading().execute("SELECT id, gw, topic, payload, seqs, expiry FROM queue ORDER BY id").fetchall()
        return [StoredPublication(int(row), int(gw), str(topic), bytes(payload),
                                  tuple(int(s) for s in str(seqs).split(",") if s), expiry)
                for row, gw, topic, payload, seqs, expiry in rows]

    def gateways(self) -> dict[int, GatewayState]:
        db = self._reading()
        out: dict[int, GatewayState] = {}
        for gw, seq in db.execute("SELECT gw, seq FROM seen ORDER BY rowid"):
            out.setdefault(int(gw), GatewayState()).seen.append(int(seq))
        for gw, seq in db.execute("SELECT gw, seq FROM owed ORDER BY gw, seq"):
            out.setdefault(int(gw), GatewayState()).owed.append(int(seq))
        for row, gw, payload in db.execute("SELECT id, gw, payload FROM commands ORDER BY id"):
            out.setdefault(int(gw), GatewayState()).commands.append((int(row), bytes(payload)))
        return out

    def keep_only(self, gateways: Iterable[int]) -> None:
        """Forget the rows of gateway numbers no longer in the config (so the file stays bounded by it)."""
        keep = sorted(set(gateways))
        marks = ",".join("?" for _ in keep) or "NULL"
        db = self._reading()
        with write_transaction(db):
            for table in ("queue", "seen", "owed", "commands"):
                db.execute(f"DELETE FROM {table} WHERE gw NOT IN ({marks})", keep)

    # ---- changes: queued for the writer, each one part of a transaction -----------------------------

    def enqueue(self, gateway: int, topic: str, payload: bytes, seqs: Iterable[int], expiry_s: int | None,
                drop: int | None) -> int:
        """Store a publication (after deleting the queue row ``drop``, the oldest, when the queue is full)."""
        row, text = self._row("queue"), ",".join(map(str, seqs))

        def change(db: sqlite3.Connection) -> None:
            if drop is not None:
                db.execute("DELETE FROM queue WHERE id = ?", (drop,))
            db.execute("INSERT INTO queue (id, gw, topic, payload, seqs, expiry) VALUES (?, ?, ?, ?, ?, ?)",
                       (row, gateway, topic, payload, text, expiry_s))

        self._change(change)
        return row

    def published(self, row: int, gateway: int, seqs: Iterable[int], forget_seen: Iterable[int],
                  forget_owed: Iterable[int]) -> None:
        """The broker has publication ``row``: its seqs are seen and owed an ACK (the oldest beyond the bounds
        forgotten), in one transaction with the row's removal."""
        pairs = [(gateway, s) for s in seqs]
        forget_seen_pairs = [(gateway, s) for s in forget_seen]
        forget_owed_pairs = [(gateway, s) for s in forget_owed]

        def change(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM queue WHERE id = ?", (row,))
            db.executemany("DELETE FROM seen WHERE gw = ? AND seq = ?", pairs)
            db.executemany("INSERT INTO seen (gw, seq) VALUES (?, ?)", pairs)
            db.executemany("DELETE FROM seen WHERE gw = ? AND seq = ?", forget_seen_pairs)
            _owe(db, pairs, forget_owed_pairs)

        self._change(change)

    def owe(self, gateway: int, seqs: Iterable[int], forget: Iterable[int]) -> None:
        pairs, forget_pairs = [(gateway, s) for s in seqs], [(gateway, s) for s in forget]
        self._change(lambda db: _owe(db, pairs, forget_pairs))

    def acked(self, gateway: int, seqs: Iterable[int]) -> None:
        pairs = [(gateway, s) for s in seqs]

        def change(db: sqlite3.Connection) -> None:
            db.executemany("DELETE FROM owed WHERE gw = ? AND seq = ?", pairs)

        self._change(change)

    def add_command(self, gateway: int, payload: bytes, drop: int | None) -> int:
        row = self._row("commands")

        def change(db: sqlite3.Connection) -> None:
            if drop is not None:
                db.execute("DELETE FROM commands WHERE id = ?", (drop,))
            db.execute("INSERT INTO commands (id, gw, payload) VALUES (?, ?, ?)", (row, gateway, payload))

        self._change(change)
        return row

    def command_sent(self, row: int) -> None:
        def change(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM commands WHERE id = ?", (row,))

        self._change(change)


def _owe(db: sqlite3.Connection, pairs: list[tuple[int, int]], forget_pairs: list[tuple[int, int]]) -> None:
    db.executemany("INSERT OR IGNORE INTO owed VALUES (?, ?)", pairs)
    db.executemany("DELETE FROM owed WHERE gw = ? AND seq = ?", forget_pairs)


