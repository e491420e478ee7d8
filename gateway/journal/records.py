"""What the journal holds: its tables, a record read back, which classes go first, its errors."""

from __future__ import annotations

from dataclasses import dataclass
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
CREATE INDEX IF NOT EXISTS records_by_cls ON records (cls, seq);
CREATE TABLE IF NOT EXISTS pending (
    link TEXT NOT NULL,
    cls  INTEGER NOT NULL,
    seq  INTEGER NOT NULL,
    PRIMARY KEY (link, cls, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pending_by_seq ON pending (seq);
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


@dataclass(frozen=True, slots=True)
class JournalRecord:
    seq: int
    cls: RecordClass
    body: dict[str, Any]
    created: float


def journal_event(what: str, now: float, **attrs: Any) -> EventRecord:
    """An event record about the journal itself (damage, drops); the platform sees it on …/event
    as ``{"kind": "<what>", "key": "journal", ...}``."""
    return EventRecord(what, JOURNAL_POINT, attrs, now)
