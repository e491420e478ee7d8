"""The journal's SQLite tables: records, one ``pending`` row per link that owes a record, meta.

One connection, used only from the journal's thread. Knows how rows are written, read,
acknowledged and deleted; what to drop and when is ``capacity.py``'s business.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterable, Iterator, Sequence

from gateway.journal.files import JournalFiles
from gateway.journal.records import MAX_SEQ, JournalRecord, encode_body
from gateway.shared import Journalable, RecordClass

log = logging.getLogger("fieldgate.journal")

SEQ_BLOCK = 10_000  # sequence numbers reserved (fsync'd to <journal>.seq) ahead of use
_CHUNK = 500  # seqs per DELETE ... IN (...) statement
_CLASS = {int(c): c for c in RecordClass}
_ALL_CLASSES = ",".join(str(int(c)) for c in RecordClass)


class RecordStore:
    def __init__(self, db: sqlite3.Connection, links: dict[str, set[RecordClass]], files: JournalFiles) -> None:
        self.db = db
        self.links = links
        self.files = files
        self.counts: dict[RecordClass, int] = dict.fromkeys(RecordClass, 0)
        # Per class: the links that carry it (their pending rows), computed once, not per record.
        self.carriers = {cls: [link for link, classes in links.items() if cls in classes] for cls in RecordClass}
        self.page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
        self._synchronous = ""
        self.last = self.last_seq()  # highest seq handed out
        self.reserved = files.read_reserved()
        if self.reserved < self.last:
            self._reserve(self.last + SEQ_BLOCK)
        self._recount()
        self._release_unconfigured_links()

    def _reserve(self, upto: int) -> None:
        self.files.write_reserved(upto)
        self.reserved = upto

    def reserve_for(self, n: int) -> None:
        """Make sure the next ``n`` seqs are durably reserved before they are used."""
        if self.last + n + 1 > self.reserved:
            self._reserve(self.last + n + SEQ_BLOCK)

    def _recount(self) -> None:
        self.counts = dict.fromkeys(RecordClass, 0)
        for cls, n in self.db.execute("SELECT cls, count(*) FROM records GROUP BY cls"):
            self.counts[RecordClass(cls)] = int(n)

    def _release_unconfigured_links(self) -> None:
        # A link removed from the config would otherwise pin its records forever.
        known = list(self.links)
        marks = ",".join("?" * len(known)) or "''"
        stale = self.db.execute(f"SELECT count(*) FROM pending WHERE link NOT IN ({marks})", known).fetchone()[0]
        if stale:
            log.warning("journal: %d pending rows for links no longer configured are released", stale)
            with self.tx(durable=False):
                self.db.execute(f"DELETE FROM pending WHERE link NOT IN ({marks})", known)
                self.db.execute(f"DELETE FROM records WHERE NOT EXISTS (SELECT 1 FROM pending p WHERE "
                                f"p.link IN ({marks}) AND p.cls = records.cls AND p.seq = records.seq)", known)
                self._recount()

    @contextlib.contextmanager
    def tx(self, durable: bool) -> Iterator[None]:
        """One transaction; ``durable`` commits with synchronous=FULL (the WAL is fsync'd)."""
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

    # ----- writing -----------------------------------------------------------------------------

    def insert(self, items: Sequence[tuple[RecordClass, Journalable]], created: float) -> list[int]:
        """Inside a transaction: the records and their pending rows; returns their seqs.

        The seqs are assigned here, above the highest ever handed out (``sqlite_sequence``, read inside
        this transaction), so the whole batch is one ``executemany`` per table, not a statement per record.
        """
        first = self.last_seq() + 1
        seqs = list(range(first, first + len(items)))
        self.db.executemany(
            "INSERT INTO records (seq, cls, point, created, body) VALUES (?, ?, ?, ?, ?)",
            [(seq, int(cls), reading.point, created, encode_body(reading.to_json()))
             for seq, (cls, reading) in zip(seqs, items, strict=True)])
        pending = [(link, int(cls), seq) for seq, (cls, _) in zip(seqs, items, strict=True)
                   for link in self.carriers[cls]]
        self.db.executemany("INSERT INTO pending (link, cls, seq) VALUES (?, ?, ?)", pending)
        # A record no link carries is not kept (nobody would ever acknowledge it); its seq stays used.
        orphans = [(seq,) for seq, (cls, _) in zip(seqs, items, strict=True) if not self.carriers[cls]]
        if orphans:
            self.db.executemany("DELETE FROM records WHERE seq = ?", orphans)
        return seqs

    def accounted(self, items: Sequence[tuple[RecordClass, Journalable]], seqs: list[int]) -> None:
        """Once ``insert`` committed: the last seq and the per-class counts."""
        if seqs:
            self.last = max(self.last, seqs[-1])
        for cls, _ in items:
            if self.carriers[cls]:
                self.counts[cls] += 1

    def delete(self, seqs: list[int], cls: RecordClass) -> None:
        """Inside a transaction: the records (all of class ``cls``) and every pending row of them."""
        for start in range(0, len(seqs), _CHUNK):
            chunk = seqs[start:start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for link in self.links:
                self.db.execute(f"DELETE FROM pending WHERE link = ? AND cls = ? AND seq IN ({marks})",
                                [link, int(cls), *chunk])
            self.db.execute(f"DELETE FROM records WHERE seq IN ({marks})", chunk)

    def ack(self, link: str, seqs: Sequence[int]) -> None:
        """``link``'s pending rows for ``seqs`` go, then the records no link owes any more."""
        others = [other for other in self.links if other != link]
        owed_elsewhere = "".join(
            " AND NOT EXISTS (SELECT 1 FROM pending p WHERE p.link = ? AND p.cls = records.cls "
            "AND p.seq = records.seq)" for _ in others)
        with self.tx(durable=False):
            for start in range(0, len(seqs), _CHUNK):
                chunk = list(seqs[start:start + _CHUNK])
                marks = ",".join("?" * len(chunk))
                # The class of each seq is not known here: pending's key is (link, cls, seq), so name them all.
                self.db.execute(f"DELETE FROM pending WHERE link = ? AND cls IN ({_ALL_CLASSES}) AND seq IN ({marks})",
                                [link, *chunk])
                gone = self.db.execute(
                    f"DELETE FROM records WHERE seq IN ({marks}){owed_elsewhere} RETURNING cls",
                    [*chunk, *others]).fetchall()
                for (cls,) in gone:
                    self.counts[_CLASS[cls]] -= 1

    # ----- moving rows between journals (the degraded journal merged back, gateway/journal/fallback.py) ----

    def export_rows(self, after: int, limit: int) -> list[tuple[int, int, str, float, str, list[str]]]:
        """(seq, cls, point, created, body, links that still owe it) of records above ``after``, oldest first."""
        rows = self.db.execute("SELECT seq, cls, point, created, body FROM records WHERE seq > ? ORDER BY seq "
                               "LIMIT ?", (after, limit)).fetchall()
        if not rows:
            return []
        owed: dict[int, list[str]] = {}
        for link, seq in self.db.execute("SELECT link, seq FROM pending WHERE seq BETWEEN ? AND ?",
                                         (rows[0][0], rows[-1][0])):
            owed.setdefault(int(seq), []).append(str(link))
        return [(int(seq), int(cls), str(point), float(created), str(body), owed.get(int(seq), []))
                for seq, cls, point, created, body in rows]

    def adopt(self, rows: Sequence[tuple[int, int, str, float, str, list[str]]]) -> int:
        """Inside a transaction: records of another journal under **their own seqs** (a record already sent
        from there is sent again with the same seq), owed only by links that are configured here. The caller
        raises the seq floor (``raise_seq``) above every seq the other journal handed out."""
        pending = [(link, cls, seq) for seq, cls, _p, _c, _b, links in rows for link in links if link in self.links]
        owing = {seq for _link, _cls, seq in pending}
        kept = [(seq, cls, point, created, body) for seq, cls, point, created, body, _ in rows if seq in owing]
        self.db.executemany("INSERT OR IGNORE INTO records (seq, cls, point, created, body) VALUES (?, ?, ?, ?, ?)",
                            kept)
        self.db.executemany("INSERT OR IGNORE INTO pending (link, cls, seq) VALUES (?, ?, ?)", pending)
        return len(kept)

    def raise_seq(self, floor: int) -> None:
        """Inside a transaction: the next seq handed out is above ``floor``."""
        if self.db.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'records'",
                           (floor,)).rowcount == 0:
            self.db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('records', ?)", (floor,))

    def set_meta(self, key: str, value: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def meta_counters(self, prefix: str) -> dict[str, int]:
        rows = self.db.execute("SELECT key, value FROM meta WHERE key LIKE ?", (prefix + "%",))
        return {key.removeprefix(prefix): int(value) for key, value in rows}

    def meta_int(self, key: str) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    # ----- reading -----------------------------------------------------------------------------

    def owed(self, link: str, cls: RecordClass, after: int, upto: int, limit: int) -> list[JournalRecord]:
        """What ``link`` still owes of class ``cls`` with after < seq <= upto, oldest first."""
        if limit <= 0 or self.counts[cls] <= 0:
            return []  # a link runner asks for 9 (class, range)s per pull; usually only telemetry is held
        rows = self.db.execute(
            "SELECT r.seq, r.cls, r.body, r.created FROM pending p JOIN records r ON r.seq = p.seq "
            "WHERE p.link = ? AND p.cls = ? AND p.seq > ? AND p.seq <= ? ORDER BY p.seq LIMIT ?",
            (link, int(cls), after, upto, limit),
        ).fetchall()
        return [JournalRecord(seq, _CLASS[c], None, created, body) for seq, c, body, created in rows]

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

    def oldest(self, cls: RecordClass, limit: int, before: float | None = None) -> list[int]:
        """Seqs of the ``limit`` oldest records of ``cls`` (only those created before ``before``).

        Through pending's key: a live record has a pending row of at least one configured link (every
        link is asked, not only those whose class filter admits ``cls`` now: a filter may have changed).
        """
        links = list(self.links)
        if not links or limit <= 0:
            return []
        union = " UNION ".join("SELECT seq FROM pending WHERE link = ? AND cls = ?" for _ in links)
        args: list[object] = [x for link in links for x in (link, int(cls))]
        if before is None:
            query = f"{union} ORDER BY 1 LIMIT ?"  # a compound select: SQLite merges the ordered key ranges
        else:
            query = (f"SELECT o.seq FROM ({union}) o JOIN records r ON r.seq = o.seq WHERE r.created < ? "
                     f"ORDER BY o.seq LIMIT ?")
            args.append(before)
        return [seq for (seq,) in self.db.execute(query, (*args, limit))]

    def oldest_created(self, cls: RecordClass | None = None) -> float | None:
        """When the oldest record (of ``cls``) was taken."""
        if cls is None:
            row = self.db.execute("SELECT created FROM records ORDER BY seq LIMIT 1").fetchone()
            return None if row is None else float(row[0])
        first = self.oldest(cls, 1)
        if not first:
            return None
        row = self.db.execute("SELECT created FROM records WHERE seq = ?", (first[0],)).fetchone()
        return None if row is None else float(row[0])

    def oldest_owed_created(self, link: str) -> float | None:
        """When the oldest record ``link`` owes was taken."""
        oldest: float | None = None
        for cls in RecordClass:
            row = self.db.execute(
                "SELECT r.created FROM pending p JOIN records r ON r.seq = p.seq "
                "WHERE p.link = ? AND p.cls = ? ORDER BY p.seq LIMIT 1", (link, int(cls))).fetchone()
            if row is not None:
                oldest = row[0] if oldest is None else min(oldest, row[0])
        return oldest

    def telemetry_after(self, seq: int, limit: int) -> list[tuple[int, str, float]]:
        """(seq, point, created) of the telemetry records after ``seq``, oldest first."""
        return self.db.execute(
            "SELECT seq, point, created FROM records WHERE cls = ? AND seq > ? ORDER BY seq LIMIT ?",
            (int(RecordClass.TELEMETRY), seq, limit)).fetchall()

    def depth(self, link: str | None = None) -> int:
        if link is None:
            return sum(self.counts.values())
        return int(self.db.execute("SELECT count(*) FROM pending WHERE link = ?", (link,)).fetchone()[0])

    def last_seq(self) -> int:
        row = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'records'").fetchone()
        return int(row[0]) if row else 0

    # ----- size --------------------------------------------------------------------------------

    def used_bytes(self) -> int:
        pages = int(self.db.execute("PRAGMA page_count").fetchone()[0])
        free = int(self.db.execute("PRAGMA freelist_count").fetchone()[0])
        return (pages - free) * self.page_size

    def file_bytes(self) -> int:
        return int(self.db.execute("PRAGMA page_count").fetchone()[0]) * self.page_size

    def checkpoint(self) -> None:
        """Copy the WAL into the database and truncate it."""
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.checkpoint()
        self.db.close()
