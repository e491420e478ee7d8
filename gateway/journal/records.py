"""What the journal holds: its tables, a record read back, which classes go first, its errors."""

from __future__ import annotations

import json
import json.encoder
from typing import Any

from gateway.shared import EventRecord, RecordClass

SCHEMA_VERSION = 2  # PRAGMA user_version; 0/1: one ``records`` row per record and ``pending`` per link (migrate.py)
SCHEMA = """
-- One row per committed batch of one class (gateway/journal/batch.py): hi is its key and its highest seq
-- (AUTOINCREMENT only so that sqlite_sequence exists: its 'records' row is the last seq handed out).
CREATE TABLE IF NOT EXISTS batches (
    hi      INTEGER PRIMARY KEY AUTOINCREMENT,
    lo      INTEGER NOT NULL,
    cls     INTEGER NOT NULL,
    n       INTEGER NOT NULL,
    created REAL NOT NULL,
    seqs    TEXT,
    codec   INTEGER NOT NULL DEFAULT 0,
    crc     INTEGER NOT NULL,
    body    BLOB NOT NULL
);
-- One row per link that still owes something of a batch, with the bitmap of what its far side acknowledged
-- (NULL: nothing yet) and how many bits are set. The row goes when every bit is set, the batch when its
-- last row went. No secondary index: the key (link, cls, hi) serves every query (tables.py).
CREATE TABLE IF NOT EXISTS owed (
    link   TEXT NOT NULL,
    cls    INTEGER NOT NULL,
    hi     INTEGER NOT NULL,
    nacked INTEGER NOT NULL DEFAULT 0,
    acked  BLOB,
    PRIMARY KEY (link, cls, hi)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# Every record of the uncompressed batches, one row each, for anyone reading the file with sqlite3 (tests,
# an engineer on the box): what the ``records`` table of schema 1 held. A record every link acknowledged
# stays visible until the rest of its batch is acknowledged too. Created after a schema 1 journal's
# ``records`` table was migrated away; an older file's view is replaced at open (tables.py).
# A body holding a non-finite float holds it as Python's json writes it (bare NaN / Infinity: what the
# platform gets) and is not JSON to SQLite: such a batch is read with those tokens quoted, and a batch still
# not JSON after that (a string holding ":NaN" too) shows its records with point and body NULL.
_NON_FINITE = [(prefix + token, prefix + '"' + token + '"') for token in ("NaN", "Infinity", "-Infinity")
               for prefix in (":", ",", "[")]
_QUOTED = "body"
for _bare, _quoted in _NON_FINITE:
    _QUOTED = f"replace({_QUOTED}, '{_bare}', '{_quoted}')"
RECORDS_VIEW = f"""
CREATE VIEW records (seq, cls, point, created, body) AS
WITH b AS (SELECT hi, lo, n, cls, created, seqs, CASE WHEN json_valid(body) THEN body ELSE {_QUOTED} END AS text
           FROM batches WHERE codec = 0),
     unread (hi, k) AS (SELECT hi, 0 FROM b WHERE NOT json_valid(text)
                        UNION ALL SELECT u.hi, u.k + 1 FROM unread u JOIN b ON b.hi = u.hi WHERE u.k + 1 < b.n)
SELECT CASE WHEN b.seqs IS NULL THEN b.lo + j.key ELSE json_extract(b.seqs, '$[' || j.key || ']') END,
       b.cls, json_extract(j.value, '$.point'), b.created, j.value
FROM b, json_each(b.text) j WHERE json_valid(b.text)
UNION ALL
SELECT CASE WHEN b.seqs IS NULL THEN b.lo + u.k ELSE json_extract(b.seqs, '$[' || u.k || ']') END,
       b.cls, NULL, b.created, NULL
