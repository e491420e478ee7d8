"""The journal's bounds: bytes, age, room on the file system, and relief when the disk is full.

Over a bound, bulk then telemetry (optionally thinned first) then state then events are dropped
oldest-first, never alarms or evidence (``KEEP_ALWAYS``); every drop is counted (persistently, in
meta) and reported by an event record at most every ``drop_event_interval``. When the file system
runs low the journal is held at the size it has and reuses its own pages.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

from gateway.journal.config import JournalSettings
from gateway.journal.files import JournalFiles, is_full
from gateway.journal.records import DROP_ORDER, KEEP_ALWAYS, journal_event
from gateway.journal.tables import RecordStore
from gateway.shared import RecordClass

log = logging.getLogger("fieldgate.journal")

_DROPPED = "dropped/"  # meta key prefix of the drop counters
_THIN_POINTS = 100_000  # most points whose current thinning bucket is remembered


class Capacity:
    def __init__(self, store: RecordStore, files: JournalFiles, settings: JournalSettings,
                 clock: Callable[[], float]) -> None:
        self.store = store
        self.files = files
        self.settings = settings
        self.clock = clock
        self.dropped = store.meta_counters(_DROPPED)  # "<reason>/<class>" -> records
        self.pinned: int | None = None  # bytes the file may not grow past (file system low)
        self._unreported: dict[str, int] = {}
        self._last_drop_event = 0.0
        self._thin_bucket: dict[str, int] = {}

    def limit(self) -> int:
        limit = self.settings.max_bytes
        return limit if self.pinned is None else min(limit, self.pinned)

    def _check_file_system(self) -> None:
        """Below the free-space margin the journal stops growing its file; it reuses its own pages."""
        room = self.files.free_space()
        if room is None:
            return
        free, margin = room
        if free < margin and self.pinned is None:
            self.pinned = max(self.store.file_bytes() - 2 * self.store.page_size, self.store.page_size * 16)
            log.warning("journal: file system low (%d bytes free < %d); journal held at %d bytes",
                        free, margin, self.pinned)
        elif self.pinned is not None and free > 2 * margin + self.settings.reserve_bytes:
            log.info("journal: file system has room again (%d bytes free); journal may grow", free)
            self.pinned = None

    def enforce(self, reason: str = "capacity", target: int | None = None) -> None:
        """Drop until the live pages are under ``target`` (default: the bound, with hysteresis)."""
        used = self.store.used_bytes()
        if target is None:
            self._check_file_system()
            limit = self.limit()
            if used <= limit:
                return
            target = int(limit * 0.9)  # hysteresis: one drop pass makes room for a while
        for _ in range(10_000):
            dropped = self._drop_step(used - target, reason)
            if dropped == 0:
                log.error("journal over its bound (%d > %d bytes) with only alarms/evidence left", used, target)
                return
            used = self.store.used_bytes()
            if used <= target:
                return

    def _drop_step(self, excess: int, reason: str) -> int:
        total = max(1, sum(self.store.counts.values()))
        average = max(64, self.store.used_bytes() // total)
        want = min(20_000, max(200, excess // average + 1))
        for cls in DROP_ORDER:
            if self.store.counts[cls] <= 0:
                continue
            if cls is RecordClass.TELEMETRY and self.settings.thin_to:
                thinned = self._thin(want)
                if thinned:
                    return thinned
            return self.drop_oldest(cls, want, reason)
        return 0

    def _thin(self, want: int) -> int:
        """Keep one telemetry value per point per ``thin_to`` interval, oldest region first."""
        assert self.settings.thin_to is not None
        interval = self.settings.thin_to
        upto = self.store.meta_int("thinned_upto")
        deleted = 0
        while deleted == 0:
            rows = self.store.telemetry_after(upto, max(want, 1000))
            if not rows:
                return 0
            doomed: list[int] = []
            for seq, point, created in rows:
                bucket = int(created // interval)
                if self._thin_bucket.get(point) == bucket:
                    doomed.append(seq)
                elif len(self._thin_bucket) < _THIN_POINTS or point in self._thin_bucket:
                    self._thin_bucket[point] = bucket
            upto = rows[-1][0]
            with self.store.tx(durable=False):
                thinned = self.store.delete(doomed, RecordClass.TELEMETRY)
                self.store.set_meta("thinned_upto", upto)
                if thinned:
                    self.count_drop("thinned", RecordClass.TELEMETRY, thinned)
                    self._drop_event_if_due()
            deleted = len(doomed)
        return deleted

    def drop_oldest(self, cls: RecordClass, want: int, reason: str, before: float | None = None) -> int:
        """Delete up to ``want`` oldest records of ``cls`` (only those created before ``before``)."""
        if cls in KEEP_ALWAYS:
            return 0
        batches = self.store.oldest_batches(cls, want, before)  # whole batches: one commit's records go together
        if not batches:
            return 0
        with self.store.tx(durable=False):
            dropped, last = self.store.drop_batches(batches)
            if dropped:
                self.count_drop(reason, cls, dropped)
                self._drop_event_if_due()
        log.warning("journal: dropped %d oldest %s records (%s), up to seq %d", dropped, cls.label, reason, last)
        return max(dropped, 1)  # a batch whose records were all delivered still counts as progress

    def count_drop(self, reason: str, cls: RecordClass, n: int, persist: bool = True) -> None:
        key = f"{reason}/{cls.label}"
        self.dropped[key] = self.dropped.get(key, 0) + n
        self._unreported[key] = self._unreported.get(key, 0) + n
        if persist:
            self.store.set_meta(_DROPPED + key, self.dropped[key])

    def _drop_event_if_due(self) -> None:
        """Inside the current transaction: an event record summarising drops since the last one."""
        now = self.clock()
        if not self._unreported or now - self._last_drop_event < self.settings.drop_event_interval:
            return
        event = journal_event("dropped", now, records=dict(self._unreported), totals=dict(self.dropped))
        self.store.reserve_for(1)
        seqs = self.store.insert([(RecordClass.EVENT, event)], now)
        self.store.accounted([(RecordClass.EVENT, event)], seqs)
        self._unreported.clear()
        self._last_drop_event = now

    def relieve_full(self, keep_fraction: float) -> None:
        """SQLITE_FULL: free the ballast, hold the file at its size, drop, checkpoint the WAL."""
        self.files.release_ballast()
        self.pinned = max(self.store.page_size * 16, int(self.store.file_bytes() * 0.9))
        try:
            # Always free part of what is used: the failed write needed pages the file could not get.
            target = min(self.pinned, int(self.store.used_bytes() * keep_fraction))
            self.enforce("disk_full", target=target)
            self.store.checkpoint()
        except sqlite3.OperationalError as exc:
            if not is_full(exc):
                raise
            log.error("journal: still no room after dropping: %s", exc)

    def maintain(self) -> None:
        """Periodic work: age bound, size and file-system bounds, ballast, overdue drop event."""
        now = self.clock()
        cutoff = now - self.settings.max_age
        for cls in DROP_ORDER:
            oldest = self.store.oldest_created(cls)
            if oldest is None or oldest >= cutoff:
                continue  # checked first so an idle pass never scans a large backlog
            while self.drop_oldest(cls, 5000, "age", before=cutoff):
                pass
        self.enforce()
        if self.pinned is None:
            self.files.ensure_ballast()
        if self._unreported and now - self._last_drop_event >= self.settings.drop_event_interval:
            with self.store.tx(durable=True):
                self._drop_event_if_due()
