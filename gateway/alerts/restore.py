"""What the interlock reads back from the audit chain at a start, and how old each record is taken to be.

Every record the broadcast subsystem writes (decisions and ``stopped`` records among them) carries the clocks it
was taken on: ``at`` (wall), ``mono`` (the monotonic clock) and ``boot`` (the kernel's boot id). At the next start:

* a record of **this boot** is aged as a live activation is: the smaller of its wall and monotonic ages (the
  monotonic clock runs on across a restart of the daemon, never across a reboot), so a step of the wall clock
  either way before the restart changes nothing;
* a record of **another boot** (or one written before the stamps existed) has no comparable monotonic time. It
  is taken to be as recent as the latest of: its own wall stamp; its wall stamp moved onto the wall clock of the
  last record of its boot (the two monotonic stamps give the real time between them: a step inside that boot
  shows there); and every record before it in the chain (a later record cannot be older). A record that then
  lies ahead of the clock counts as made at the start. What stays open: a forward step after the last record of
  a boot (or one a new boot starts with) makes that boot's activations look older by the step.

The read at start goes back by the chain's order, not by the wall clock (a forward step would hide the
activations behind a "last hour" bound): until every zone has ``max_per_hour`` activations, or a record of this
boot is an hour old on the monotonic clock (everything before it is older still), or ``LOOKBACK_RECORDS``
records were read; and in any case until a record made before the used ids' horizon was read, on its clocks
(``Horizon``). A chain without one begins after the horizon: alerts from people drafted before its first record
are refused, that moment taken on today's clock (``HistoryStart``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.alerts.model import MsgType
from gateway.bootclock import Stamp, on_clock_now

# Records read back at most: a zone sounded fewer than max_per_hour times in this many records counts what it has.
LOOKBACK_RECORDS = 20_000
RATE_WINDOW_S = 3600.0  # the hourly cap's window, the longest time a rate limit looks back


def stamp_of(record: dict[str, Any]) -> Stamp:
    """The clocks an audit record was taken on; records written before the stamps existed have the wall only."""
    data = record.get("data")
    data = data if isinstance(data, dict) else {}
    mono, boot = data.get("mono"), data.get("boot")
    try:
        at = float(data.get("at", record.get("ts", 0.0)))
    except (TypeError, ValueError):
        at = 0.0
    return Stamp(at, float(mono) if isinstance(mono, int | float) else None, boot if isinstance(boot, str) else None)


@dataclass(frozen=True)
class HistoryStart:
    """Where the broadcast history begins when the audit chain does not reach the restore horizon (new, deleted,
    replaced or damaged): alerts from people sent before it are refused, they may have been played unrecorded.

    ``first`` is the clocks of the chain's oldest readable record, None for an empty chain; ``start`` those of this
    start, after every record read back. Each is a wall stamp, wrong by whatever the clock was off then, so the
    moment is taken on today's clock (``at``): a stamp of this boot is moved by the clock's steps since it was taken,
    either way (a clock that was ahead, then set back, must not lock the operators out until the true time passes
    the bogus stamp; one that was behind must not let older alerts in). A stamp of another boot stays as written,
    and the history never begins after this start, where every record read back already existed.
    """

    first: Stamp | None
    start: Stamp

    def at(self, boot: str, wall_now: float, mono_now: float) -> float:
        start = on_clock_now(self.start, boot, wall_now, mono_now)
        start = self.start.at if start is None else start
        if self.first is None:
            return start
        first = on_clock_now(self.first, boot, wall_now, mono_now)
        return min(start, self.first.at if first is None else first)

    @property
    def noted(self) -> float:
        """The wall stamp the moment was noted with, as the clock read then."""
        return self.start.at if self.first is None else self.first.at


def original(record: dict[str, Any]) -> dict[str, Any]:
    """The record as first written: one audited to the temporary log while the real one failed joins the chain
    wrapped in a ``fallback_record`` (gateway/alerts/fallback.py), at the place where it happened."""
    data = record.get("data")
    inner = data.get("record") if record.get("kind") == "fallback_record" and isinstance(data, dict) else None
    return inner if isinstance(inner, dict) else record


def activation_zones(record: dict[str, Any]) -> list[str]:
    """The zones an audit record counts an activation in: an accepted decision, not a Cancel, that drove outputs."""
    data = record.get("data")
    if record.get("kind") != "decision" or not isinstance(data, dict):
        return []
    alert = data.get("alert")
    if not isinstance(alert, dict) or not (data.get("accepted") and data.get("outputs")):
        return []
    if alert.get("msgType") == MsgType.CANCEL.value:
        return []
    return [zone for zone in alert.get("areas", []) if isinstance(zone, str)]


@dataclass(frozen=True)
class Horizon:
    """How far back the chain must reach for the used alert ids (interlock.HISTORY_S before the start), on both
    clocks: a record of this boot is judged on its monotonic stamp (its wall stamp is off by every step since it
    was taken: a clock behind then, stepped forward since, made a chain a minute old look an hour old and the
    history complete), one of another boot on its wall stamp (nothing else compares)."""

    wall: float
    mono: float
    boot: str

    def passed(self, stamp: Stamp) -> bool:
        """Whether the record with this stamp was made before the horizon."""
        if stamp.boot == self.boot and stamp.mono is not None:
            return stamp.mono < self.mono
        return stamp.at < self.wall

    def reached(self, records: Iterable[dict[str, Any]]) -> bool:
        """Whether these records (as ``original`` gives them) reach back past the horizon."""
        return any(self.passed(stamp_of(record)) for record in records)


class Lookback:
    """Fed the chain's records newest first; says when nothing older can count towards a rate limit and, given a
    ``horizon``, a record made before it was read (until then the chain may begin after it)."""

    def __init__(self, zones: Iterable[str], per_zone: int, boot: str, monotonic_now: float,
                 horizon: Horizon | None = None) -> None:
        self._wanted = {zone: per_zone for zone in zones}
        self._boot = boot
        self._old = monotonic_now - RATE_WINDOW_S
        self._read = 0
        self._done = per_zone <= 0
        self._horizon = horizon
        self._covered = horizon is None

    def __call__(self, record: dict[str, Any]) -> bool:
        self._read += 1
        record = original(record)
        if self._horizon is not None and not self._covered:
            self._covered = self._horizon.passed(stamp_of(record))
        limits = self._enough_for_the_limits(record)  # counted whatever the horizon says
        return self._read >= LOOKBACK_RECORDS or (self._covered and limits)

    def _enough_for_the_limits(self, record: dict[str, Any]) -> bool:
        for zone in activation_zones(record):
            if self._wanted.get(zone, 0) > 1:
                self._wanted[zone] -= 1
            else:
                self._wanted.pop(zone, None)
        stamp = stamp_of(record)
        if stamp.boot == self._boot and stamp.mono is not None and stamp.mono <= self._old:
            self._done = True  # an hour old in real time: every record before it is older still
        return self._done or not self._wanted


class ChainTime:
    """When each record of another boot was made, as far as the chain tells (see the module's text).

    Call ``at`` for the records (as ``original`` gives them) in the chain's order.
    """

    def __init__(self, records: Sequence[dict[str, Any]], boot: str) -> None:
        self._last_of_boot: dict[str, Stamp] = {}
        for record in records:
            stamp = stamp_of(record)
            if stamp.boot is not None and stamp.boot != boot and stamp.mono is not None:
                self._last_of_boot[stamp.boot] = stamp
        self._latest = float("-inf")

    def at(self, stamp: Stamp) -> float:
        guesses = [stamp.at, self._latest]
        last = self._last_of_boot.get(stamp.boot) if stamp.boot is not None else None
        if last is not None and last.mono is not None and stamp.mono is not None:
            guesses.append(last.at - (last.mono - stamp.mono))
        self._latest = max(guesses)
        return self._latest
