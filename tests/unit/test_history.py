"""The trend history: minute buckets batched to SQLite, bounded by age and size, downsampled, drawn as SVG."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from types import SimpleNamespace

from gateway.history import HistoryConfig, HistoryService
from gateway.history.chart import render_trend
from gateway.i18n import CHINESE, speaking
from gateway.rules import RulesConfig
from gateway.rules.engine import AlarmClass, AlarmTransition, TransitionKind
from gateway.shared import Quality, Reading
from gateway.status import StatusConfig
from sim.support import free_port
from tests.unit.test_status_server import FakeGateway, Running

T0 = 1_764_000_000.0  # a minute boundary
RULES = RulesConfig.model_validate([
    {"type": "threshold", "id": "level.high", "point": "level", "above": 12.0, "severity": "severe"},
    {"type": "all_of", "id": "level.and.rain", "conditions": [
        {"type": "threshold", "point": "level", "below": 2.0}, {"type": "threshold", "point": "rain", "above": 5}]},
])


def service(tmp_path: Path, clock: list[float], **settings: float) -> HistoryService:
    return HistoryService(HistoryConfig.model_validate(settings), tmp_path / "history.sqlite", RULES,
                          clock=lambda: clock[0])


def transition(kind: TransitionKind, at: float, operator: str | None = None) -> AlarmTransition:
    return AlarmTransition(kind, "level.high", "level.high-1", "severe", AlarmClass.PROCESS, at,
                           points={"level": {"value": 13.0, "q": "good"}}, operator=operator)


def test_minute_buckets_are_written_in_one_batch_and_read_back_with_what_is_still_in_memory(tmp_path: Path) -> None:
    clock = [T0 + 600]
    history = service(tmp_path, clock)
    for i in range(120):  # two minutes of 1 s samples, one failed read
        quality = Quality.COMM_FAIL if i == 5 else Quality.GOOD
        history.take(Reading("level", None if i == 5 else 10.0 + i / 100, quality, T0 + i, unit="m"))
    history.take(Reading("name", "text", Quality.GOOD, T0))  # not a number: not charted
    asyncio.run(history.flush())
    assert history.flushes == 1
    history.take(Reading("level", 20.0, Quality.GOOD, T0 + 180))  # in memory only
    step, buckets = history.series("level", 3600, now=T0 + 600)
    assert step == 60
    assert [b["t"] for b in buckets] == [T0, T0 + 60, T0 + 180]
    first = buckets[0]
    assert (first["low"], first["high"], first["bad"]) == (10.0, 10.59, 1)
    assert abs(first["mean"] - (sum(10.0 + i / 100 for i in range(60)) - 10.05) / 59) < 1e-9
    assert buckets[2]["mean"] == 20.0
    assert history.series("name", 3600, now=T0 + 600)[1] == []
    assert history.units == {"level": "m"}


def test_long_spans_are_downsampled_to_a_bounded_number_of_points(tmp_path: Path) -> None:
    clock = [T0 + 86400]
    history = service(tmp_path, clock)
    for minute in range(24 * 60):
        history.take(Reading("level", float(minute % 60), Quality.GOOD, T0 + minute * 60))
    step, buckets = history.series("level", 86400, now=T0 + 86399)
    assert step == 120 and len(buckets) == 720
    assert (buckets[0]["low"], buckets[0]["high"], buckets[0]["mean"]) == (0.0, 1.0, 0.5)


def test_age_and_size_bounds(tmp_path: Path) -> None:
    clock = [T0]
    history = service(tmp_path, clock, retention=3600, max_bytes=1024 * 1024)
    history.take(Reading("level", 1.0, Quality.GOOD, T0 - 7200))  # older than the retention
    history.take(Reading("level", 2.0, Quality.GOOD, T0 - 60))
    asyncio.run(history.flush())
    assert [b["mean"] for b in history.series("level", 86400, now=T0)[1]] == [2.0]
    for batch in range(8):  # ~1.3 MB of buckets: the oldest go until the file is under 1 MiB
        for point in range(100):
            for minute in range(100):
                history.take(Reading(f"p{point:03d}.with.a.long.name", 1.0, Quality.GOOD,
                                     T0 - 3000 + batch * 0 + minute * 30 + point * 0.001))
        asyncio.run(history.flush())
    assert history.store.size_bytes() <= 1024 * 1024 + 256 * 1024  # live pages bounded; a few free pages remain


def test_alarm_history_and_periods(tmp_path: Path) -> None:
    clock = [T0 + 3600]
    history = service(tmp_path, clock)
    history.on_transition(transition(TransitionKind.RAISED, T0 + 100))
    history.on_transition(transition(TransitionKind.ACKNOWLEDGED, T0 + 200, operator="wang"))
    asyncio.run(history.flush())
    history.on_transition(transition(TransitionKind.CLEARED, T0 + 900))
    history.on_transition(transition(TransitionKind.RAISED, T0 + 3000))
    rows = history.alarm_rows()
    assert [(r.kind, r.by) for r in rows] == [("raised", None), ("acknowledged", "wang"), ("cleared", None),
                                               ("raised", None)]
    periods = history.alarm_periods("level", T0)
    assert [(p.start, p.end) for p in periods] == [(T0 + 100, T0 + 900), (T0 + 3000, None)]
    assert history.alarm_periods("rain", T0) == []
    assert sorted((t.rule, t.side, t.level) for t in history.thresholds["level"]) == [
        ("level.and.rain", "below", 2.0), ("level.high", "above", 12.0)]


def test_the_chart_draws_data_thresholds_and_alarm_periods_and_escapes_text(tmp_path: Path) -> None:
    clock = [T0 + 3600]
    history = service(tmp_path, clock)
    for minute in range(60):
        history.take(Reading("level", 10.0 + minute / 10, Quality.GOOD, T0 + minute * 60, unit="<m>"))
    history.on_transition(transition(TransitionKind.RAISED, T0 + 1500))
    step, buckets = history.series("level", 3600, now=T0 + 3599)
    with speaking(CHINESE):
        svg = render_trend("level", "<m>", T0, T0 + 3600, step, buckets, history.thresholds["level"],
                           history.alarm_periods("level", T0))
    assert svg.startswith("<svg") and 'data-buckets="60"' in svg and 'data-alarm-periods="1"' in svg
    assert svg.count('class="threshold"') == 2 and 'data-level="12"' in svg
    assert "高于 12（level.high）" in svg and "&lt;m&gt;" in svg and "<m>" not in svg
    empty = render_trend("level", "m", T0, T0 + 3600, 60, [], [], [])
    assert 'class="no-data"' in empty


def test_the_status_server_serves_the_chart_and_alarm_history(tmp_path: Path) -> None:
    import time

    clock = [time.time()]
    history = service(tmp_path, clock)
    for i in range(30):
        history.take(Reading("level", 11.0 + i / 10, Quality.GOOD, clock[0] - 1800 + i * 60, unit="m"))
    history.on_transition(transition(TransitionKind.RAISED, clock[0] - 600))
    view = FakeGateway()
    view.gateway = SimpleNamespace(history=history, latest={}, config=None)  # type: ignore[attr-defined]
    server = Running(StatusConfig(listen=f"127.0.0.1:{free_port()}"), view)
    base = f"http://127.0.0.1:{server.port}"
    try:
        with urllib.request.urlopen(base + "/trend.svg?point=level&span=1h", timeout=10) as response:
            assert response.headers["Content-Type"].startswith("image/svg+xml")
            svg = response.read().decode()
        assert 'data-point="level"' in svg and 'data-buckets="30"' in svg and 'data-alarm-periods="1"' in svg
        request = urllib.request.Request(base + "/trend.svg?point=level&span=24h",
                                         headers={"Accept-Language": "zh-CN"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert "高于 12" in response.read().decode()
        with urllib.request.urlopen(base + "/api/alarm-history", timeout=10) as response:
            alarms = json.loads(response.read())["alarms"]
        assert [(a["kind"], a["alarm_id"]) for a in alarms] == [("raised", "level.high-1")]
        for bad, status in (("/trend.svg?point=nope", 404), ("/trend.svg?point=level&span=1y", 400)):
            try:
                urllib.request.urlopen(base + bad, timeout=10)
                raise AssertionError(bad)
            except urllib.error.HTTPError as exc:
                assert exc.code == status
    finally:
        server.stop()
