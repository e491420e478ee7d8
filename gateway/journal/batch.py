"""One committed batch of one class as stored: its records' texts, their seqs, and per-link ack bitmaps.

A batch row's ``body`` is a JSON array of the records' bodies (compact JSON, as ``encode_body`` made
them), one record per line: ``[\\n{...},\\n{...}\\n]``. Compact JSON never holds a raw newline, so
the texts come back with one ``split`` (no JSON parsing), and SQLite's ``json_each`` can still read the
array (the ``records`` view, docs/durability.md). ``codec`` 1 is that text compressed with zlib
(``journal.compress``); the view shows only uncompressed batches.

A batch's seqs are ``lo .. lo + n - 1`` (``seqs`` NULL) or listed as a JSON array (a commit with records
of several classes, a batch merged from the temporary journal, a batch thinned by the capacity rules).
Acks are a bitmap per link: bit ``i`` set = the link's far side acknowledged record ``i``.
"""

from __future__ import annotations

import bisect
import json
import sqlite3
import zlib
from collections import OrderedDict
from collections.abc import Sequence

# (seq, cls, created, body text, links that still owe it): a record moved between journals.
Row = tuple[int, int, float, str, list[str]]

PLAIN, ZLIB = 0, 1
ZLIB_LEVEL = 1  # levels 1..9 wrote within 6 % of each other per reading (bench/RESULTS.md); 1 is the cheapest
ROW_RECORDS = 4096  # most records in one row: a bitmap of 512 bytes, a bounded decode
SPAN = 1 << 16  # hi - lo of a row stays below this: seqs are found by a bounded scan of ``hi``


def encode(texts: Sequence[str], codec: int) -> str | bytes:
    text = "[\n" + ",\n".join(texts) + "\n]"
    return text if codec == PLAIN else zlib.compress(text.encode(), ZLIB_LEVEL)


def crc(body: str | bytes) -> int:
    """CRC-32 of a body as stored: most of a batch lives in overflow pages, whose content quick_check does
    not look at, so a damaged body is found by this (files.py, at open)."""
    return zlib.crc32(body.encode() if isinstance(body, str) else body)


def damaged(db: sqlite3.Connection) -> str:
    """Why the batch rows of ``db`` are damaged ("" if their bodies match their CRCs)."""
    for hi, stored, body in db.execute("SELECT hi, crc, CAST(body AS BLOB) FROM batches"):
        if crc(body) != stored:
            return f"batch {hi}: body does not match its CRC"
    return ""


def decode(body: str | bytes, codec: int) -> list[str]:
    text = body if isinstance(body, str) else (zlib.decompress(body).decode() if codec == ZLIB else body.decode())
    return text[2:-2].split(",\n")


def seqs_column(seqs: Sequence[int]) -> str | None:
    """NULL when the seqs are ``lo .. lo + n - 1``, else their JSON array."""
    return None if seqs[-1] - seqs[0] + 1 == len(seqs) else json.dumps(list(seqs), separators=(",", ":"))


def seqs_of(lo: int, n: int, column: str | None) -> list[int]:
    return list(range(lo, lo + n)) if column is None else [int(s) for s in json.loads(column)]


def mask_of(acked: bytes | None) -> int:
    return int.from_bytes(acked, "little") if acked else 0


def acked_column(mask: int, n: int) -> bytes | None:
    return mask.to_bytes((n + 7) // 8, "little") if mask else None


def full(n: int) -> int:
    return (1 << n) - 1


def chunks(seqs: Sequence[int]) -> list[tuple[int, int]]:
    """(start, end) index ranges of ``seqs`` (ascending) that fit one row: at most ROW_RECORDS, span < SPAN."""
    out: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(seqs) + 1):
        if i == len(seqs) or i - start >= ROW_RECORDS or seqs[i] - seqs[start] >= SPAN:
            out.append((start, i))
            start = i
    return out


class Batch:
    """A decoded batch row (cached by the store)."""

    __slots__ = ("_index", "cls", "created", "seqs", "texts")

    def __init__(self, cls: int, created: float, seqs: list[int], texts: list[str]) -> None:
        self.cls = cls
        self.created = created
        self.seqs = seqs
        self.texts = texts
        self._index: dict[int, int] | None = None

    def position(self, seq: int) -> int | None:
        if self.seqs[-1] - self.seqs[0] + 1 == len(self.seqs):
            return seq - self.seqs[0] if self.seqs[0] <= seq <= self.seqs[-1] else None
        if self._index is None:
            self._index = {s: i for i, s in enumerate(self.seqs)}
        return self._index.get(seq)

    def start_after(self, seq: int) -> int:
        """Index of the first record with a seq above ``seq``."""
        return bisect.bisect_right(self.seqs, seq)


class BatchCache:
    """Decoded batches, most recently used last, at most ``limit`` records in all (bounded memory)."""

    def __init__(self, limit: int = 20_000) -> None:
        self.limit = limit
        self._held = 0
        self._batches: OrderedDict[int, Batch] = OrderedDict()

    def get(self, hi: int) -> Batch | None:
        batch = self._batches.get(hi)
        if batch is not None:
            self._batches.move_to_end(hi)
        return batch

    def put(self, hi: int, batch: Batch) -> None:
        self.drop(hi)
        self._batches[hi] = batch
        self._held += len(batch.seqs)
        while self._held > self.limit and len(self._batches) > 1:
            _, old = self._batches.popitem(last=False)
            self._held -= len(old.seqs)

    def drop(self, hi: int) -> None:
        old = self._batches.pop(hi, None)
        if old is not None:
            self._held -= len(old.seqs)

    def clear(self) -> None:
        self._batches.clear()
        self._held = 0


def owed_seqs(db: sqlite3.Connection, link: str | None = None) -> list[int]:
    """The seqs some link (or ``link``) still owes, from any connection to a journal file (read-only is
    enough), schema 1 files too (their ``pending`` table). For tools and tests, not the daemon's path."""
    where, args = (" WHERE link = ?", (link,)) if link is not None else ("", ())
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "pending" in tables:
        return sorted({int(seq) for (seq,) in db.execute("SELECT seq FROM pending" + where, args)})
    owed: set[int] = set()
    for acked, lo, n, column in db.execute(
            "SELECT o.acked, b.lo, b.n, b.seqs FROM owed o JOIN batches b ON b.hi = o.hi" + where.replace(
                "link", "o.link"), args):
        mask = mask_of(acked)
        owed.update(seq for i, seq in enumerate(seqs_of(lo, n, column)) if not mask >> i & 1)
    return sorted(owed)
