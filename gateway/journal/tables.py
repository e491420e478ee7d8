"""The journal's SQLite tables: one ``batches`` row per committed batch of a class, ``owed`` per link, meta.

One connection, used only from the journal's thread. Knows how rows are written, read,
acknowledged and deleted; what to drop and when is ``capacity.py``'s business; the row format is
``batch.py``'s. A record is *held* while at least one link still owes it (its bit is clear in that
link's ``owed`` row); ``counts`` are the records held, by class.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import logging
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from operator import itemgetter, methodcaller
from typing import Any

from gateway.journal import batch as rows
from gateway.journal.batch import Batch, BatchCache, Row, Run
from gateway.journal.files import JournalFiles
from gateway.journal.migrate import migrate_legacy
from gateway.journal.records import (
    MAX_SEQ,
    RECORDS_VIEW,
    SCHEMA_VERSION,
    JournalRecord,
    SeqsNotReserved,
    encode_bodies,
)
from gateway.shared import Journalable, RecordClass

log = logging.getLogger("fieldgate.journal")

# Sequence numbers reserved (fsync'd to <journal>.seq) ahead of use. Large, so that a full card leaves a long
# run of seqs already reserved (half a block: over 4 minutes at 2 000 records/s); a gap this size after a
# damaged file is harmless (seqs are 63-bit).
SEQ_BLOCK = 1_000_000
_CLASS = {int(c): c for c in RecordClass}
_FIRST, _SECOND, _TO_JSON = itemgetter(0), itemgetter(1), methodcaller("to_json")

# (hi, cls, n, positions of the seqs asked for, as a bitmap)
Located = tuple[int, int, int, int]


class RecordStore:
    def __init__(self, db: sqlite3.Connection, links: dict[str, set[RecordClass]], files: JournalFiles,
                 codec: int = rows.PLAIN) -> None:
        self.db = db
        self.links = links
        self.files = files
        self.codec = codec
        self.cache = BatchCache()
        self.counts: dict[RecordClass, int] = dict.fromkeys(RecordClass, 0)
        # Per class: the links that carry it (their owed rows), computed once, not per record.
        self.carriers = {cls: [link for link, classes in links.items() if cls in classes] for cls in RecordClass}
        self.page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
        self._synchronous = ""
        self.reserve_failing = False  # the last attempt to reserve the next block failed (logged once)
        migrate_legacy(self)
        self._make_records_view()
        db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        self.last = self.last_seq()  # highest seq handed out
        self.reserved = files.read_reserved()
        if self.reserved < self.last:
            self._reserve(self.last + SEQ_BLOCK)
        self._recount()
        self._release_unconfigured_links()

    def _make_records_view(self) -> None:
        # Written only when it differs (an older release's view): an open on a full card writes nothing here.
        row = self.db.execute("SELECT sql FROM sqlite_master WHERE type = 'view' AND name = 'records'").fetchone()
        if row is not None and row[0] == RECORDS_VIEW.strip().rstrip(";"):
            return
        self.db.executescript(("DROP VIEW IF EXISTS records;" if row is not None else "") + RECORDS_VIEW)

    def _reserve(self, upto: int) -> None:
        self.files.write_reserved(upto)
        self.reserved = upto

    def reserve_for(self, n: int) -> None:
        """Make sure the next ``n`` seqs are durably reserved before they are used.

        The next block is reserved once half of this one is used, so a reservation that cannot be written
        (a full or failing card) leaves seqs that are already durable: they are used meanwhile, and only
        when they run out does the commit fail, as a full disk (``SeqsNotReserved``).
        """
        if self.last + n + 1 <= self.reserved - SEQ_BLOCK // 2:
            return
        try:
            self._reserve(self.last + n + SEQ_BLOCK)
        except OSError as exc:
            if self.last + n + 1 > self.reserved:
                raise SeqsNotReserved(exc.errno, f"next seqs not reserved ({exc.strerror or exc})") from exc
            if not self.reserve_failing:
                log.warning("journal: next seq block not reserved (%s); %d seqs left in this one",
                            exc, self.reserved - self.last)
            self.reserve_failing = True
            return
        self.reserve_failing = False

    def _recount(self) -> None:
        """Records held, by class: per batch, those whose bit is clear in at least one owed row."""
        held: dict[int, tuple[int, int, int]] = {}  # hi -> (cls, n, bits clear in some row)
        for hi, cls, n, acked in self.db.execute(
                "SELECT o.hi, o.cls, b.n, o.acked FROM owed o JOIN batches b ON b.hi = o.hi"):
            _, _, clear = held.get(hi, (cls, n, 0))
            held[hi] = (cls, n, clear | (rows.full(n) & ~rows.mask_of(acked)))
        self.counts = dict.fromkeys(RecordClass, 0)
        for cls, _n, clear in held.values():
            self.counts[_CLASS[cls]] += clear.bit_count()

    def _release_unconfigured_links(self) -> None:
        # A link removed from the config would otherwise pin its records forever.
        known = list(self.links)
        marks = ",".join("?" * len(known)) or "''"
        stale = self.db.execute(f"SELECT count(*) FROM owed WHERE link NOT IN ({marks})", known).fetchone()[0]
        if stale:
            log.warning("journal: %d owed rows for links no longer configured are released", stale)
            with self.tx(durable=False):
                self.db.execute(f"DELETE FROM owed WHERE link NOT IN ({marks})", known)
                self.db.execute(f"DELETE FROM batches WHERE NOT EXISTS (SELECT 1 FROM owed o WHERE "
                                f"o.link IN ({marks}) AND o.cls = batches.cls AND o.hi = batches.hi)", known)
            self.cache.clear()
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
            self.cache.clear()  # rows it holds may have been rewritten by the rolled-back transaction
            raise

    # ----- writing -----------------------------------------------------------------------------

    def insert(self, items: Sequence[tuple[RecordClass, Journalable]], created: float) -> list[int]:
        """Inside a transaction: the records, one batch row per class, and the owed rows; returns their seqs.

        The seqs are assigned here, above the highest ever handed out (read inside this transaction), in
        the order of ``items``; a record no link carries is not kept (nobody would acknowledge it), its seq
        stays used.
        """
        first = self.last_seq() + 1
        seqs = list(range(first, first + len(items)))
        classes = set(map(_FIRST, items))
        if len(classes) == 1:  # the usual commit (telemetry only): no grouping, no Python step per record
            cls = classes.pop()
            if self.carriers[cls]:
                self._write_bodies(int(cls), created, seqs, list(map(_TO_JSON, map(_SECOND, items))), cls)
        else:
            by_class: dict[RecordClass, tuple[list[int], list[dict[str, Any]]]] = {}
            for seq, (cls, reading) in zip(seqs, items, strict=True):
                if self.carriers[cls]:
                    group = by_class.setdefault(cls, ([], []))
                    group[0].append(seq)
                    group[1].append(reading.to_json())
            for cls, (cls_seqs, bodies) in by_class.items():
                self._write_bodies(int(cls), created, cls_seqs, bodies, cls)
        if seqs:
            self.raise_seq(seqs[-1])
        return seqs

    def _write_bodies(self, cls: int, created: float, seqs: Sequence[int], bodies: list[dict[str, Any]],
                      carried: RecordClass) -> None:
        self._write_batches(cls, created, seqs, lambda start, end: encode_bodies(bodies[start:end]),
                            dict.fromkeys(self.carriers[carried], 0))

    def _write_batches(self, cls: int, created: float, seqs: Sequence[int], inner: Callable[[int, int], str],
                       acked: dict[str, int]) -> None:
        """Rows for ``seqs`` (ascending, one class); ``inner(start, end)``: the texts of records ``start ..
        end - 1`` joined by ``,\\n``; ``acked``: per owing link, the bitmap over all of ``seqs`` of what it
        does not owe."""
        batch_rows, owed_rows = [], []
        for start, end in rows.chunks(seqs):
            part = seqs[start:end]
            body = rows.wrap(inner(start, end), self.codec)
            batch_rows.append((part[-1], part[0], cls, end - start, created, rows.seqs_column(part), self.codec,
                               rows.crc(body), body))
            for link, mask in acked.items():
                bits = (mask >> start) & rows.full(end - start)
                if bits != rows.full(end - start):
                    owed_rows.append((link, cls, part[-1], bits.bit_count(), rows.acked_column(bits, end - start)))
        self.db.executemany("INSERT INTO batches (hi, lo, cls, n, created, seqs, codec, crc, body) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", batch_rows)
        self.db.executemany("INSERT INTO owed (link, cls, hi, nacked, acked) VALUES (?, ?, ?, ?, ?)", owed_rows)

    def accounted(self, items: Sequence[tuple[RecordClass, Journalable]], seqs: list[int]) -> None:
        """Once ``insert`` committed: the last seq and the per-class counts."""
        if seqs:
            self.last = max(self.last, seqs[-1])
        for cls, n in Counter(map(_FIRST, items)).items():
            if self.carriers[cls]:
                self.counts[cls] += n

    def _batch(self, hi: int) -> Batch:
        cached = self.cache.get(hi)
        if cached is not None:
            return cached
        lo, cls, n, created, seqs, codec, body = self.db.execute(
            "SELECT lo, cls, n, created, seqs, codec, body FROM batches WHERE hi = ?", (hi,)).fetchone()
        batch = Batch(cls, created, rows.seqs_of(lo, n, seqs), rows.inner(body, codec))
        self.cache.put(hi, batch)
        return batch

    def _locate(self, seqs: Iterable[int]) -> list[Located]:
        """The batch rows holding ``seqs`` (those still stored), with the positions of the seqs in each.

        The seqs are sorted once and cut where two are ``SPAN`` or more apart (a row spans less, so no row holds
        seqs of two such groups): each group reads only the rows of its own key range, so an ack of backlog
        and live seqs together does not walk every row in between (the whole backlog). Each row takes its
        slice of the group by bisection; a row whose seqs are ``lo .. hi`` (every row but a thinned or merged
        one) gets its positions by arithmetic, its body is not read (an ack of a run of seqs, what a PUBACK
        brings, costs one shift, not a lookup per seq).
        """
        left = sorted(set(seqs))
        found: list[Located] = []
        start = 0
        for end in range(1, len(left) + 1):
            if end == len(left) or left[end] - left[end - 1] >= rows.SPAN:
                self._locate_group(left[start:end], found)
                start = end
        return found

    def _locate_group(self, group: list[int], found: list[Located]) -> None:
        remaining, top = len(group), group[-1]
        cursor = self.db.execute("SELECT hi, lo, cls, n FROM batches WHERE hi >= ? AND hi < ? ORDER BY hi",
                                 (group[0], top + rows.SPAN))
        try:
            for hi, lo, cls, n in cursor:
                if not remaining:
                    break
                if lo > top:
                    continue
                run = group[bisect.bisect_left(group, lo):bisect.bisect_right(group, hi)]
                if not run:
                    continue
                mask = 0
                if hi - lo + 1 == n:  # seqs lo .. hi: position = seq - lo
                    if run[-1] - run[0] == len(run) - 1:
                        mask = rows.full(len(run)) << (run[0] - lo)
                    else:
                        for seq in run:
                            mask |= 1 << (seq - lo)
                else:
                    batch = self._batch(hi)
                    for seq in run:
                        position = batch.position(seq)
                        if position is not None:
                            mask |= 1 << position
                if mask:
                    remaining -= mask.bit_count()
                    found.append((hi, cls, n, mask))
        finally:
            cursor.close()

    def _owed_masks(self, cls: int, hi: int) -> dict[str, int]:
        """Per link owing something of batch ``hi``: its ack bitmap (one key lookup per link)."""
        out: dict[str, int] = {}
        for link in self.links:
            row = self.db.execute("SELECT acked FROM owed WHERE link = ? AND cls = ? AND hi = ?",
                                  (link, cls, hi)).fetchone()
            if row is not None:
                out[link] = rows.mask_of(row[0])
        return out

    def _held_mask(self, masks: dict[str, int], n: int) -> int:
        """Records of a batch some link still owes."""
        held = 0
        for mask in masks.values():
            held |= rows.full(n) & ~mask
        return held

    def _set_acked(self, link: str, cls: int, hi: int, mask: int, n: int) -> None:
        if mask == rows.full(n):
            self.db.execute("DELETE FROM owed WHERE link = ? AND cls = ? AND hi = ?", (link, cls, hi))
        else:
            self.db.execute("UPDATE owed SET acked = ?, nacked = ? WHERE link = ? AND cls = ? AND hi = ?",
                            (rows.acked_column(mask, n), mask.bit_count(), link, cls, hi))

    def _drop_batch(self, cls: int, hi: int) -> None:
        """Inside a transaction: the row of batch ``hi`` and every owed row of it."""
        for link in self.links:
            self.db.execute("DELETE FROM owed WHERE link = ? AND cls = ? AND hi = ?", (link, cls, hi))
        self.db.execute("DELETE FROM batches WHERE hi = ?", (hi,))
        self.cache.drop(hi)

    def delete(self, seqs: list[int], cls: RecordClass) -> int:
        """Inside a transaction: the records ``seqs`` (all of class ``cls``) taken out of their batches
        (a batch left empty goes, a batch left partly is rewritten); returns how many of them were held."""
        removed = 0
        for hi, row_cls, _n, doomed in self._locate(seqs):
            batch = self._batch(hi)
            n = len(batch.seqs)
            masks = self._owed_masks(row_cls, hi)
            removed += (doomed & self._held_mask(masks, n)).bit_count()
            keep = [i for i in range(n) if not doomed >> i & 1]
            if not keep:
                self._drop_batch(row_cls, hi)
                continue
            kept_seqs = [batch.seqs[i] for i in keep]
            body = rows.encode([batch.texts[i] for i in keep], self.codec)
            self.db.execute("UPDATE batches SET lo = ?, n = ?, seqs = ?, codec = ?, crc = ?, body = ? WHERE hi = ?",
                            (kept_seqs[0], len(keep), rows.seqs_column(kept_seqs), self.codec, rows.crc(body), body,
                             hi))
            self.cache.drop(hi)
            for link, mask in masks.items():
                kept_mask = sum(1 << j for j, i in enumerate(keep) if mask >> i & 1)
                self._set_acked(link, row_cls, hi, kept_mask, len(keep))
            if not self._owed_masks(row_cls, hi):
                self._drop_batch(row_cls, hi)
        self.counts[cls] -= removed
        return removed

    def drop_batches(self, his: Sequence[int]) -> tuple[int, int]:
        """Inside a transaction: whole batches; returns (records held among them, their highest seq)."""
        removed, top = 0, 0
        for hi in his:
            row = self.db.execute("SELECT cls, n FROM batches WHERE hi = ?", (hi,)).fetchone()
            if row is None:
                continue
            cls, n = int(row[0]), int(row[1])
            held = self._held_mask(self._owed_masks(cls, hi), n).bit_count()
            self.counts[_CLASS[cls]] -= held
            removed += held
            top = max(top, hi)
            self._drop_batch(cls, hi)
        return removed, top

    def ack(self, link: str, seqs: Sequence[int]) -> None:
        """``link``'s bits for ``seqs`` are set; a fully acknowledged owed row goes, then a batch no link owes."""
        with self.tx(durable=False):
            for hi, cls, n, positions in self._locate(seqs):
                masks = self._owed_masks(cls, hi)
                if link not in masks:
                    continue
                old = masks[link]
                new = old | positions
                if new == old:
                    continue
                others = rows.full(n)
                for other, mask in masks.items():
                    if other != link:
                        others &= mask
                self.counts[_CLASS[cls]] -= (new & ~old & others).bit_count()
                if new == rows.full(n) and len(masks) == 1:
                    self._drop_batch(cls, hi)
                else:
                    self._set_acked(link, cls, hi, new, n)

    # ----- moving rows between journals (the degraded journal merged back, a schema 1 journal migrated) ----

    def export_rows(self, after: int, limit: int) -> tuple[list[Row], int]:
        """Records of the batches above ``after`` (whole batches, about ``limit`` records, oldest first) and
        the ``after`` of the next call; the links of a row are those that still owe it."""
        out: list[Row] = []
        cursor = after
        for (hi,) in self.db.execute("SELECT hi FROM batches WHERE hi > ? ORDER BY hi", (after,)).fetchall():
            if len(out) >= limit:
                break
            batch = self._batch(hi)
            masks = self._owed_masks(batch.cls, hi)
            for i, seq in enumerate(batch.seqs):
                owing = [link for link, mask in masks.items() if not mask >> i & 1]
                out.append((seq, batch.cls, batch.created, batch.texts[i], owing))
            cursor = hi
        return out, cursor

    def adopt(self, records: Sequence[Row]) -> int:
        """Inside a transaction: records of another journal under **their own seqs** (a record already sent
        from there is sent again with the same seq), owed only by links that are configured here, none
        that is stored here already. The caller raises the seq floor (``raise_seq``) above every seq the
        other journal handed out. Returns how many were kept."""
        present = {seq for hi, _cls, _n, mask in self._locate(r[0] for r in records)
                   for i, seq in enumerate(self._batch(hi).seqs) if mask >> i & 1}
        kept = sorted((r for r in records if r[0] not in present and any(link in self.links for link in r[4])),
                      key=lambda r: r[0])
        start = 0
        for i in range(1, len(kept) + 1):  # one batch per run of records of one class and commit time
            if i < len(kept) and (kept[i][1], kept[i][2]) == (kept[start][1], kept[start][2]):
                continue
            run = kept[start:i]
            acked: dict[str, int] = {}
            for j, (_seq, _cls, _created, _text, owing) in enumerate(run):
                for link in self.links:
                    acked.setdefault(link, 0)
                    if link not in owing:
                        acked[link] |= 1 << j
            owing_links = {link: mask for link, mask in acked.items() if mask != rows.full(len(run))}
            self._write_batches(run[0][1], run[0][2], [r[0] for r in run], _joined([r[3] for r in run]), owing_links)
            start = i
        return len(kept)

    def raise_seq(self, floor: int) -> None:
        """Inside a transaction: the next seq handed out is above ``floor``."""
        if self.db.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'records'",
                           (floor,)).rowcount == 0:
            self.db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('records', ?)", (floor,))

    def set_meta(self, key: str, value: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def meta_counters(self, prefix: str) -> dict[str, int]:
        rows_ = self.db.execute("SELECT key, value FROM meta WHERE key LIKE ?", (prefix + "%",))
        return {key.removeprefix(prefix): int(value) for key, value in rows_}

    def meta_int(self, key: str) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    # ----- reading -----------------------------------------------------------------------------

    def owed(self, link: str, cls: RecordClass, after: int, upto: int, limit: int) -> list[JournalRecord]:
        """What ``link`` still owes of class ``cls`` with after < seq <= upto, oldest first."""
        return [record for run in self.owed_runs(link, cls, after, upto, limit) for record in run.records()]

    def owed_runs(self, link: str, cls: RecordClass, after: int, upto: int, limit: int) -> list[Run]:
        """``owed`` as runs of records of one batch (no object per record: bench/RESULTS.md, fifth pass)."""
        if limit <= 0 or self.counts[cls] <= 0:
            return []  # a link runner asks for 9 (class, range)s per pull; usually only telemetry is held
        out: list[Run] = []
        cursor = self.db.execute("SELECT o.hi, o.acked, b.lo FROM owed o JOIN batches b ON b.hi = o.hi "
                                 "WHERE o.link = ? AND o.cls = ? AND o.hi > ? ORDER BY o.hi", (link, int(cls), after))
        try:
            for hi, acked, lo in cursor:
                if lo > upto:
                    break
                batch = self._batch(hi)
                seqs = batch.seqs
                start = batch.start_after(after)
                stop = len(seqs) if seqs[-1] <= upto else bisect.bisect_right(seqs, upto, start)
                for first, end in rows.unacked(rows.mask_of(acked), len(seqs), start, stop):
                    end = min(end, first + limit)
                    out.append(Run(batch, cls, first, end))
                    limit -= end - first
                    if not limit:
                        return out
                if stop < len(seqs):
                    return out  # a seq above ``upto``: no further row is needed
        finally:
            cursor.close()
        return out

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

    def delivered_elsewhere(self, link: str, primaries: Sequence[str], classes: Iterable[int],
                            limit: int) -> list[int]:
        """Seqs ``link`` still owes (of ``classes``) that none of ``primaries`` owes any more."""
        out: list[int] = []
        for cls in classes:
            for hi, acked, n, lo, seqs in self.db.execute(
                    "SELECT o.hi, o.acked, b.n, b.lo, b.seqs FROM owed o JOIN batches b ON b.hi = o.hi "
                    "WHERE o.link = ? AND o.cls = ? ORDER BY o.hi", (link, cls)).fetchall():
                primary_owes = 0
                for primary in primaries:
                    row = self.db.execute("SELECT acked FROM owed WHERE link = ? AND cls = ? AND hi = ?",
                                          (primary, cls, hi)).fetchone()
                    if row is not None:
                        primary_owes |= rows.full(n) & ~rows.mask_of(row[0])
                done = rows.full(n) & ~rows.mask_of(acked) & ~primary_owes
                if done:  # the seqs only when needed: no batch body is read for this
                    out += [seq for i, seq in enumerate(rows.seqs_of(lo, n, seqs)) if done >> i & 1]
                if len(out) >= limit:
                    return out[:limit]
        return out

    def oldest_batches(self, cls: RecordClass, want: int, before: float | None = None) -> list[int]:
        """The oldest batches of ``cls`` (only those taken before ``before``) holding about ``want`` records.

        Through owed's key: a live batch has an owed row of at least one configured link (every link is
        asked, not only those whose class filter admits ``cls`` now: a filter may have changed).
        """
        links = list(self.links)
        if not links or want <= 0:
            return []
        union = " UNION ".join("SELECT hi FROM owed WHERE link = ? AND cls = ?" for _ in links)
        args: list[object] = [x for link in links for x in (link, int(cls))]
        # A compound select: SQLite merges the ordered key ranges.
        query = f"SELECT o.hi, b.n FROM ({union}) o JOIN batches b ON b.hi = o.hi"
        if before is not None:
            query += " WHERE b.created < ?"
            args.append(before)
        out, total = [], 0
        cursor = self.db.execute(query + " ORDER BY o.hi", args)
        try:
            for hi, n in cursor:
                if total >= want:
                    break
                out.append(int(hi))
                total += int(n)
        finally:
            cursor.close()
        return out

    def oldest_created(self, cls: RecordClass | None = None) -> float | None:
        """When the oldest record (of ``cls``) was taken."""
        if cls is None:
            row = self.db.execute("SELECT created FROM batches ORDER BY hi LIMIT 1").fetchone()
            return None if row is None else float(row[0])
        first = self.oldest_batches(cls, 1)
        if not first:
            return None
        return float(self.db.execute("SELECT created FROM batches WHERE hi = ?", (first[0],)).fetchone()[0])

    def oldest_owed_created(self, link: str) -> float | None:
        """When the oldest record ``link`` owes was taken."""
        oldest: float | None = None
        for cls in RecordClass:
            row = self.db.execute(
                "SELECT b.created FROM owed o JOIN batches b ON b.hi = o.hi "
                "WHERE o.link = ? AND o.cls = ? ORDER BY o.hi LIMIT 1", (link, int(cls))).fetchone()
            if row is not None:
                oldest = row[0] if oldest is None else min(oldest, row[0])
        return oldest

    def telemetry_after(self, seq: int, limit: int) -> list[tuple[int, str, float]]:
        """(seq, point, created) of the telemetry records after ``seq``, oldest first (whole batches)."""
        out: list[tuple[int, str, float]] = []
        for (hi,) in self.db.execute("SELECT hi FROM batches WHERE hi > ? AND cls = ? ORDER BY hi",
                                     (seq, int(RecordClass.TELEMETRY))).fetchall():
            if len(out) >= limit:
                break
            batch = self._batch(hi)
            out += [(s, str(json.loads(text).get("point", "")), batch.created)
                    for s, text in zip(batch.seqs, batch.texts, strict=True) if s > seq]
        return out

    def depth(self, link: str | None = None) -> int:
        if link is None:
            return sum(self.counts.values())
        row = self.db.execute("SELECT sum(b.n - o.nacked) FROM owed o JOIN batches b ON b.hi = o.hi "
                              "WHERE o.link = ?", (link,)).fetchone()
        return int(row[0] or 0)

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


def _joined(texts: list[str]) -> Callable[[int, int], str]:
    """``_write_batches``' ``inner`` for records whose texts are stored already (another journal's)."""
    return lambda start, end: ",\n".join(texts[start:end])
