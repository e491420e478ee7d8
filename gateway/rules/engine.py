"""The rule engine: a pure class, readings in, alarm transitions out. No I/O; its clock is injected.

Durations are measured on the clock's step-free ``monotonic()`` time (gateway/rules/clock.py): a reading's
wall-clock ``source_time`` is converted to it when the reading is evaluated, so a step of the wall clock
neither holds an alarm back nor raises ``stale`` for a fresh point. Transitions keep the wall clock (their
``ts`` and alarm ids). A replay passes a ``RecordedClock`` and runs on the recorded time exactly as it ran
live (``fieldgate rules test``).

What a reading's time means here (``_taken``): a reading is taken at ``source_time - offset`` on the monotonic
clock, ``offset`` being wall minus monotonic, read at each tick and again whenever a reading's time is
more than ``OFFSET_SLACK`` from the monotonic now (a step; or a time that is not the box's present). So:
- a live reading (stamped on the box a moment ago) converts with the cached offset: one ``monotonic()`` per
  evaluate, no other clock read; a step smaller than ``OFFSET_SLACK`` goes unseen until the next tick (≤ 1 s);
- a reading stamped by a device (source time earlier than acquisition) keeps its own age: it counts as
  taken that long ago, for freshness, ``hold``, rate windows and ``stale``, as before;
- a historical / back-filled reading is taken in the past the same way: it is evaluated at its own time
  (persistence counts from it, other points look fresher than it), as before; it never moves a later
  reading's age;
- a reading stamped in the future of the box's clock (a device clock ahead) counts as taken now: it cannot
  keep a point fresh, or a detection held, for longer than it really is.
"""

from __future__ import annotations

import collections
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.rules.clock import Clock, RecordedClock, SystemClock
from gateway.rules.conditions import Evaluator, RateEval, Tri, all_of, any_of, make_eval
from gateway.rules.config import (
    FAULT_RULE_TYPES,
    AllOfRule,
    AnyOfRule,
    CommFailRule,
    Rule,
    RulesConfig,
    StaleRule,
)
from gateway.shared import Quality, Reading


class TransitionKind(enum.StrEnum):
    RAISED = "raised"
    ACKNOWLEDGED = "acknowledged"
    CLEARED = "cleared"


class AlarmClass(enum.StrEnum):
    PROCESS = "process"  # the world is in a dangerous state: may drive a broadcast (site plan)
    FAULT = "fault"  # the gateway cannot see (stale, comm-fail, missing read-back): never a siren


@dataclass(frozen=True, slots=True)
class AlarmTransition:
    kind: TransitionKind
    rule_id: str
    alarm_id: str
    severity: str
    alarm_class: AlarmClass
    time: float
    message: str = ""
    # point -> {"value": ..., "q": ...}: the evidence the decision was made on
    points: dict[str, dict[str, Any]] = field(default_factory=dict)
    operator: str | None = None

    @property
    def trusted(self) -> bool:
        """True when every point behind the transition was GOOD (required for an automatic broadcast)."""
        return bool(self.points) and all(p.get("q") == Quality.GOOD.value for p in self.points.values())

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind.value,
            "rule": self.rule_id,
            "alarm_id": self.alarm_id,
            "severity": self.severity,
            "class": self.alarm_class.value,
            "ts": round(self.time, 3),
            "points": self.points,
        }
        if self.message:
            out["message"] = self.message
        if self.operator:
            out["operator"] = self.operator
        return out


@dataclass
class _Active:
    alarm_id: str
    acknowledged: bool = False


class _RuleState:
    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.alarm_class = AlarmClass.FAULT if rule.type in FAULT_RULE_TYPES else AlarmClass.PROCESS
        self.evals: list[tuple[str, Evaluator]] = []
        if isinstance(rule, AllOfRule | AnyOfRule):
            self.evals = [(c.point, make_eval(c)) for c in rule.conditions]
        elif not isinstance(rule, StaleRule | CommFailRule):
            self.evals = [(rule.point, make_eval(rule))]
        p = rule.persistence
        self.history: collections.deque[bool] = collections.deque(maxlen=p.m if p and p.m else 1)
        self.true_since: float | None = None  # monotonic
        self.active: _Active | None = None
        self.fail_count = 0
        self.last_good: float | None = None  # monotonic

    @property
    def points(self) -> list[str]:
        if isinstance(self.rule, StaleRule | CommFailRule):
            return [self.rule.point]
        return [point for point, _ in self.evals]


