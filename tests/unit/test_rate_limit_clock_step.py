"""The zone rate limit across a step of the wall clock (found by the chaos soak, issue 14).

The siren sounded while the gateway's clock was an hour ahead (an NTP step back was still to come); once the
clock was stepped back, every later danger alert was refused for an hour: "rate limit: zone dam: last
activation -3586 s ago (< 0 s)". A step must not silence a zone for the size of the step.
"""

from __future__ import annotations

from gateway.alerts.interlock import ZoneRateLimiter

T = 1_800_000_000.0
HOUR = 3600.0


def test_a_clock_stepped_back_does_not_silence_the_zone() -> None:
    limiter = ZoneRateLimiter(min_interval=0.0, max_per_hour=6)
    limiter.commit(["dam"], T + HOUR)  # sounded while the clock read an hour ahead
    assert limiter.problem(["dam"], T + 1.0) is None  # stepped back: the next danger alert sounds


def test_after_a_step_back_the_interval_is_measured_on_the_monotonic_clock() -> None:
    mono = [500.0]
    limiter = ZoneRateLimiter(min_interval=300.0, max_per_hour=6, monotonic=lambda: mono[0])
    limiter.commit(["dam"], T + HOUR)
    mono[0] += 100.0  # 100 s later in real time, the clock stepped back an hour meanwhile
    assert limiter.problem(["dam"], T + 100.0) is not None  # the minimum interval still holds ...
    mono[0] += 250.0
    assert limiter.problem(["dam"], T + 350.0) is None  # ... for its own length, not the step's
    for _ in range(5):
        limiter.commit(["dam"], T + 350.0)
    mono[0] += 310.0
    # the one before the step still counts towards the hourly cap (it was 660 s ago), with the five after it
    assert "activations in the last hour" in str(limiter.problem(["dam"], T + 660.0))


def test_without_a_step_the_wall_clock_decides_as_before() -> None:
    limiter = ZoneRateLimiter(min_interval=300.0, max_per_hour=6)
    limiter.commit(["dam"], T)
    assert limiter.problem(["dam"], T + 299.0) is not None
    assert limiter.problem(["dam"], T + 301.0) is None
