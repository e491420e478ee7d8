"""Known defect, found by the chaos soak's clock steps (issue 14): the rule engine measures its time conditions
(persistence ``duration``, ``stale`` ``max_age``, freshness ``within``, rate windows, detection ``hold``) on the
readings' wall-clock timestamps, so a step of the system clock moves them: a backward step of an hour holds a
persistent danger alarm back for that hour, a forward step raises ``stale`` for a point that is fresh.

Strict xfail: these fail on today's code and say what must hold; whoever moves the engine's durations onto a
step-free clock (monotonic, with the wall clock kept for ``ts`` and alarm ids) removes the markers.
"""

from __future__ import annotations

import pytest

from gateway.rules.config import RulesConfig
from gateway.rules.engine import RuleEngine, TransitionKind
from gateway.shared import Quality, Reading

T = 1_800_000_000.0
HOUR = 3600.0


@pytest.mark.xfail(strict=True, reason="rule durations are measured on the wall clock (docs/durability.md)")
def test_backward_step_does_not_hold_back_a_persistent_alarm() -> None:
    engine = RuleEngine(RulesConfig.model_validate([{"type": "threshold", "id": "danger", "point": "lvl",
                                                     "above": 1.0, "persistence": {"duration": 10}}]))
    raised = []
    for second in range(25):  # 25 s of real time above the level; the clock steps back 1 h after 5 s
        wall = T + second - (HOUR if second >= 5 else 0.0)
        raised += [t for t in engine.evaluate(Reading("lvl", 2.0, Quality.GOOD, wall)) + engine.tick(wall)
                   if t.kind is TransitionKind.RAISED]
    assert raised, "held true for 25 s with a 10 s persistence: the alarm must be raised"


@pytest.mark.xfail(strict=True, reason="rule durations are measured on the wall clock (docs/durability.md)")
def test_forward_step_does_not_make_a_fresh_point_stale() -> None:
    engine = RuleEngine(RulesConfig.model_validate([{"type": "stale", "id": "quiet", "point": "lvl",
                                                     "max_age": 60}]))
    out = []
    for second in range(5):
        out += engine.evaluate(Reading("lvl", 2.0, Quality.GOOD, T + second)) + engine.tick(T + second)
    out += engine.tick(T + 6 + HOUR)  # a second later in real time, the clock stepped forward 1 h
    assert not out, [t.alarm_id for t in out]
