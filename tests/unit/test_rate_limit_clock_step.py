"""The zone rate limit across a step of the wall clock (found by the chaos soak, issue 14).

Back: the siren sounded while the gateway's clock was an hour ahead (an NTP step back was still to come); once
the clock was stepped back, every later danger alert was refused for an hour: "rate limit: zone dam: last
activation -3586 s ago (< 0 s)". A step must not silence a zone for the size of the step.

Forward: the 1-hour soak counted more than 60 siren activations within a real hour. A forward step made every
activation look an hour old, so the hourly cap and the minimum interval started again. Only real elapsed time
may free them (the forward-step tests failed before the fix: the 61st activation and the early one sounded).
"""

from __future__ import annotations

from typing import Any

from gateway.alerts.audit import History
from gateway.alerts.interlock import Interlock, ZoneRateLimiter
from tests.clocks import HOUR, SteppedClock
from tests.unit.test_alerts import broadcast_config


def limiter(clock: SteppedClock, min_interval: float, max_per_hour: int) -> ZoneRateLimiter:
    return ZoneRateLimiter(min_interval=min_interval, max_per_hour=max_per_hour, monotonic=clock.monotonic)


def test_a_clock_stepped_back_does_not_silence_the_zone() -> None:
    clock = SteppedClock()
    zone = limiter(clock, min_interval=0.0, max_per_hour=6)
    clock.step = HOUR
    zone.commit(["dam"], clock.wall())  # sounded while the clock read an hour ahead
    clock.advance(1.0)
    clock.step = 0.0
    assert zone.problem(["dam"], clock.wall()) is None  # stepped back: the next danger alert sounds


def test_after_a_step_back_the_interval_is_measured_on_the_monotonic_clock() -> None:
    clock = SteppedClock()
    zone = limiter(clock, min_interval=300.0, max_per_hour=6)
    clock.step = HOUR
    zone.commit(["dam"], clock.wall())
    clock.advance(100.0)  # 100 s later in real time, the clock stepped back an hour meanwhile
    clock.step = 0.0
    assert zone.problem(["dam"], clock.wall()) is not None  # the minimum interval still holds ...
    clock.advance(250.0)
    assert zone.problem(["dam"], clock.wall()) is None  # ... for its own length, not the step's
    for _ in range(5):
        zone.commit(["dam"], clock.wall())
    clock.advance(310.0)
    # the one before the step still counts towards the hourly cap (it was 660 s ago), with the five after it
    assert "activations in the last hour" in str(zone.problem(["dam"], clock.wall()))


def test_without_a_step_the_clocks_agree_and_decide_as_before() -> None:
    clock = SteppedClock()
    zone = limiter(clock, min_interval=300.0, max_per_hour=6)
    zone.commit(["dam"], clock.wall())
    clock.advance(299.0)
    assert zone.problem(["dam"], clock.wall()) is not None
    clock.advance(2.0)
    assert zone.problem(["dam"], clock.wall()) is None


def test_a_clock_stepped_forward_does_not_restart_the_hourly_cap() -> None:
    clock = SteppedClock()
    zone = limiter(clock, min_interval=10.0, max_per_hour=60)
    for _ in range(60):
        assert zone.problem(["dam"], clock.wall()) is None
        zone.commit(["dam"], clock.wall())
        clock.advance(10.0)  # 60 activations in 600 s of real time
    clock.step = HOUR  # NTP (or the soak's libfaketime) steps the clock an hour forward
    assert "60 activations in the last hour" in str(zone.problem(["dam"], clock.wall()))
    clock.advance(HOUR - 600.0 - 1.0)  # still within the real hour of the first one
    assert "60 activations in the last hour" in str(zone.problem(["dam"], clock.wall()))
    clock.advance(2.0)  # the first one is a real hour old: one more may sound
    assert zone.problem(["dam"], clock.wall()) is None


def test_a_clock_stepped_forward_does_not_cut_the_minimum_interval() -> None:
    clock = SteppedClock()
    zone = limiter(clock, min_interval=300.0, max_per_hour=60)
    zone.commit(["dam"], clock.wall())
    clock.advance(10.0)
    clock.step = HOUR
    assert "last activation 10 s ago" in str(zone.problem(["dam"], clock.wall()))
    clock.advance(291.0)
    assert zone.problem(["dam"], clock.wall()) is None


def _accepted(at: float) -> dict[str, Any]:
    alert = {"identifier": f"a-{at}", "msgType": "Alert", "areas": ["dam"]}
    return {"kind": "decision", "ts": at,
            "data": {"alert": alert, "accepted": True, "outputs": ["pa"], "claimed": True, "at": at}}


def _restarted(clock: SteppedClock, *ats: float) -> Interlock:
    config = broadcast_config(rate_limit={"min_interval": 300, "max_per_hour": 2})
    lock = Interlock(config, monotonic=clock.monotonic)
    lock.restore(History([_accepted(at) for at in ats], True), clock.wall())
    return lock


def test_activations_read_back_at_a_restart_keep_their_age() -> None:
    clock = SteppedClock()
    lock = _restarted(clock, clock.wall() - 100.0)  # sounded 100 s before this start
    assert "last activation 100 s ago" in str(lock.limiter.problem(["dam"], clock.wall()))
    clock.advance(201.0)
    assert lock.limiter.problem(["dam"], clock.wall()) is None  # 301 s of real time, not 300 s after the start
    lock = _restarted(clock, clock.wall() - 3000.0, clock.wall() - 2000.0)
    assert "2 activations in the last hour" in str(lock.limiter.problem(["dam"], clock.wall()))
    clock.advance(601.0)  # the first one is an hour old now
    assert lock.limiter.problem(["dam"], clock.wall()) is None


def test_an_activation_read_back_from_ahead_of_the_clock_counts_from_the_restart() -> None:
    clock = SteppedClock()
    lock = _restarted(clock, clock.wall() + HOUR)  # made while the clock was an hour ahead, stepped back since
    assert "last activation 0 s ago" in str(lock.limiter.problem(["dam"], clock.wall()))
    clock.advance(300.0)
    assert lock.limiter.problem(["dam"], clock.wall()) is None  # held for min_interval, not for the step
