"""What the centre bridge must not forget across a restart, in one small SQLite file (``state_file``).

* the publications decoded but not yet confirmed by the broker, as the exact bytes to publish: after a
  restart the same bytes go out (a record decoded again later could differ, e.g. in its ``hist`` mark);
* per gateway number, the seqs the broker confirmed (the (gateway, seq) de-duplication), and those still
  owed an ACK: a copy resent after a restart is ACKed, not published a second time;
* per gateway number, the platform's commands waiting for the card's turn (the broker's QoS 1 delivery
  was acknowledged when they were queued: only this file still has them).

Every change is one transaction, ``synchronous=FULL`` (the receiver delivers a few messages a minute per
card: one fsync each is cheap). Bounded like the bridge's memory: ``max_queued`` publications,
``dedup_per_gateway`` seqs seen and ``owed_max`` seqs owed per gateway, ``commands_max`` commands per
gateway; the bridge trims its memory and this file together. An unreadable file is moved aside (logged)
and a new one begun: the gateways resend what is not ACKed, so that costs duplicates, not records.
Keyed by gateway number, not card: a gateway given a new card in the config keeps its state.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from gateway.fsutil import ensure_dir, move_database_aside, open_checked_database

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

    def _connect(self) -> sqlite3.Connection:
        return open_checked_database(self.path, _SCHEMA)

    def close(self) -> None:
        self._db.close()

    # ---- reading it back at start -------------------------------------------------------------------

    def queue(self) -> list[StoredPublication]:
        rows = self._db.execute("SELECT id, gw, topic, payload, seqs, expiry FROM queue ORDER BY id").fetchall()
        return [StoredPublication(int(row), int(gw), str(topic), bytes(payload),
                                  tuple(int(s) for s in str(seqs).split(",") if s), expiry)
                for row, gw, topic, payload, seqs, expiry in rows]

    def gateways(self) -> dict[int, GatewayState]:
        out: dict[int, GatewayState] = {}
        for gw, seq in self._db.execute("SELECT gw, seq FROM seen ORDER BY rowid"):
            out.setdefault(int(gw), GatewayState()).seen.append(int(seq))
        for gw, seq in self._db.execute("SELECT gw, seq FROM owed ORDER BY gw, seq"):
            out.setdefault(int(gw), GatewayState()).owed.append(int(seq))
        for row, gw, payload in self._db.execute("SELECT id, gw, payload FROM commands ORDER BY id"):
            out.setdefault(int(gw), GatewayState()).commands.append((int(row), bytes(payload)))
        return out

    # ---- changes, each one transaction --------------------------------------------------------------

    def enqueue(self, gateway: int, topic: str, payload: bytes, seqs: Iterable[int], expiry_s: int | None,
                drop: int | None) -> int:
        """Store a publication (after deleting the queue row ``drop``, the oldest, when the queue is full)."""
        with self._db:
            if drop is not None:
                self._db.execute("DELETE FROM queue WHERE id = ?", (drop,))
            cursor = self._db.execute("INSERT INTO queue (gw, topic, payload, seqs, expiry) VALUES (?, ?, ?, ?, ?)",
                                      (gateway, topic, payload, ",".join(map(str, seqs)), expiry_s))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def published(self, row: int, gateway: int, seqs: Iterable[int], forget_seen: Iterable[int],
                  forget_owed: Iterable[int]) -> None:
        """The broker has publication ``row``: its seqs are seen and owed an ACK (the oldest beyond the bounds
        forgotten), in one transaction with the row's removal."""
        seqs = list(seqs)
        with self._db:
            self._db.execute("DELETE FROM queue WHERE id = ?", (row,))
            self._db.executemany("DELETE FROM seen WHERE gw = ? AND seq = ?", [(gateway, s) for s in seqs])
            self._db.executemany("INSERT INTO seen (gw, seq) VALUES (?, ?)", [(gateway, s) for s in seqs])
            self._db.executemany("DELETE FROM seen WHERE gw = ? AND seq = ?", [(gateway, s) for s in forget_seen])
            self._owe(gateway, seqs, forget_owed)

    def owe(self, gateway: int, seqs: Iterable[int], forget: Iterable[int]) -> None:
        with self._db:
            self._owe(gateway, seqs, forget)

    def _owe(self, gateway: int, seqs: Iterable[int], forget: Iterable[int]) -> None:
        self._db.executemany("INSERT OR IGNORE INTO owed VALUES (?, ?)", [(gateway, s) for s in seqs])
        self._db.executemany("DELETE FROM owed WHERE gw = ? AND seq = ?", [(gateway, s) for s in forget])

    def acked(self, gateway: int, seqs: Iterable[int]) -> None:
        with self._db:
            self._db.executemany("DELETE FROM owed WHERE gw = ? AND seq = ?", [(gateway, s) for s in seqs])

    def add_command(self, gateway: int, payload: bytes, drop: int | None) -> int:
        with self._db:
            if drop is not None:
                self._db.execute("DELETE FROM commands WHERE id = ?", (drop,))
            cursor = self._db.execute("INSERT INTO commands (gw, payload) VALUES (?, ?)", (gateway, payload))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def command_sent(self, row: int) -> None:
        with self._db:
            self._db.execute("DELETE FROM commands WHERE id = ?", (row,))

    def keep_only(self, gateways: Iterable[int]) -> None:
        """Forget the rows of gateway numbers no longer in the config (so the file stays bounded by it)."""
        keep = sorted(set(gateways))
        marks = ",".join("?" for _ in keep) or "NULL"
        with self._db:
            for table in ("queue", "seen", "owed", "commands"):
                self._db.execute(f"DELETE FROM {table} WHERE gw NOT IN ({marks})", keep)
