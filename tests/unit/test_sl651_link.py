"""The ``sl651`` link's pure parts: config and templates, journal records → windows, the reports it builds."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from drivers.sl651 import reports
from drivers.sl651.config import Sl651LinkConfig
from drivers.sl651.link import Sl651Profile
from drivers.sl651.message import decode, encode, observations
from gateway.config import ConfigError, load_site_text

TEMPLATES = Path(__file__).resolve().parents[2] / "config" / "sl651"


def config(**kw: Any) -> Sl651LinkConfig:
    return Sl651LinkConfig.model_validate({
        "type": "sl651", "station": "0033032601", "centre": 1, "primary": {"host": "c", "port": 5005},
        "points": {"dam.level": "ZU", "rain.total": "PT", "rtu.battery": "VT"}, **kw})


@pytest.mark.parametrize("name", ["reservoir.yaml", "rain-gauge.yaml", "river-level.yaml"])
def test_templates_validate(name: str) -> None:
    (link,) = yaml.safe_load((TEMPLATES / name).read_text())
    assert Sl651LinkConfig.model_validate(link).type == "sl651"


def test_config_refuses_unknown_elements_and_points() -> None:
    with pytest.raises(ValidationError, match="not a decimal element"):
        config(points={"dam.level": "ZZ"})
    with pytest.raises(ValidationError, match="not one of the link's points"):
        config(hourly_level="river.level")
    site = """
gateway: {id: gw-1}
links:
  - {type: sl651, station: "0033032601", centre: 1, primary: {host: c, port: 5005}, points: {nowhere: Z}}
"""
    with pytest.raises(ConfigError, match="unknown point 'nowhere'"):
        load_site_text(site)


class Rec:
    def __init__(self, seq: int, body: dict[str, Any]) -> None:
        self.seq, self.body = seq, body


def test_profile_puts_readings_in_their_window_and_skips_the_rest() -> None:
    base = 1_780_000_200.0  # on a 5-minute mark
    records = [Rec(1, {"point": "dam.level", "value": 23.4, "q": "good", "ts": base + 10}),
               Rec(2, {"point": "other", "value": 1, "q": "good", "ts": base + 11}),
               Rec(3, {"point": "dam.level", "value": None, "q": "comm_fail", "ts": base + 301}),
               Rec(4, {"kind": "alarm", "transition": "raised", "rule": "level.warning", "ts": base, "points": {}}),
               Rec(5, {"kind": "alarm", "transition": "cleared", "rule": "level.warning", "ts": base})]
    out = Sl651Profile(config(added_rules=["level.warning"])).encode(records)  # type: ignore[arg-type]
    assert [(m.topic, m.seqs) for m in out] == [
        ("alarm", (4,)), (f"mark/{int(base) + 300}", (1,)), (f"mark/{int(base) + 600}", (3,)), ("skip", (2, 5))]
    assert b"null" in out[2].payload  # a failed read is reported as missing (all F), never as a stale value


def test_timed_report_order_and_minimal_32h_over_beidou() -> None:
    mark = datetime(2026, 5, 28, 8, 0)
    values = {"rtu.battery": 12.6, "dam.level": 123.456, "rain.total": 880.5}
    full = reports.timed(config(), 7, mark, mark, values)
    assert [o.code for o in observations(full)] == ["PT", "ZU", "VT"]  # table order, voltage last (table 32)
    many = config(points={f"p{i}": code for i, code in enumerate(["ZU", "ZB", "PT", "PJ", "Q", "VT", "US", "AI"])},
                  max_frame_bytes=77)
    shrunk = reports.timed(many, 8, mark, mark, {f"p{i}": 1.0 for i in range(8)})
    assert len(encode(shrunk)) <= 77 and [o.code for o in observations(shrunk)][:3] == ["ZU", "ZB", "PJ"]


def test_added_report_puts_the_trigger_first() -> None:
    t = datetime(2026, 5, 28, 8, 3)
    message = reports.added(config(), 9, t, t, {"rtu.battery": 12.0, "dam.level": 150.6}, trigger=["dam.level"])
    assert message.frame.function == 0x33 and [o.code for o in observations(message)] == ["ZU", "VT"]


def test_hourly_report_lists_and_rain_spill() -> None:
    end = datetime(2026, 5, 28, 9, 0)
    totals = [100.0, 100.0, 100.5, 131.0, 131.0] + [131.0] * 8  # 30.5 mm in one step: 25.4 now, 5.1 next
    marks = {end - timedelta(minutes=5 * (12 - i)): {"rain.total": v, "dam.level": 120.0 + i / 100}
             for i, v in enumerate(totals)}
    message = reports.hourly(config(hourly_rain="rain.total", hourly_level="dam.level", level_base=100.0), 10, end,
                             end, marks, {"rain.total": 131.0, "rtu.battery": 12.5})
    assert message is not None
    got = decode(encode(message))
    obs = observations(got)
    rain = [o.value for o in obs if o.code == "DRP"]
    assert rain[:4] == [Decimal("0.0"), Decimal("0.5"), Decimal("25.4"), Decimal("5.1")]
    level = [o.value for o in obs if o.code == "DRZ1"]
    assert level[0] == Decimal("20.01") and len(level) == 12
    assert [o.code for o in obs if o.step is None] == ["PT", "VT"]
