"""What the journal holds: its tables, a record read back, which classes go first, its errors."""

from __future__ import annotations

import json
from typing import Any

from gateway.shared import EventRecord, RecordClass

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
-- No secondary indexes: each cost ~53 bytes written per reading (and its upkeep on the CPU). Every live
-- record has a pending row (a record no link owes is deleted), so pending's key (link, cls, seq) finds
-- records by class; deletes name the link and class. Journals made before issue 18 lose them here.
DROP INDEX IF EXISTS records_by_cls;
DROP INDEX IF EXISTS pending_by_seq;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
REQUIRED_COLUMNS = {"records": {"seq", "cls", "point", "created", "body"}, "pending": {"link", "cls", "seq"}}

# Never dropped for space or age: an alarm or a piece of broadcast evidence is kept until delivered.
KEEP_ALWAYS = frozenset({RecordClass.ALARM, RecordClass.EVIDENCE})
# What goes first when the journal is full (lowest value first).
DROP_ORDER = (RecordClass.BULK, RecordClass.TELEMETRY, RecordClass.STATE, RecordClass.EVENT)
MAX_SEQ = 2**63 - 1
JOURNAL_POINT = "journal"  # point id of the journal's own event records


class JournalFull(Exception):
    """An alarm or evidence record could not be stored even after dropping everything droppable."""


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


def encode_body(body: dict[str, Any]) -> str:
    """A record body as stored and as sent: compact JSON, non-ASCII as UTF-8 (what payloads.py sends)."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def journal_event(what: str, now: float, **attrs: Any) -> EventRecord:
    """An event record about the journal itself (damage, drops); the platform sees it on …/event
    as ``{"kind": "<what>", "key": "journal", ...}``."""
    return EventRecord(what, JOURNAL_POINT, attrs, now)
