"""Schema 1 to 2 on open: a journal written before the batch layout keeps its backlog.

Schema 1 held one ``records`` row per record and one ``pending`` row per record and link. A box
upgraded with a backlog must still publish it, under the same seqs: every record some configured link
still owes becomes part of a batch row (records of one class committed together stay together: they
share their commit time), owed by the same links; then the old tables go and the seq floor is kept.
One durable transaction: a crash part-way leaves the old tables as they were, and the next open
migrates again.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Protocol

from gateway.journal.batch import BatchCache, Row

log = logging.getLogger("fieldgate.journal")

_CHUNK = 5000  # records read per step


class Store(Protocol):
    """What of tables.RecordStore the migration uses (that module calls this one)."""

    db: sqlite3.Connection
    cache: BatchCache

    def tx(self, durable: bool) -> AbstractContextManager[None]: ...

    def adopt(self, records: Sequence[Row]) -> int: ...

    def raise_seq(self, floor: int) -> None: ...


def migrate_legacy(store: Store) -> int:
    """Move a schema 1 journal's records into batch rows; returns how many were kept."""
    db = store.db
    tables = {name for (name,) in db.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('records', 'pending')")}
    if "records" not in tables:
        return 0
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()
    floor = int(row[0]) if row else 0
    links = [str(link) for (link,) in db.execute("SELECT DISTINCT link FROM pending")] if "pending" in tables else []
    kept = total = after = 0
    with store.tx(durable=True):
        while chunk := db.execute("SELECT seq, cls, created, body FROM records WHERE seq > ? ORDER BY seq LIMIT ?",
                                  (after, _CHUNK)).fetchall():
            first, last = chunk[0][0], chunk[-1][0]
            owing: dict[int, list[str]] = {}
            for link in links:  # through pending's key (link, cls, seq): it has no other index
                for cls in {int(c) for _s, c, _t, _b in chunk}:
                    for (seq,) in db.execute("SELECT seq FROM pending WHERE link = ? AND cls = ? AND seq BETWEEN ? "
                                             "AND ?", (link, cls, first, last)):
                        owing.setdefault(int(seq), []).append(link)
            kept += store.adopt([(int(seq), int(cls), float(created), str(body), owing.get(int(seq), []))
                                 for seq, cls, created, body in chunk])
            total += len(chunk)
            after = last
        db.execute("DROP TABLE IF EXISTS pending")
        db.execute("DROP TABLE records")  # also takes its sqlite_sequence row: written again just below
        store.raise_seq(max(floor, after))
    store.cache.clear()
    log.warning("journal: migrated from schema 1 to the batch layout: %d of %d records kept (still owed by a "
                "configured link), seqs continue above %d", kept, total, max(floor, after))
    return kept