FROM unread u JOIN b ON b.hi = u.hi;
"""
REQUIRED_COLUMNS = {"batches": {"hi", "lo", "cls", "n", "created", "seqs", "codec", "crc", "body"},
                    "owed": {"link", "cls", "hi", "nacked", "acked"}}
# Schema 1 (before the batch layout), migrated on open (migrate.py).
LEGACY_COLUMNS = {"records": {"seq", "cls", "point", "created", "body"}, "pending": {"link", "cls", "seq"}}

# Never dropped for space or age: an alarm or a piece of broadcast evidence is kept until delivered.
KEEP_ALWAYS = frozenset({RecordClass.ALARM, RecordClass.EVIDENCE})
# What goes first when the journal is full (lowest value first).
DROP_ORDER = (RecordClass.BULK, RecordClass.TELEMETRY, RecordClass.STATE, RecordClass.EVENT)
MAX_SEQ = 2**63 - 1
JOURNAL_POINT = "journal"  # point id of the journal's own event records


class JournalFull(Exception):
    """An alarm or evidence record could not be stored even after dropping everything droppable."""


class SeqsNotReserved(OSError):
    """The next block of seqs could not be reserved (``<journal>.seq`` not written) and this one is used up."""


class JournalUnavailable(Exception):
    """The journal file cannot be opened for a reason that is not damage (permissions, I/O, lock)."""


class JournalRecord:
    """A record read back: its seq, class, body and when it was taken.

    ``text`` is the body as stored (compact JSON, an object without ``seq``); ``body`` is parsed from it
    only when something asks, so a profile that can splice the stored text (``payloads.py``) never
    decodes and re-encodes it.
    """

    __slots__ = ("_body", "cls", "created", "seq", "text")

    def __init__(self, seq: int, cls: RecordClass, body: dict[str, Any] | None, created: float,
                 text: str | None = None) -> None:
        if body is None and text is None:
            raise ValueError("a journal record needs its body or its stored text")
        self.seq = seq
        self.cls = cls
        self.created = created
        self._body = body
        self.text = text

    @property
    def body(self) -> dict[str, Any]:
        if self._body is None:
            assert self.text is not None
            self._body = json.loads(self.text)
        return self._body

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, JournalRecord):
            return NotImplemented
        return (self.seq, self.cls, self.created, self.body) == (other.seq, other.cls, other.created, other.body)

    __hash__ = None  # type: ignore[assignment]  # mutable cache inside; compared by value

    def __repr__(self) -> str:
        return f"JournalRecord(seq={self.seq}, cls={self.cls!r}, body={self.body!r}, created={self.created})"


# json.dumps with these options builds a JSONEncoder and a C encoder per call (~2 of its 3.5 µs per
# reading, bench/profiles/): the C encoder is made once here. Same output, same errors.
_MAKE_ENCODER: Any = getattr(json.encoder, "c_make_encoder", None)  # not in typeshed: CPython's _json
_C_ENCODER: Any = None if _MAKE_ENCODER is None else _MAKE_ENCODER(
    None, json.JSONEncoder().default, json.encoder.encode_basestring, None, ":", ",", False, False, True)


def encode_body(body: dict[str, Any]) -> str:
    """A record body as stored and as sent: compact JSON, non-ASCII as UTF-8 (what payloads.py sends)."""
    if _C_ENCODER is None:
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    return "".join(_C_ENCODER(body, 0))


def encode_bodies(bodies: list[dict[str, Any]]) -> str:
    """``",\\n".join`` of the bodies' ``encode_body`` texts (a batch row's records, batch.py), by one C-level
    encoding of the whole list when the records' boundaries in it are plain ("},{" nowhere inside a record),
    else record by record: ~0.3 µs a record less at a commit (bench/RESULTS.md, fifth pass)."""
    if _C_ENCODER is not None and bodies:
        inner = "".join(_C_ENCODER(bodies, 0))[1:-1]
        if inner.count("},{") == len(bodies) - 1:
            return inner.replace("},{", "},\n{")
    return ",\n".join(map(encode_body, bodies))


def journal_event(what: str, now: float, **attrs: Any) -> EventRecord:
    """An event record about the journal itself (damage, drops); the platform sees it on …/event
    as ``{"kind": "<what>", "key": "journal", ...}``."""
    return EventRecord(what, JOURNAL_POINT, attrs, now)
