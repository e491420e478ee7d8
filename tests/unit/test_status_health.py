"""The compact upstream health message: numbers from the snapshot, CPU temperature, disk free."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.health import cpu_temperature_c, health_message


def zone(root: Path, index: int, kind: str, millideg: str) -> None:
    path = root / f"thermal_zone{index}"
    path.mkdir(parents=True)
    (path / "type").write_text(kind + "\n")
    (path / "temp").write_text(millideg + "\n")


def test_message_from_a_full_snapshot(tmp_path: Path) -> None:
    thermal = tmp_path / "thermal"
    zone(thermal, 0, "acpitz", "30000")
    zone(thermal, 1, "cpu-thermal", "54321")
    snapshot = {
        "gateway": {"id": "gw", "uptime_s": 3600.7},
        "journal": {"backlog": 12, "oldest_age_s": 4.5, "drops": 1, "committed": 99},
        "links": [{"name": "county", "connected": True}, {"name": "sat", "connected": False}],
        "devices": [{"device": "a", "online": True}, {"device": "b", "online": False}, {"device": "c", "online": True}],
        "alarms": [{"alarm_id": "x"}],
        "loops": [{"name": "bus rtu", "overdue": True}, {"name": "journal", "overdue": False}],
    }
    msg = health_message(snapshot, tmp_path, thermal_dir=thermal, clock=lambda: 1234.56)
    assert msg["cpu_temp_c"] == 54.3  # the CPU zone, not the first one
    assert isinstance(msg["disk_free_mb"], int) and 0 <= msg["disk_free_pct"] <= 100
    del msg["disk_free_mb"], msg["disk_free_pct"]
    assert msg == {"ts": 1234.6, "uptime_s": 3600, "backlog": 12, "oldest_age_s": 4.5, "drops": 1,
                   "links": {"county": 1, "sat": 0}, "devices_online": 2, "devices_total": 3, "alarms": 1,
                   "overdue": ["bus rtu"], "cpu_temp_c": 54.3}
    assert len(json.dumps(msg)) < 400  # compact
    snapshot["cameras"] = [{"name": "ridge", "state": "failed"}, {"name": "valley", "state": "running"}]
    assert health_message(snapshot, tmp_path, thermal_dir=thermal)["cameras"] == {"ridge": 0, "valley": 1}


def test_absent_facts_are_null_not_invented(tmp_path: Path) -> None:
    msg = health_message({}, tmp_path / "no" / "such" / "dir", thermal_dir=tmp_path / "none")
    assert msg["cpu_temp_c"] is None and msg["disk_free_mb"] is None and msg["disk_free_pct"] is None
    assert msg["backlog"] is None and msg["uptime_s"] is None
    assert msg["links"] == {} and msg["devices_total"] == 0 and msg["overdue"] == []


def test_broken_sensors_are_skipped(tmp_path: Path) -> None:
    zone(tmp_path, 0, "cpu-thermal", "garbage")
    zone(tmp_path, 1, "soc", "-274000")  # disconnected sensor
    assert cpu_temperature_c(tmp_path) is None
    zone(tmp_path, 2, "gpu", "41000")
    assert cpu_temperature_c(tmp_path) == 41.0  # no CPU zone: the first sane one


def test_malformed_snapshot_values_do_not_crash(tmp_path: Path) -> None:
    snapshot = {"journal": {"backlog": "many", "drops": True}, "links": [None, {"connected": True}],
                "devices": "x", "gateway": []}
    msg = health_message(snapshot, tmp_path, thermal_dir=tmp_path)
    assert msg["backlog"] is None and msg["drops"] is None and msg["links"] == {} and msg["devices_total"] == 0
