from __future__ import annotations

from gateway.report import ReportFilter
from gateway.shared import PointInfo, Quality, Reading, ReportPolicy


def r(value: float | None, t: float, q: Quality = Quality.GOOD) -> Reading:
    return Reading("p", value, q, t)


def test_absolute_deadband_and_heartbeat() -> None:
    f = ReportFilter([PointInfo("p", report=ReportPolicy(deadband=0.5, heartbeat=60))])
    assert f.admit(r(10.0, 0)) == "first"
    assert f.admit(r(10.4, 1)) is None
    assert f.admit(r(10.6, 2)) == "change"  # measured from the last *reported* value, not the last sample
    assert f.admit(r(10.9, 3)) is None
    assert f.admit(r(10.9, 62.5)) == "heartbeat"


def test_percent_deadband() -> None:
    f = ReportFilter([PointInfo("p", report=ReportPolicy(deadband_percent=10))])
    assert f.admit(r(100.0, 0)) == "first"
    assert f.admit(r(109.0, 1)) is None
    assert f.admit(r(111.0, 2)) == "change"


def test_quality_change_always_reported_and_no_stale_repeat() -> None:
    f = ReportFilter([PointInfo("p", report=ReportPolicy(deadband=100, heartbeat=60))])
    assert f.admit(r(5.0, 0)) == "first"
    assert f.admit(r(None, 1, Quality.COMM_FAIL)) == "quality"
    assert f.admit(r(None, 2, Quality.COMM_FAIL)) is None  # once, then at the heartbeat
    assert f.admit(r(None, 70, Quality.COMM_FAIL)) == "heartbeat"
    assert f.admit(r(5.0, 71)) == "quality"  # back to good is reported even within the deadband


def test_clock_stepped_back_does_not_silence_the_heartbeat() -> None:
    f = ReportFilter([PointInfo("p", report=ReportPolicy(deadband=1, heartbeat=60))])
    assert f.admit(r(5.0, 10_000)) == "first"
    assert f.admit(r(5.0, 6_400)) == "heartbeat"  # NTP stepped the clock back an hour
    assert f.admit(r(5.0, 6_401)) is None
    assert f.admit(r(5.0, 6_461)) == "heartbeat"
