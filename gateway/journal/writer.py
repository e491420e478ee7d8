"""The journal's owner in the event loop: a bounded queue, one group-committing writer, one thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from gateway.journal.records import JournalFull
from gateway.journal.store import Journal
from gateway.shared import Journalable, Progress, RecordClass

log = logging.getLogger("fieldgate.journal")

T = TypeVar("T")

# Stop: how long the stop path keeps retrying a commit the journal refuses (full of alarms, I/O errors) before
# it spills the records to the temporary journal (gateway/journal/fallback.py) and goes on stopping.
STOP_COMMIT_BOUND = 5.0
Entry = tuple[RecordClass, Journalable]
Spill = Callable[[list[Entry]], int]


class AsyncJournal:
    """The journal's owner in the event loop: a bounded queue and one group-committing writer.

    Queued records (telemetry, state) are committed in batches: whatever is queued, for at
    most ``commit_window``, goes into one transaction with one fsync. ``append_now`` commits
    synchronously and returns the seq, for alarms and evidence that must be durable before
    anything acts on them.
    """

    MAINTAIN_EVERY = 5.0

    def __init__(self, journal: Journal, queue_size: int = 10_000, commit_window: float = 0.2) -> None:
        self.journal = journal
        self.commit_window = commit_window
        # SD-card wear (docs/durability.md): a commit held open gathers several poll bursts.
        self.hold = min(journal.settings.min_commit_interval, commit_window)
        # One item per producer call (a bus read's admitted readings: ``put_many``), not per reading: the writer
        # takes a read's readings in one step. The bound counts readings (``_queued``), not items.
        self.queue_size = queue_size
        self._queue: asyncio.Queue[list[Entry]] = asyncio.Queue()
        self._queued = 0
        self._room = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal")
        self._listeners: list[asyncio.Event] = []
        self._batch_lock = asyncio.Lock()  # held by the writer from its first item to its commit, and by flush()
        self._next_maintenance = time.monotonic() + self.MAINTAIN_EVERY
        self.committed = 0
        # Bounded stop (docs/durability.md, "Stop"): set by flush(); ``spill`` keeps what the journal refused.
        self._stopping = asyncio.Event()
        self._give_up_at = float("inf")
        self.spill: Spill | None = None
        # Refreshed by the writer every few seconds: what a status page may read without waiting.
        self.latest_stats: dict[str, Any] = {}

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def subscribe(self) -> asyncio.Event:
        """An event set whenever new records are committed (links wait on it)."""
        event = asyncio.Event()
        self._listeners.append(event)
        return event

    async def put(self, cls: RecordClass, reading: Journalable) -> None:
        """Queue a reading for group commit; waits (back-pressure) when the queue is full."""
        await self.put_many([(cls, reading)])

    async def put_many(self, entries: list[Entry]) -> None:
        """Queue readings for group commit as one item, in order; waits (back-pressure) while the queue holds
        ``queue_size`` readings or more (so it holds at most that plus one call's worth). ``entries`` is the
        writer's from here on."""
        if not entries:
            return
        while self._queued >= self.queue_size:
            self._room.clear()
            await self._room.wait()
        self._queued += len(entries)
        self._queue.put_nowait(entries)

    def _take(self, batch: list[Entry], entries: list[Entry]) -> None:
        batch.extend(entries)
        self._queued -= len(entries)
        self._room.set()

    async def append_now(self, cls: RecordClass, reading: Journalable) -> int:
        """Commit one record now (fsync'd) and return its seq. Raises ``JournalFull`` if it cannot."""
        seqs = await self.call(self.journal.append, [(cls, reading)])
        if not seqs:
            raise JournalFull(f"{cls.label} record of {reading.point} was not stored (disk full)")
        self._notify()
        return seqs[0]

    async def stats(self) -> dict[str, Any]:
        return await self.call(self.journal.stats)

    def queued(self) -> int:
        return self._queued

    async def run(self, progress: Progress) -> None:
        while True:
            try:
                # Not wait_for: in 3.11 it swallows a cancel that lands with the item (the stop path
                # would then wait for this loop forever); a cancelled get() leaves the item queued.
                async with asyncio.timeout(1.0):
                    first = await self._queue.get()
            except TimeoutError:
                progress.beat()
                await self._maintain_if_due()
                continue
            # The batch in hand is committed before flush() may take what is queued behind it:
            # queue order stays seq order (a later reading of a point never gets a lower seq).
            # Uncontended, acquire() does not suspend, so nothing can slip in after the get.
            batch: list[Entry] = []
            self._take(batch, first)
            try:
                await self._batch_lock.acquire()
            except asyncio.CancelledError:
                await self._commit(batch)  # flush() ran while we waited; what we took is not dropped
                raise
            try:
                await self._gather_and_commit(batch)
            finally:
                self._batch_lock.release()
            progress.beat()
            await self._maintain_if_due()

    async def _gather_and_commit(self, batch: list[Entry]) -> None:
        started = time.monotonic()
        deadline, hold_until = started + self.commit_window, started + self.hold
        try:
            # Take what is already queued; a short nap lets a burst (one poll cycle) join the batch.
            while len(batch) < 5000 and time.monotonic() < deadline:
                if self._queue.empty() and time.monotonic() < hold_until:
                    try:
                        async with asyncio.timeout(hold_until - time.monotonic()):
                            self._take(batch, await self._queue.get())
                    except TimeoutError:
                        break
                    continue
                if self._queue.empty():
                    await asyncio.sleep(0.005)
                    if self._queue.empty():
                        break
                self._take(batch, self._queue.get_nowait())
        except asyncio.CancelledError:
            await self._commit(batch)  # shutting down: what we hold is committed, not dropped
            raise
        await self._commit(batch)

    async def _maintain_if_due(self) -> None:
        if time.monotonic() < self._next_maintenance:
            return
        self._next_maintenance = time.monotonic() + self.MAINTAIN_EVERY
        try:
            await self.call(self.journal.maintain)
            self.latest_stats = await self.call(self.journal.stats)
        except (sqlite3.Error, OSError) as exc:
            log.error("journal maintenance failed: %s", exc)
        self._notify()

    async def flush(self, bound: float = STOP_COMMIT_BOUND) -> None:
        """Commit everything queued now (shutdown path), after the batch the writer may hold. A commit the
        journal keeps refusing is retried for ``bound`` seconds at most, then spilled (see ``_commit``)."""
        self._give_up_at = time.monotonic() + bound
        self._stopping.set()
        async with self._batch_lock:
            batch: list[Entry] = []
            while not self._queue.empty():
                self._take(batch, self._queue.get_nowait())
            if batch:
                await self._commit(batch)

    async def _commit(self, batch: list[Entry]) -> None:
        delay = 0.5
        while True:
            try:
                await self.call(self.journal.append, batch)
                break
            except JournalFull as exc:
                # Only alarms/evidence are left in a full journal: hold them (the queue fills and
                # back-pressures the buses) and keep trying; never drop them.
                log.critical("journal full of alarms/evidence: %s; retrying", exc)
            except (sqlite3.Error, OSError) as exc:  # a failing card: retried, never the end of the writer
                log.error("journal commit of %d records failed: %s; retrying in %.1fs", len(batch), exc, delay)
            if self._stopping.is_set() and time.monotonic() >= self._give_up_at:
                await self._spill(batch)
                return
            with contextlib.suppress(TimeoutError):  # a stop cuts the nap short
                async with asyncio.timeout(delay if not self._stopping.is_set() else 0.5):
                    await self._stopping.wait()
                    await asyncio.sleep(0.5)
            delay = min(delay * 2, 10.0)
        self.committed += len(batch)
        self._notify()

    async def _spill(self, batch: list[Entry]) -> None:
        """Stopping, and the journal still refuses ``batch``: to the temporary journal, merged at the next start."""
        kept = 0
        if self.spill is not None:
            try:
                kept = await self.call(self.spill, batch)
            except (sqlite3.Error, OSError) as exc:
                log.critical("stop: could not spill %d records to the temporary journal: %s", len(batch), exc)
        if kept < len(batch):
            log.critical("stop: %d of %d records NOT journalled (the journal refused them for %.0f s)",
                         len(batch) - kept, len(batch), STOP_COMMIT_BOUND)
        else:
            log.error("stop: %d records the journal refused were spilled to the temporary journal", kept)

    def _notify(self) -> None:
        for event in self._listeners:
            event.set()

    async def close(self) -> None:
        await self.call(self.journal.close)
        self._executor.shutdown(wait=True)
