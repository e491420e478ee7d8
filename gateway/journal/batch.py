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
from itertools import repeat
from operator import itemgetter, methodcaller

from gateway.journal.records import JournalRecord
from gateway.shared import RecordClass

# (seq, cls, created, body text, links that still owe it): a record moved between journals.
Row = tuple[int, int, float, str, list[str]]

PLAIN, ZLIB = 0, 1
ZLIB_LEVEL = 1  # levels 1..9 wrote within 6 % of each other per reading (bench/RESULTS.md); 1 is the cheapest
ROW_RECORDS = 4096  # most records in one row: a bitmap of 512 bytes, a bounded decode
SPAN = 1 << 16  # hi - lo of a row stays below this: seqs are found by a bounded scan of ``hi``


def encode(texts: Sequence[str], codec: int) -> str | bytes:
    return wrap(",\n".join(texts), codec)


def wrap(inner: str, codec: int) -> str | bytes:
    """A body as stored from its records' texts joined by ``,\\n``."""
    text = "[\n" + inner + "\n]"
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
    return split(inner(body, codec))


def inner(body: str | bytes, codec: int) -> str:
    """The records' texts of a body as stored, still joined by ``,\\n`` (the array's brackets cut off)."""
    text = body if isinstance(body, str) else (zlib.decompress(body).decode() if codec == ZLIB else body.decode())
    return text[2:-2]


def split(text: str) -> list[str]:
    return text.split(",\n")


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
    if not seqs:
        return []
    if seqs[-1] - seqs[0] + 1 == len(seqs):  # lo .. hi (every commit's seqs): ROW_RECORDS at a time
        return [(start, min(start + ROW_RECORDS, len(seqs))) for start in range(0, len(seqs), ROW_RECORDS)]
    out: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(seqs) + 1):
        if i == len(seqs) or i - start >= ROW_RECORDS or seqs[i] - seqs[start] >= SPAN:
            out.append((start, i))
            start = i
    return out


# What ``wire`` adds to each record: the seq as the object's last member (docs/payloads.md, the record form).
_SEQ_SUFFIX = ',"seq":%d}'
_CUT_SEQ, _BEFORE_SEQ = methodcaller("rpartition", ',"seq":'), itemgetter(0)


class Batch:
    """A decoded batch row (cached by the store; not changed once made, so the event loop may read it).

    ``texts`` (one string per record) and ``wire`` (the records as a link sends them) are made from the
    body's text when first asked for, each by a few C-level passes over the whole batch.
    """

    __slots__ = ("_index", "_text", "_texts", "_wire", "cls", "created", "seqs")

    def __init__(self, cls: int, created: float, seqs: list[int], text: str) -> None:
        self.cls = cls
        self.created = created
        self.seqs = seqs
        self._text: str | None = text  # the records' texts joined by ",\n" (``inner``); None once ``wire`` is made
        self._texts: list[str] | None = None
        self._wire: list[str] | None = None
        self._index: dict[int, int] | None = None

    @property
    def texts(self) -> list[str]:
        if self._texts is None:
            text = self._text
            if text is not None:
                self._texts = split(text)
            else:  # only the wire form is kept: each record without the seq it added
                assert self._wire is not None
                self._texts = list(map(str.__add__, map(_BEFORE_SEQ, map(_CUT_SEQ, self._wire)), repeat("}")))
        return self._texts

    def wire(self) -> list[str] | None:
        """Every record with its seq added as its last member (``{...,"seq":N}``); None for a batch whose records
        cannot be spliced so (a body that holds ``"seq":`` or ``"hist":`` already, an empty object): those go
        record by record (payloads.py). Made by C-level passes over the whole batch (split, map), none per
        record in Python: ~0.25 µs a record, once per batch read (bench/RESULTS.md, fifth pass)."""
        if self._wire is None:
            text = self._text
            if text is None or not text.endswith("}") or '"seq":' in text or '"hist":' in text:
                return None
            heads = text[:-1].split("},\n")  # each record without its closing brace
            if len(heads) != len(self.seqs) or "{" in heads:
                return None  # a record that is not an object, or an empty one ({} takes no comma)
            self._wire = list(map(str.__add__, heads, map(_SEQ_SUFFIX.__mod__, self.seqs)))
            if self._texts is None:
                self._text = None  # not held twice in the cache: ``texts`` are made back from the wire form
        return self._wire

    def position(self, seq: int) -> int | None:
        if self.seqs[-1] - self.seqs[0] + 1 == len(self.seqs):
            return seq - self.seqs[0] if self.seqs[0] <= seq <= self.seqs[-1] else None
        if self._index is None:
            self._index = {s: i for i, s in enumerate(self.seqs)}
        return self._index.get(seq)

    def start_after(self, seq: int) -> int:
        """Index of the first record with a seq above ``seq``."""
        return bisect.bisect_right(self.seqs, seq)


class Run:
    """Records ``start .. end - 1`` of one batch, oldest first: what a pull hands a link runner instead of a
    ``JournalRecord`` per record (bench/RESULTS.md, fifth pass); ``records()`` gives those when a profile
    needs them."""

    __slots__ = ("batch", "cls", "end", "start")

    def __init__(self, batch: Batch, cls: RecordClass, start: int, end: int) -> None:
        self.batch = batch
        self.cls = cls
        self.start = start
        self.end = end

    def __len__(self) -> int:
        return self.end - self.start

    @property
    def created(self) -> float:
        return self.batch.created

    @property
    def seqs(self) -> list[int]:
        return self.batch.seqs[self.start:self.end]

    @property
    def first(self) -> int:
        return self.batch.seqs[self.start]

    @property
    def last(self) -> int:
        return self.batch.seqs[self.end - 1]

    def split(self, at: int) -> tuple[Run, Run]:
        """The first ``at`` records and the rest."""
        cut = self.start + at
        return Run(self.batch, self.cls, self.start, cut), Run(self.batch, self.cls, cut, self.end)

    def wire(self) -> list[str] | None:
        """The records with their seqs (``Batch.wire``)."""
        made = self.batch.wire()
        return None if made is None else made[self.start:self.end]

    def records(self) -> list[JournalRecord]:
        cls, created = self.cls, self.batch.created
        return [JournalRecord(seq, cls, None, created, text) for seq, text in
                zip(self.seqs, self.batch.texts[self.start:self.end], strict=True)]


def unacked(mask: int, n: int, start: int, stop: int) -> list[tuple[int, int]]:
    """The runs (start, end) of clear bits of ``mask`` (an ack bitmap over ``n`` records) within ``start .. stop
    - 1``: a few big-integer operations per run, none per record."""
    clear = full(n) & ~mask & (full(stop) ^ full(start))
    out: list[tuple[int, int]] = []
    i = start
    while True:
        bits = clear >> i
        if not bits:
            return out
        i += (bits & -bits).bit_length() - 1  # past the acknowledged records
        rest = ~(clear >> i)
        end = i + (rest & -rest).bit_length() - 1
        out.append((i, end))
        i = end


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
