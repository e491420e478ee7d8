"""The rule engine's clocks: durations on a step-free clock, the wall clock for what leaves the engine.

A rule's time conditions (persistence ``duration``, ``stale`` ``max_age``, freshness ``within``, rate
windows, detection ``hold``) are measured on ``monotonic()``, which an NTP step or ``date -s`` does not move.
Transition ``ts``, alarm ids and records stay on the wall clock (docs/durability.md, "Clock steps").

Live, the engine runs on ``SystemClock``. A replay (``fieldgate rules test --replay``) runs on
``RecordedClock``: both clocks are the recorded time, so a series replays as it ran.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never steps (its zero means nothing)."""
        ...

    def wall(self) -> float:
        """UTC epoch seconds: the clock readings are stamped with."""
        ...


class SystemClock:
    """The box's clocks. Plain functions (no Python frame): the engine reads one per evaluate."""

    monotonic = staticmethod(time.monotonic)
    wall = staticmethod(time.time)


class RecordedClock:
    """Recorded time: both clocks are the newest time passed to ``advance`` (a recorded series never steps)."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def advance(self, when: float) -> None:
        if when > self.now:
            self.now = when

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now