OFFSET_SLACK = 1.0  # s: a reading this close to the monotonic now converts with the cached offset


class RuleEngine:
    def __init__(self, rules: RulesConfig | Sequence[Rule], clock: Clock | None = None) -> None:
        rule_list = rules.rules if isinstance(rules, RulesConfig) else list(rules)
        self._states = [_RuleState(rule) for rule in rule_list]
        self._by_point: dict[str, list[_RuleState]] = collections.defaultdict(list)
        for state in self._states:
            for point in dict.fromkeys(state.points):
                self._by_point[point].append(state)
        self._latest: dict[str, Reading] = {}  # only points some rule uses: bounded by config
        self._taken_at: dict[str, float] = {}  # point -> when its latest reading was taken (monotonic)
        self.clock = clock or SystemClock()
        self._monotonic = self.clock.monotonic
        self._offset = self.clock.wall() - self._monotonic()  # wall minus monotonic
        self._started: float | None = None  # monotonic
        self._counter = 0

    @property
    def rule_count(self) -> int:
        """Rules loaded (a roll-out's health check compares it with the config)."""
        return len(self._states)

    # ---- inputs ----

    def evaluate(self, reading: Reading) -> list[AlarmTransition]:
        states = self._by_point.get(reading.point)
        if not states:
            return []
        # The reading is evaluated at its own time (as before), on the monotonic clock; its wall time stamps
        # what it raises or clears.
        wall = reading.source_time
        now = self._monotonic()
        taken = wall - self._offset
        if not now - OFFSET_SLACK <= taken <= now + OFFSET_SLACK:
            taken = self._taken(wall, now)
        elif taken > now:
            taken = now
        if self._started is None:
            self._started = taken
        self._latest[reading.point] = reading
        self._taken_at[reading.point] = taken
        out: list[AlarmTransition] = []
        for state in states:
            for point, evaluator in state.evals:
                if point == reading.point and isinstance(evaluator, RateEval):
                    evaluator.add(reading, taken)
            out.extend(self._step(state, taken, wall, sample=True))
        return out

    def tick(self, now: float) -> list[AlarmTransition]:
        """Time-based conditions: stale points, persistence by time, detections that expire. ``now`` (the
        wall clock) stamps what the tick raises or clears; the durations run on the engine's clock."""
        monotonic = self._monotonic()
        self._offset = self.clock.wall() - monotonic  # follows a step within a tick
        if self._started is None:
            self._started = monotonic
        out: list[AlarmTransition] = []
        for state in self._states:
            out.extend(self._step(state, monotonic, now, sample=False))
        return out

    def _taken(self, wall: float, now: float) -> float:
        """A reading's time on the monotonic clock when the cached offset does not place it near now:
        re-read the offset (the wall clock may have stepped) and convert; never later than now."""
        self._offset = self.clock.wall() - now
        return min(wall - self._offset, now)

    def acknowledge(self, key: str, operator: str, now: float) -> list[AlarmTransition]:
        """Acknowledge by alarm id or rule id. Acknowledging does not clear: the condition must go."""
        for state in self._states:
            active = state.active
            if active and not active.acknowledged and key in (active.alarm_id, state.rule.id):
                active.acknowledged = True
                return [self._transition(state, TransitionKind.ACKNOWLEDGED, now, operator=operator)]
        return []

    def active_alarms(self) -> list[dict[str, Any]]:
        return [
            {"rule": s.rule.id, "alarm_id": s.active.alarm_id, "acknowledged": s.active.acknowledged,
             "severity": s.rule.severity, "class": s.alarm_class.value}
            for s in self._states if s.active is not None
        ]

    def resume(self, active: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Alarms active before a restart or reload (rule id -> {alarm_id, acknowledged}), active again under
        the same id: the next reading clears them (once) or not. Returns those whose rule is gone."""
        by_rule = {state.rule.id: state for state in self._states}
        orphans: dict[str, dict[str, Any]] = {}
        for rule_id, entry in active.items():
            state = by_rule.get(rule_id)
            if state is None:
                orphans[rule_id] = entry
            elif state.active is None and entry.get("alarm_id"):
                state.active = _Active(str(entry["alarm_id"]), bool(entry.get("acknowledged")))
        return orphans

    # ---- evaluation ----

    def _condition(self, state: _RuleState, now: float) -> Tri:
        rule = state.rule
        if isinstance(rule, StaleRule):
            return self._stale(state, now)
        if isinstance(rule, CommFailRule):
            return self._comm_fail(state)
        latest, taken_at = self._latest, self._taken_at
        if not isinstance(rule, AllOfRule | AnyOfRule):  # one condition, no freshness: the common case, kept lean
            point, evaluator = state.evals[0]
            return evaluator.update(latest.get(point), taken_at.get(point, now), now, False)
        values = [ev.update(latest.get(point), taken_at.get(point, now), now, True) for point, ev in state.evals]
        if isinstance(rule, AnyOfRule):
            return any_of(values)
        return all_of(values)

    def _stale(self, state: _RuleState, now: float) -> Tri:
        assert isinstance(state.rule, StaleRule)
        latest = self._latest.get(state.rule.point)
        if latest is not None and latest.good:
            state.last_good = self._taken_at[state.rule.point]
        if state.last_good is None and state.active is not None:
            return True  # resumed after a restart, quiet since: still stale (same id), until a good reading
        since = state.last_good if state.last_good is not None else self._started
        return since is not None and now - since > state.rule.max_age

    def _comm_fail(self, state: _RuleState) -> Tri:
        assert isinstance(state.rule, CommFailRule)
        latest = self._latest.get(state.rule.point)
        if latest is None:
            return None
        if latest.good:
            return False
        return state.fail_count >= state.rule.after if latest.quality in state.rule.qualities else None

    def _step(self, state: _RuleState, now: float, wall: float, sample: bool) -> list[AlarmTransition]:
        """``now``: the monotonic time the rule is evaluated at; ``wall``: the same moment on the wall clock."""
        if sample and isinstance(state.rule, CommFailRule):
            latest = self._latest[state.rule.point]
            state.fail_count = 0 if latest.quality not in state.rule.qualities else state.fail_count + 1
        value = self._condition(state, now)
        persistence = state.rule.persistence
        if sample and value is not None and persistence and persistence.m:
            state.history.append(value)
        if value is True:
            state.true_since = now if state.true_since is None else state.true_since
        elif value is False:
            state.true_since = None

        if state.active is None:
            if value is True and self._persisted(state, now):
                self._counter += 1
                state.active = _Active(f"{state.rule.id}-{int(wall * 1000)}-{self._counter}")
                return [self._transition(state, TransitionKind.RAISED, wall)]
            return []
        if value is False and not self._still_counting(state):
            transition = self._transition(state, TransitionKind.CLEARED, wall)
            state.active = None
            state.history.clear()
            return [transition]
        return []

    @staticmethod
    def _persisted(state: _RuleState, now: float) -> bool:
        p = state.rule.persistence
        if p is None:
            return True
        if p.duration is not None and (state.true_since is None or now - state.true_since < p.duration):
            return False
        return not (p.n is not None and sum(state.history) < p.n)

    @staticmethod
    def _still_counting(state: _RuleState) -> bool:
        """With n-of-m, one negative sample does not clear while n of the last m are still true."""
        p = state.rule.persistence
        return bool(p and p.n is not None and sum(state.history) >= p.n)

    def _transition(
        self, state: _RuleState, kind: TransitionKind, now: float, operator: str | None = None
    ) -> AlarmTransition:
        assert state.active is not None
        points: dict[str, dict[str, Any]] = {}
        for point in dict.fromkeys(state.points):
            reading = self._latest.get(point)
            if reading is not None:
                entry: dict[str, Any] = {"value": reading.value, "q": reading.quality.value,
                                         "ts": round(reading.source_time, 3)}
                if reading.attrs.get("confirmed") is not None:
                    entry["confirmed"] = reading.attrs.get("confirmed")
                points[point] = entry
        return AlarmTransition(
            kind=kind,
            rule_id=state.rule.id,
            alarm_id=state.active.alarm_id,
            severity=state.rule.severity,
            alarm_class=state.alarm_class,
            time=now,
            message=state.rule.message,
            points=points,
            operator=operator,
        )


def run_series(engine: RuleEngine, clock: RecordedClock, readings: Iterable[Reading]) -> list[AlarmTransition]:
    """Feed a recorded series on its own time (``engine`` runs on ``clock``): the clock follows each sample's
    time; tick at it (for time-based rules), then evaluate the sample."""
    out: list[AlarmTransition] = []
    for reading in readings:
        clock.advance(reading.source_time)
        out.extend(engine.tick(reading.source_time))
        out.extend(engine.evaluate(reading))
    return out
