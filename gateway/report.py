"""Report-by-exception: which readings are worth journalling and sending.

A reading is reported when its quality changed, when its value moved past the
point's deadband since the last *reported* value, or when the heartbeat is due.
A failed read reports its bad quality once (and then at the heartbeat): the
platform sees ``comm_fail``, never the last good value repeated.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.shared import PointInfo, Quality, Reading, ReportPolicy

DEFAULT_POLICY = ReportPolicy()


@dataclass(slots=True)
class _Last:
    value: object
    quality: Quality
    time: float


class ReportFilter:
    def __init__(self, points: list[PointInfo]) -> None:
        self._policy = {p.id: p.report for p in points}
        self._last: dict[str, _Last] = {}  # bounded: one entry per configured point

    def admit(self, reading: Reading) -> str | None:
        """Why ``reading`` is reported ("first", "quality", "change", "heartbeat"), or None to drop it."""
        policy = self._policy.get(reading.point, DEFAULT_POLICY)
        last = self._last.get(reading.point)
        if last is None:
            reason = "first"
        elif reading.quality is not last.quality:
            reason = "quality"
        elif self._changed(policy, last, reading):
            reason = "change"
        elif not 0 <= reading.source_time - last.time < policy.heartbeat:
            # Due, or the wall clock stepped back (NTP): report now rather than stay silent for the step.
            reason = "heartbeat"
        else:
            return None
        if last is not None:  # updated in place: no object per reported reading
            last.value, last.quality, last.time = reading.value, reading.quality, reading.source_time
        elif reading.point in self._policy or len(self._last) < 100_000:
            self._last[reading.point] = _Last(reading.value, reading.quality, reading.source_time)
        return reason

    @staticmethod
    def _changed(policy: ReportPolicy, last: _Last, reading: Reading) -> bool:
        new, old = reading.value, last.value
        # Exact types first: the usual int or float costs two type() checks (bool is not one of them).
        if not ((type(new) is int or type(new) is float) and (type(old) is int or type(old) is float)) and (
                isinstance(new, bool) or isinstance(old, bool) or not isinstance(new, (int, float))
                or not isinstance(old, (int, float))):
            return new != old
        delta = abs(new - old)
        if policy.deadband is not None:
            return delta >= policy.deadband
        if policy.deadband_percent is not None:
            reference = abs(old)
            return delta > 0 if reference == 0 else delta * 100.0 / reference >= policy.deadband_percent
        return delta != 0
