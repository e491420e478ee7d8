"""HistoryService: takes readings and alarm transitions from the data path, batches them, serves the charts.

Fed by the gateway as a reading observer (after the report filter: what the journal keeps, so a deadband
shows as steps) and by each alarm transition. Both only touch memory; the buckets reach the file every
``flush_interval`` in one transaction off the event loop, and at stop. What is in memory and not yet in the
file is shown too, so the chart is live.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.history.config import HistoryConfig
from gateway.history.store import MINUTE, AlarmRow, Bucket, TrendStore
from gateway.rules.config import RulesConfig
from gateway.rules.engine import AlarmTransition
from gateway.shared import Progress, Quality, Reading

log = logging.getLogger("fieldgate.history")

MAX_PENDING_BUCKETS = 100_000  # if the file cannot be written for long, the oldest minutes go first
MAX_PENDING_ALARMS = 10_000
MAX_CHART_POINTS = 720


@dataclass(frozen=True, slots=True)
class Threshold:
    rule: str
    side: str  # above / below
    level: float
    severity: str


@dataclass(frozen=True, slots=True)
class Period:
    rule: str
    start: float
    end: float | None  # None: still active
    severity: str


def thresholds_by_point(rules: RulesConfig) -> dict[str, list[Threshold]]:
    """Threshold conditions of the rules (alone or inside all_of/any_of), per point."""
    found: dict[str, list[Threshold]] = {}
    for rule in rules.rules:
        for condition in [rule, *getattr(rule, "conditions", [])]:
            if getattr(condition, "type", None) != "threshold":
                continue
            for side in ("above", "below"):
                level = getattr(condition, side, None)
                if level is not None:
                    found.setdefault(condition.point, []).append(Threshold(rule.id, side, float(level), rule.severity))
    return found


def points_by_rule(rules: RulesConfig) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for rule in rules.rules:
        for condition in [rule, *getattr(rule, "conditions", [])]:
            point = getattr(condition, "point", None)
            if isinstance(point, str):
                out.setdefault(rule.id, set()).add(point)
    return out


class HistoryService:
    def __init__(self, config: HistoryConfig, path: Path, rules: RulesConfig,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.store = TrendStore(path, config.max_bytes, config.max_alarm_rows)
        self.thresholds = thresholds_by_point(rules)
        self.rule_points = points_by_rule(rules)
        self.units: dict[str, str] = {}
        self._clock = clock
        self._pending: dict[tuple[str, int], Bucket] = {}
        self._pending_alarms: list[AlarmRow] = []
        self.flushes = 0
        self.dropped = 0

    # -- taking data (on the event loop: memory only) --------------------------------------------

    async def observe(self, reading: Reading) -> None:
        self.take(reading)

    def take(self, reading: Reading) -> None:
        value = reading.value
        if isinstance(value, bool):
            number: float | None = float(value)
        elif isinstance(value, int | float) and math.isfinite(value):
            number = float(value)
        else:
            number = None
        if number is None and reading.quality is Quality.GOOD:
            return  # text or another non-numeric value: nothing to chart
        key = (reading.point, int(reading.source_time // MINUTE))
        bucket = self._pending.get(key)
        if bucket is None:
            if len(self._pending) >= MAX_PENDING_BUCKETS:
                self._pending.pop(next(iter(self._pending)))
                self.dropped += 1
            bucket = self._pending[key] = Bucket()
        bucket.add(number if reading.quality in (Quality.GOOD, Quality.UNCERTAIN) else None)
        if reading.unit:
            self.units[reading.point] = reading.unit

    def on_transition(self, transition: AlarmTransition) -> None:
        points = tuple(sorted(transition.points) or sorted(self.rule_points.get(transition.rule_id, ())))
        self._pending_alarms.append(AlarmRow(round(transition.time, 3), transition.kind.value, transition.rule_id,
                                             transition.alarm_id, transition.severity, transition.operator, points))
        del self._pending_alarms[:-MAX_PENDING_ALARMS]

    # -- writing (batched, off the loop) ---------------------------------------------------------

    async def run(self, progress: Progress | None = None) -> None:
        try:
            while True:
                await asyncio.sleep(self.config.flush_interval)
                await self.flush()
                if progress is not None:
                    progress.beat()
        finally:
            await self.flush()  # at stop (a cancel): what is in memory, then the file is closed
            self.store.close()

    async def flush(self) -> None:
        buckets, alarms = self._pending, self._pending_alarms
        if not buckets and not alarms:
            return
        self._pending, self._pending_alarms = {}, []
        try:
            await asyncio.to_thread(self.store.write, buckets, alarms, self._clock() - self.config.retention)
            self.flushes += 1
        except Exception as exc:  # the chart store must never disturb the data path; keep and retry
            log.error("history %s not written (%s); retrying at the next flush", self.store.path, exc)
            for key, bucket in buckets.items():
                self._pending.setdefault(key, Bucket()).merge(bucket)
            self._pending_alarms[:0] = alarms

    def close(self) -> None:
        self.store.close()

    # -- reading (for the page) ------------------------------------------------------------------

    def series(self, point: str, span_s: float, now: float | None = None) -> tuple[int, list[dict[str, Any]]]:
        """(step in seconds, buckets) over the last ``span_s``: one per minute, merged into wider steps
        when the span holds more minutes than a chart has room for (the downsampling of long spans)."""
        now = self._clock() if now is None else now
        last = int(now // MINUTE)
        first = last - int(span_s // MINUTE) + 1
        minutes = self.store.buckets(point, first, last)
        for (p, minute), bucket in self._pending.items():
            if p == point and first <= minute <= last:
                minutes.setdefault(minute, Bucket()).merge(bucket)
        per_step = max(1, math.ceil((last - first + 1) / MAX_CHART_POINTS))
        merged: dict[int, Bucket] = {}
        for minute in sorted(minutes):
            merged.setdefault(minute // per_step, Bucket()).merge(minutes[minute])
        step = per_step * MINUTE
        return step, [{"t": index * step, "mean": b.mean, "low": b.low, "high": b.high, "last": b.last, "bad": b.bad}
                      for index, b in sorted(merged.items())]

    def alarm_rows(self, since: float = 0.0, limit: int = 200) -> list[AlarmRow]:
        rows = self.store.alarms(since, limit) + [a for a in self._pending_alarms if a.ts >= since]
        return rows[-limit:]

    def alarm_periods(self, point: str, since: float) -> list[Period]:
        """When alarms of rules on ``point`` were active (raised → cleared), clipped to ``since``."""
        open_: dict[str, AlarmRow] = {}
        periods: list[Period] = []
        for row in self.alarm_rows(since - self.config.retention, 5000):
            if point not in row.points and point not in self.rule_points.get(row.rule, ()):
                continue
            if row.kind == "raised":
                open_[row.alarm_id] = row
            elif row.kind == "cleared":
                started = open_.pop(row.alarm_id, None)
                if started is not None and row.ts >= since:
                    periods.append(Period(row.rule, max(started.ts, since), row.ts, row.severity))
        periods += [Period(r.rule, max(r.ts, since), None, r.severity) for r in open_.values()]
        return periods
