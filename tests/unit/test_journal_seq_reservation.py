"""A full disk while the journal reserves its next block of seqs (``<journal>.seq``) must be a disk-full
like any other, never an exception that ends the daemon.

Found by the 1-hour chaos soak: with the state directory's file system full, the reservation's atomic
write raised ``OSError(ENOSPC)`` out of ``Journal.append``; the writer caught only SQLite errors, so the
gateway's task group ended and the daemon exited — nothing polled, no siren, until systemd restarted it
into the same full disk. The 10-minute soaks never crossed a 10 000-seq block boundary while full.
"""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path

import pytest

from gateway.journal import AsyncJournal, Journal
from gateway.journal.records import JournalFull
from gateway.shared import EventRecord, NullProgress, RecordClass
from tests.unit.test_journal_batches import ALL, reading, settings

pytestmark = pytest.mark.timeout(60)


def fill_the_disk(journal: Journal) -> None:
    def no_space(upto: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    journal.store.files.write_reserved = no_space  # type: ignore[method-assign]


def test_seqs_already_reserved_are_used_while_the_next_block_cannot_be(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite", {"mqtt": ALL}, settings())
    fill_the_disk(journal)
    journal.store.reserved = journal.store.last + 3500  # what is left of the block when the card filled up
    stored = 0
    for start in range(0, 6000, 1000):  # past the reserved seqs
        stored += len(journal.append([(RecordClass.TELEMETRY, reading(i)) for i in range(start, start + 1000)]))
    assert stored == 3000  # the whole batches that fit in what was reserved
    assert journal.store.last <= journal.store.reserved  # never a seq that is not durably reserved
    assert sum(journal.dropped.values()) == 6000 - stored  # the rest dropped and counted
    alarm = (RecordClass.ALARM, EventRecord("alarm", "lvl", {"transition": "raised"}, 1.0))
    assert journal.append([alarm])  # an alarm still finds a reserved seq
    journal.store.reserved = journal.store.last  # none left
    with pytest.raises(JournalFull):  # an alarm is never dropped: the writer holds it and retries
        journal.append([alarm])
    journal.close()


def test_the_writer_survives_an_os_error_from_the_journal(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite", {"mqtt": ALL}, settings())
    real_append, failures = journal.append, [OSError(errno.EIO, "Input/output error")]

    def flaky_append(items):  # type: ignore[no-untyped-def]
        if failures:
            raise failures.pop()
        return real_append(items)

    journal.append = flaky_append  # type: ignore[method-assign]

    async def scenario() -> int:
        writer = AsyncJournal(journal, queue_size=100, commit_window=0.01)
        task = asyncio.create_task(writer.run(NullProgress()))
        await writer.put(RecordClass.TELEMETRY, reading(1))
        for _ in range(100):
            await asyncio.sleep(0.05)
            if journal.depth() or task.done():
                break
        assert not task.done(), task.exception()
        task.cancel()
        return journal.depth()

    assert asyncio.run(scenario()) == 1
    journal.close()
