"""The journal: the durable outbox between acquisition and every link (docs/durability.md).

``config`` the ``journal:`` section; ``records`` the tables, record type, drop order, errors;
``files`` the files on disk (damage moved aside, seq reservation, ballast); ``tables`` the
rows; ``capacity`` the bounds and drops; ``store`` the blocking ``Journal``; ``writer`` the
``AsyncJournal`` the event loop uses.
"""

from gateway.journal.config import JournalSettings
from gateway.journal.records import MAX_SEQ, JournalFull, JournalRecord, JournalUnavailable
from gateway.journal.store import Journal
from gateway.journal.writer import AsyncJournal

__all__ = ["MAX_SEQ", "AsyncJournal", "Journal", "JournalFull", "JournalRecord", "JournalSettings",
           "JournalUnavailable"]
