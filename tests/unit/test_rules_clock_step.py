"""Clock steps (issue 14, found by the chaos soak): the rule engine's time conditions (persistence
``duration``, ``stale`` ``max_age``, freshness ``within``, rate windows, detection ``hold``) run on a step-free
clock, so a step of the wall clock moves none of them; transitions keep the wall clock (``ts``, alarm ids).

Before the fix they ran on the readings' wall-clock timestamps: a backward step of an hour held a persistent
danger alarm back for that hour, a forward step raised ``stale`` for a fresh point (these tests failed).
"""

from __future__ import annotations

from gateway.rules.clock import RecordedClock
from gateway.rules.config import RulesConfig
from gateway.rules.engine import RuleEngine, TransitionKind, run_series
from gateway.shared import Quality, Reading
from tests.clocks import HOUR, SteppedClock, T


def rules(*spec: dict[str, object]) -> RulesConfig:
    return RulesConfig.model_validate(list(spec))


DANGER = {"type": "threshold", "id": "danger", "point": "lvl", "above": 1.0, "persistence": {"duration": 10}}


def test_backward_step_does_not_hold_back_a_persistent_alarm() -> None:
    clock = SteppedClock()
    engine = RuleEngine(rules(DANGER), clock)
    raised = []
    for second in range(25):  # 25 s of real time above the level; the clock steps back 1 h after 5 s
        clock.elapsed, clock.step = second, (-HOUR if second >= 5 else 0.0)
        wall = clock.wall()
        raised += [(second, t) for t in engine.evaluate(Reading("lvl", 2.0, Quality.GOOD, wall)) + engine.tick(wall)
                   if t.kind is TransitionKind.RAISED]
    assert [second for second, _ in raised] == [10], "held true for 10 s of real time: raised then, once"
    transition = raised[0][1]
    assert transition.time == T + 10 - HOUR  # the wall clock, step included, stamps what leaves the engine
    assert transition.alarm_id.startswith(f"danger-{int((T + 10 - HOUR) * 1000)}-")


def test_forward_step_does_not_make_a_fresh_point_stale() -> None:
    clock = SteppedClock()
    engine = RuleEngine(rules({"type": "stale", "id": "quiet", "point": "lvl", "max_age": 60}), clock)
    out = []
    for second in range(5):
        clock.elapsed = second
        out += engine.evaluate(Reading("lvl", 2.0, Quality.GOOD, clock.wall())) + engine.tick(clock.wall())
    clock.elapsed, clock.step = 6, HOUR  # a second later in real time, the clock stepped forward 1 h
    out += engine.tick(clock.wall())
    assert not out, [t.alarm_id for t in out]
    clock.elapsed = 4 + 61  # the point really goes quiet: stale after max_age of real time, not before
    assert [t.kind for t in engine.tick(clock.wall())] == [TransitionKind.RAISED]


def test_forward_step_on_the_tick_path_does_not_raise_a_persistent_alarm_early() -> None:
    """No reading after the step: only the tick sees it. The siren must not sound 10 s early."""
    clock = SteppedClock()
    engine = RuleEngine(rules(DANGER), clock)
    assert engine.evaluate(Reading("lvl", 2.0, Quality.GOOD, clock.wall())) == []
    clock.elapsed, clock.step = 1, HOUR
    assert engine.tick(clock.wall()) == []
    clock.elapsed = 10
    assert [t.kind for t in engine.tick(clock.wall())] == [TransitionKind.RAISED]


def test_backward_step_does_not_hold_a_detection_for_an_hour() -> None:
    """A detection counts for ``hold`` seconds of real time, whatever the wall clock did meanwhile."""
    clock = SteppedClock()
    engine = RuleEngine(rules({"type": "detection", "id": "fire", "point": "cam1.fire", "min_confidence": 0.5,
                               "hold": 30}), clock)
    raised = engine.evaluate(Reading("cam1.fire", 0.9, Quality.GOOD, clock.wall(), attrs={"confirmed": True}))
    assert [t.kind for t in raised] == [TransitionKind.RAISED]
    clock.elapsed, clock.step = 20, -HOUR
    assert engine.tick(clock.wall()) == []
    clock.elapsed = 31
    assert [t.kind for t in engine.tick(clock.wall())] == [TransitionKind.CLEARED]


def test_a_device_stamped_reading_keeps_its_age() -> None:
    """Source time earlier than acquisition: the reading counts as taken when the device says (``within``)."""
    clock = SteppedClock()
    engine = RuleEngine(rules({"type": "all_of", "id": "both", "conditions": [
        {"type": "threshold", "point": "a", "above": 1.0, "within": 30},
        {"type": "threshold", "point": "b", "above": 1.0, "within": 30}]}), clock)
    clock.elapsed = 100
    assert engine.evaluate(Reading("a", 2.0, Quality.GOOD, clock.wall() - 40)) == []  # a device's 40 s old value
    assert engine.evaluate(Reading("b", 2.0, Quality.GOOD, clock.wall())) == []  # a too old to count with b
    assert engine.evaluate(Reading("a", 2.0, Quality.GOOD, clock.wall() - 5))  # 5 s old: both true


def test_a_replay_runs_on_the_recorded_time() -> None:
    """``fieldgate rules test --replay``: the series' own time, whatever the box's clock does meanwhile."""
    clock = RecordedClock()
    engine = RuleEngine(rules(DANGER), clock)
    series = [Reading("lvl", 2.0, Quality.GOOD, T + second) for second in (0, 5, 9, 10, 11)]
    raised = [t for t in run_series(engine, clock, series) if t.kind is TransitionKind.RAISED]
    assert [t.time for t in raised] == [T + 10]


def test_a_resumed_stale_alarm_stays_until_its_point_is_read_again() -> None:
    """Continuity (issue 14): before, a stale alarm resumed after a restart cleared at the first tick (the
    point not read yet counted as fresh from the start) and came back under a new id ``max_age`` later."""
    clock = SteppedClock()
    engine = RuleEngine(rules({"type": "stale", "id": "quiet", "point": "lvl", "max_age": 60}), clock)
    engine.resume({"quiet": {"alarm_id": "quiet-1", "acknowledged": False}})
    out = []
    for second in range(0, 200, 5):  # the point stays quiet for longer than max_age after the restart
        clock.elapsed = second
        out += engine.tick(clock.wall())
    assert out == [], [(t.kind, t.alarm_id) for t in out]
    clock.elapsed = 201
    out = engine.evaluate(Reading("lvl", 2.0, Quality.GOOD, clock.wall())) + engine.tick(clock.wall())
    assert [(t.kind, t.alarm_id) for t in out] == [(TransitionKind.CLEARED, "quiet-1")]
