"""Rule engine: thresholds with hysteresis, persistence, rate, stale/comm-fail faults, combos, replay."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.rules.clock import RecordedClock
from gateway.rules.config import RulesConfig
from gateway.rules.engine import AlarmClass, AlarmTransition, RuleEngine, TransitionKind
from gateway.rules.replay import ReplayError, replay
from gateway.shared import Quality, Reading


class OnRecordedTime:
    """The engine on its inputs' own time, as a replay runs it: each reading's ``ts`` and each tick's ``now``
    advance the engine's clock (these tests write time as small numbers, not as the box's clock)."""

    def __init__(self, rules: RulesConfig) -> None:
        self.clock = RecordedClock()
        self.engine = RuleEngine(rules, self.clock)

    def evaluate(self, reading: Reading) -> list[AlarmTransition]:
        self.clock.advance(reading.source_time)
        return self.engine.evaluate(reading)

    def tick(self, now: float) -> list[AlarmTransition]:
        self.clock.advance(now)
        return self.engine.tick(now)

    def acknowledge(self, key: str, operator: str, now: float) -> list[AlarmTransition]:
        return self.engine.acknowledge(key, operator, now)

    def active_alarms(self) -> list[dict[str, Any]]:
        return self.engine.active_alarms()


def engine(*rules: dict[str, Any]) -> OnRecordedTime:
    return OnRecordedTime(RulesConfig.model_validate(list(rules)))


def good(point: str, value: float, t: float, **attrs: Any) -> Reading:
    return Reading(point, value, Quality.GOOD, t, attrs=attrs)


def kinds(transitions: list[Any]) -> list[str]:
    return [f"{t.rule_id}:{t.kind.value}" for t in transitions]


LEVEL = {"type": "threshold", "id": "hi", "point": "lvl", "above": 10.0, "hysteresis": 0.5}


def test_threshold_hysteresis_raise_ack_clear() -> None:
    e = engine(LEVEL)
    assert e.evaluate(good("lvl", 9.9, 1)) == []
    raised = e.evaluate(good("lvl", 10.0, 2))
    assert kinds(raised) == ["hi:raised"] and raised[0].alarm_class is AlarmClass.PROCESS and raised[0].trusted
    assert e.evaluate(good("lvl", 9.6, 3)) == []  # inside the hysteresis band: still raised
    acked = e.acknowledge("hi", "zhang", 4)
    assert acked[0].kind is TransitionKind.ACKNOWLEDGED and acked[0].operator == "zhang"
    cleared = e.evaluate(good("lvl", 9.4, 5))
    assert kinds(cleared) == ["hi:cleared"] and cleared[0].alarm_id == raised[0].alarm_id


def test_non_good_quality_neither_raises_nor_clears() -> None:
    e = engine(LEVEL)
    assert e.evaluate(Reading("lvl", 99.0, Quality.UNCERTAIN, 1)) == []
    assert e.evaluate(Reading("lvl", None, Quality.COMM_FAIL, 2)) == []
    assert kinds(e.evaluate(good("lvl", 11, 3))) == ["hi:raised"]
    assert e.evaluate(Reading("lvl", None, Quality.COMM_FAIL, 4)) == []  # a dead gauge does not clear it
    assert len(e.active_alarms()) == 1


def test_persistence_for_seconds_uses_tick() -> None:
    e = engine({**LEVEL, "persistence": {"duration": 30}})
    assert e.evaluate(good("lvl", 11, 0)) == []
    assert e.tick(29) == []
    assert kinds(e.tick(31)) == ["hi:raised"]


def test_persistence_n_of_m() -> None:
    e = engine({**LEVEL, "hysteresis": 0, "persistence": {"n": 3, "m": 5}})
    out = []
    for t, v in enumerate([11, 9, 11, 9, 11]):
        out += e.evaluate(good("lvl", v, t))
    assert kinds(out) == ["hi:raised"]


def test_rate_of_change_rise() -> None:
    e = engine({"type": "rate_of_change", "id": "rise", "point": "lvl", "rise_per_min": 0.5, "window": 120})
    out = []
    for i in range(10):
        out += e.evaluate(good("lvl", 5.0 + 0.01 * i, i * 15.0))  # 0.04/min: calm
    assert out == []
    for i in range(10, 20):
        out += e.evaluate(good("lvl", 5.1 + 0.25 * (i - 10), i * 15.0))  # 1 m/min
    assert kinds(out) == ["rise:raised"]


def test_stale_and_comm_fail_are_fault_alarms() -> None:
    e = engine({"type": "stale", "id": "st", "point": "lvl", "max_age": 60},
               {"type": "comm_fail", "id": "cf", "point": "lvl", "after": 2})
    e.evaluate(good("lvl", 1, 0))
    assert kinds(e.tick(61)) == ["st:raised"]
    assert e.evaluate(Reading("lvl", None, Quality.COMM_FAIL, 62)) == []
    out = e.evaluate(Reading("lvl", None, Quality.COMM_FAIL, 63))
    assert kinds(out) == ["cf:raised"] and out[0].alarm_class is AlarmClass.FAULT and not out[0].trusted
    assert sorted(kinds(e.evaluate(good("lvl", 1, 64)))) == ["cf:cleared", "st:cleared"]


def test_smoke_detection_and_gas_combination() -> None:
    e = engine({"type": "all_of", "id": "fire", "severity": "extreme", "conditions": [
        {"type": "detection", "point": "cam1.smoke", "min_confidence": 0.6, "hold": 30},
        {"type": "threshold", "point": "gas", "above": 25.0, "within": 60},
    ]})
    assert e.evaluate(good("gas", 40, 0)) == []  # gas alone
    assert e.evaluate(good("cam1.smoke", 0.9, 1, confirmed=False)) == []  # unconfirmed frame
    assert e.evaluate(good("cam1.smoke", 0.5, 2, confirmed=True)) == []  # too weak
    raised = e.evaluate(good("cam1.smoke", 0.8, 3, confirmed=True))
    assert kinds(raised) == ["fire:raised"] and set(raised[0].points) == {"cam1.smoke", "gas"}
    assert kinds(e.tick(40)) == ["fire:cleared"]  # smoke detection expired after hold


def test_combination_ignores_old_gas_value() -> None:
    e = engine({"type": "all_of", "id": "fire", "conditions": [
        {"type": "detection", "point": "cam1.smoke", "require_confirmed": False},
        {"type": "threshold", "point": "gas", "above": 25.0, "within": 60},
    ]})
    e.evaluate(good("gas", 40, 0))
    assert e.evaluate(good("cam1.smoke", 0.9, 100)) == []


@pytest.mark.parametrize("bad", [
    [{"type": "threshold", "id": "x", "point": "p"}],  # neither above nor below
    [{"type": "threshold", "id": "x", "point": "p", "above": 1, "below": 0}],
    [{"type": "threshold", "id": "x", "point": "p", "above": 1, "persistence": {"n": 4, "m": 3}}],
    [{"type": "threshold", "id": "x", "point": "p", "above": 1}, {"type": "stale", "id": "x", "point": "p",
                                                                  "max_age": 5}],
    [{"type": "nonsense", "id": "x"}],
])
def test_bad_rules_refused(bad: list[dict[str, Any]]) -> None:
    with pytest.raises(ValidationError):
        RulesConfig.model_validate(bad)


def test_replay_reports_alarms(tmp_path: Path) -> None:
    csv = tmp_path / "s.csv"
    csv.write_text("time,point,value,quality\n"
                   "2024-07-01T00:00:00Z,lvl,9.0,good\n"
                   "2024-07-01T00:01:00Z,lvl,,comm_fail\n"
                   "2024-07-01T00:02:00Z,lvl,10.5,good\n"
                   "2024-07-01T00:03:00Z,lvl,9.0,good\n")
    lines = replay(RulesConfig.model_validate([LEVEL]), csv, {"hi": "zones ['dam']"})
    assert "RAISED" in lines[0] and "hi" in lines[0] and "automatic broadcast" in lines[0]
    assert "CLEARED" in lines[1]
    assert lines[-1].startswith("4 readings, 1 alarm(s) raised")


@pytest.mark.parametrize("body, message", [
    ("when,point,value\n1,lvl,2\n", "header lacks"),
    ("time,point,value\nyesterday,lvl,2\n", "line 2"),
    ("time,point,value\n1,lvl,abc\n", "line 2"),
    ("time,point,value,quality\n1,lvl,2,weird\n", "unknown quality"),
    ("time,point,value\n5,lvl,2\n1,lvl,2\n", "backwards"),
])
def test_replay_bad_csv_gives_clear_error(tmp_path: Path, body: str, message: str) -> None:
    csv = tmp_path / "s.csv"
    csv.write_text(body)
    with pytest.raises(ReplayError, match=message):
        replay(RulesConfig.model_validate([LEVEL]), csv)
