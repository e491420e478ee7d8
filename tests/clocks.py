"""A fake pair of clocks for tests of clock steps: real time passes when the test says, the wall clock steps too."""

from __future__ import annotations

T = 1_800_000_000.0
HOUR = 3600.0


class SteppedClock:
    """Real time passes when the test says (``elapsed``); the wall clock is real time plus the steps made.

    Satisfies gateway.rules.clock.Clock; pass ``clock=c.wall, monotonic=c.monotonic`` where callables are taken.
    """

    def __init__(self, start: float = T) -> None:
        self.start = start
        self.elapsed = 0.0
        self.step = 0.0

    def monotonic(self) -> float:
        return 50_000.0 + self.elapsed  # the monotonic clock's zero means nothing

    def wall(self) -> float:
        return self.start + self.elapsed + self.step

    def advance(self, seconds: float) -> None:
        """Real time passes: both clocks move."""
        self.elapsed += seconds
