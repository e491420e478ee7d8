"""Condition evaluators: three-valued (True / False / None = unknown), one object per condition.

Times here are the engine's monotonic clock (gateway/rules/engine.py): ``now`` when the condition is
evaluated, ``taken`` when the point's latest reading was taken.

Unknown is what a non-GOOD reading gives: it neither raises nor clears an alarm. That is how
"a gauge whose quality is not good never triggers on its own" is kept, without a failing gauge
silently clearing a real alarm either.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from gateway.rules.config import DetectionCondition, RateCondition, ThresholdCondition
from gateway.shared import Reading

Tri = bool | None
_RATE_SAMPLES = 2048  # bound on the samples a rate window keeps


def numeric(reading: Reading | None) -> float | None:
    """The reading's value if it is GOOD and a finite number, else None."""
    if reading is None or not reading.good or isinstance(reading.value, bool | str) or reading.value is None:
        return None
    value = float(reading.value)
    return value if value == value and abs(value) != float("inf") else None


@dataclass
class ThresholdEval:
    spec: ThresholdCondition
    latched: bool = False

    def update(self, reading: Reading | None, taken: float, now: float, freshness: bool) -> Tri:
        if reading is not None and freshness and now - taken > self.spec.within:
            return None
        value = numeric(reading)
        if value is None:
            return None
        if self.spec.above is not None:
            level = self.spec.above
            self.latched = value > level - self.spec.hysteresis if self.latched else value >= level
        else:
            assert self.spec.below is not None
            level = self.spec.below
            self.latched = value < level + self.spec.hysteresis if self.latched else value <= level
        return self.latched


@dataclass
class RateEval:
    spec: RateCondition
    samples: collections.deque[tuple[float, float]] = field(
        default_factory=lambda: collections.deque(maxlen=_RATE_SAMPLES)
    )

    def add(self, reading: Reading, taken: float) -> None:
        value = numeric(reading)
        if value is not None and (not self.samples or taken > self.samples[-1][0]):
            self.samples.append((taken, value))

    def update(self, reading: Reading | None, taken: float, now: float, freshness: bool) -> Tri:
        if reading is None or not reading.good:
            return None
        while self.samples and self.samples[0][0] < now - self.spec.window:
            self.samples.popleft()
        if len(self.samples) < 2:
            return None
        (t0, v0), (t1, v1) = self.samples[0], self.samples[-1]
        span = t1 - t0
        if span < self.spec.window / 2:  # too short a baseline: noise, not a trend
            return None
        per_min = (v1 - v0) / span * 60.0
        if self.spec.rise_per_min is not None:
            return per_min >= self.spec.rise_per_min
        assert self.spec.fall_per_min is not None
        return per_min <= -self.spec.fall_per_min


@dataclass
class DetectionEval:
    spec: DetectionCondition

    def update(self, reading: Reading | None, taken: float, now: float, freshness: bool) -> Tri:
        if reading is None:
            return False
        if not reading.good:
            return None
        if now - taken > self.spec.hold:
            return False  # detections are events: no recent one means none
        value = reading.value
        confidence = (1.0 if value else 0.0) if isinstance(value, bool) else value
        if not isinstance(confidence, int | float):
            return None
        confirmed = reading.attrs.get("confirmed") is True
        strong = float(confidence) >= self.spec.min_confidence
        return strong and (confirmed or not self.spec.require_confirmed)


Evaluator = ThresholdEval | RateEval | DetectionEval


def make_eval(spec: ThresholdCondition | RateCondition | DetectionCondition) -> Evaluator:
    if isinstance(spec, ThresholdCondition):
        return ThresholdEval(spec)
    if isinstance(spec, RateCondition):
        return RateEval(spec)
    return DetectionEval(spec)


def all_of(values: list[Tri]) -> Tri:
    if any(v is False for v in values):
        return False
    return None if any(v is None for v in values) else True


def any_of(values: list[Tri]) -> Tri:
    if any(v is True for v in values):
        return True
    return None if any(v is None for v in values) else False
