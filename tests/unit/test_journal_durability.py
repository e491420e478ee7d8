"""Journal bounds, drop policy, disk full, damage and per-link delivery (docs/durability.md)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.journal import Journal, JournalFull, JournalSettings, JournalUnavailable
from gateway.shared import Quality, Reading, RecordClass

ALL = set(RecordClass)
MiB = 1024 * 1024


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def reading(point: str, value: float, t: float = 1000.0) -> Reading:
    return Reading(point, value, Quality.GOOD, t, "m", attrs={"pad": "x" * 100})


def settings(**kw: object) -> JournalSettings:
    base: dict[str, object] = {"reserve_bytes": 0, "min_free_bytes": 0}
    base.update(kw)
    return JournalSettings.model_validate(base)


def fill_telemetry(j: Journal, n: int, points: int = 10, start: int = 0) -> None:
    for base in range(start, start + n, 500):
        j.append([(RecordClass.TELEMETRY, reading(f"p{i % points}", float(i)))
                  for i in range(base, min(base + 500, start + n))])


def test_capacity_drops_oldest_telemetry_never_alarms(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite", {"mqtt": ALL}, settings(max_bytes=MiB))
    alarms = j.append([(RecordClass.ALARM, reading("alarm", 1.0)), (RecordClass.EVIDENCE, reading("ev", 2.0))])
    fill_telemetry(j, 20_000)
    stats = j.stats()
    assert stats["bytes"] <= MiB
    assert stats["dropped"]["telemetry"] > 0
    assert stats["dropped_by_reason"]["capacity/telemetry"] == stats["dropped"]["telemetry"]
    kept = {row[0] for row in j.db.execute("SELECT seq FROM records")}
    assert set(alarms) <= kept
    telemetry = sorted(s for (s,) in j.db.execute("SELECT seq FROM records WHERE cls = 4"))
    # Oldest first: what is left is the newest run of telemetry, without holes.
    assert telemetry == list(range(telemetry[0], telemetry[-1] + 1))
    assert telemetry[-1] == j.last_seq() or j.db.execute(
        "SELECT cls FROM records WHERE seq = ?", (j.last_seq(),)).fetchone()[0] == RecordClass.EVENT
    # Every drop is told: an event record with the counts, and counters that survive a restart.
    events = [r.body for r in j.pending("mqtt", 10_000) if r.cls is RecordClass.EVENT]
    assert events and events[0]["kind"] == "dropped" and events[0]["records"]["capacity/telemetry"] > 0
    dropped = stats["dropped"]["telemetry"]
    j.close()
    j = Journal(tmp_path / "j.sqlite", {"mqtt": ALL}, settings(max_bytes=MiB))
    assert j.stats()["dropped"]["telemetry"] == dropped


def test_bulk_goes_before_telemetry(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite", {"mqtt": ALL}, settings(max_bytes=MiB))
    j.append([(RecordClass.BULK, reading("snap", float(i))) for i in range(200)])
    fill_telemetry(j, 9_000)
    stats = j.stats()
    assert stats["dropped"]["bulk"] == 200
    assert j.counts[RecordClass.BULK] == 0


def test_thinning_keeps_one_value_per_point_per_interval_before_dropping(tmp_path: Path) -> None:
    clock = Clock()
    j = Journal(tmp_path / "j.sqlite", {"mqtt": ALL}, settings(max_bytes=MiB, thin_to=60.0), clock=clock)
    for minute in range(40):  # 40 minutes, 2 points, 200 values per point per minute
        clock.t = 1_800_000_000.0 + minute * 60
        j.append([(RecordClass.TELEMETRY, reading(f"p{i % 2}", float(i))) for i in range(400)])
    stats = j.stats()
    assert stats["dropped_by_reason"].get("thinned/telemetry", 0) > 0
    assert "capacity/telemetry" not in stats["dropped_by_reason"], "thinning alone should have made room"
    rows = j.db.execute("SELECT point, created FROM records WHERE cls = 4 ORDER BY seq").fetchall()
    per_bucket: dict[tuple[str, int], int] = {}
    for point, created in rows:
        key = (point, int(created // 60))
        per_bucket[key] = per_bucket.get(key, 0) + 1
    # The oldest minutes were thinned to one value per point; every minute still has a value per point.
    assert per_bucket[("p0", (1_800_000_000 // 60))] == 1
    assert {k[1] for k in per_bucket} == {int((1_800_000_000 + m * 60) // 60) for m in range(40)}


def test_disk_full_applies_drop_policy_and_keeps_alarms(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite", {"mqtt": ALL}, settings())
    alarm = j.append([(RecordClass.ALARM, reading("alarm", 1.0))])
    fill_telemetry(j, 2_000)
    # The file system is full: SQLite cannot grow the file past its current size (SQLITE_FULL).
    pages = j.db.execute("PRAGMA page_count").fetchone()[0]
    j.db.execute(f"PRAGMA max_page_count={pages}")
    fill_telemetry(j, 6_000, start=2_000)
    assert j.disk_full_events >= 1
    stats = j.stats()
    # The file system itself has room (only SQLite's page cap is hit), so the journal is not held small
    # afterwards; every SQLITE_FULL made room by dropping the oldest telemetry, counted as such.
    assert stats["dropped_by_reason"]["disk_full/telemetry"] > 0
    assert j.db.execute("SELECT count(*) FROM records WHERE seq = ?", (alarm[0],)).fetchone()[0] == 1
    assert j.append([(RecordClass.ALARM, reading("alarm", 2.0))])  # alarms still go in
    newest = j.db.execute("SELECT max(seq) FROM records WHERE cls = 4").fetchone()[0]
    assert newest is not None and newest > 6_000


def test_journal_full_of_alarms_refuses_loudly(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite", {"mqtt": ALL}, settings())
    j.append([(RecordClass.ALARM, reading("alarm", float(i))) for i in range(50)])
    pages = j.db.execute("PRAGMA page_count").fetchone()[0]
    j.db.execute(f"PRAGMA max_page_count={pages}")
    with pytest.raises(JournalFull):
        for i in range(10_000):
            j.append([(RecordClass.ALARM, reading("alarm", float(i)))])
    assert j.stats()["by_class"]["alarm"] >= 50  # nothing was dropped to make room


def test_age_bound_drops_old_telemetry_not_alarms(tmp_path: Path) -> None:
    clock = Clock()
    j = Journal(tmp_path / "j.sqlite", {"mqtt": ALL}, settings(max_age="1d"), clock=clock)
    j.append([(RecordClass.ALARM, reading("alarm", 1.0)), (RecordClass.TELEMETRY, reading("a", 1.0)),
              (RecordClass.STATE, reading("a", 2.0))])
    clock.t += 2 * 86400
    j.append([(RecordClass.TELEMETRY, reading("a", 3.0))])
    j.maintain()
    left = {(cls, body) for cls, body in j.db.execute("SELECT cls, json_extract(body, '$.value') FROM records")}
    assert (RecordClass.ALARM, 1.0) in left and (RecordClass.TELEMETRY, 3.0) in left
    assert (RecordClass.TELEMETRY, 1.0) not in left and (RecordClass.STATE, 2.0) not in left
    assert j.stats()["dropped_by_reason"] == {"age/telemetry": 1, "age/state": 1}


def test_record_leaves_by_satellite_then_by_mqtt(tmp_path: Path) -> None:
    links = {"mqtt": ALL, "sat": {RecordClass.ALARM, RecordClass.STATE}}
    j = Journal(tmp_path / "j.sqlite", links, settings())
    alarm, telemetry = j.append([(RecordClass.ALARM, reading("alarm", 1.0)),
                                 (RecordClass.TELEMETRY, reading("a", 1.0))])
    assert [r.seq for r in j.pending("sat", 10)] == [alarm]
    j.ack("sat", [alarm])
    assert j.depth() == 2 and j.depth("sat") == 0
    j.close()  # the satellite's ack is remembered across a restart
    j = Journal(tmp_path / "j.sqlite", links, settings())
    assert j.depth("sat") == 0 and [r.seq for r in j.pending("mqtt", 10)] == [alarm, telemetry]
    j.ack("mqtt", [telemetry, alarm])
    assert j.depth() == 0 and j.stats()["records"] == 0


def test_link_removed_from_config_releases_its_records(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite", {"mqtt": ALL, "old": ALL}, settings())
    j.append([(RecordClass.TELEMETRY, reading("a", 1.0))])
    j.ack("mqtt", [1])
    j.close()
    j = Journal(tmp_path / "j.sqlite", {"mqtt": ALL}, settings())
    assert j.depth() == 0


def test_garbage_file_is_moved_aside_and_seq_continues(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    j = Journal(path, {"mqtt": ALL}, settings())
    j.append([(RecordClass.TELEMETRY, reading("a", float(i))) for i in range(3)])
    j.close()
    garbage = b"this is not a database" * 100
    path.write_bytes(garbage)
    j = Journal(path, {"mqtt": ALL}, settings())
    aside = [p for p in tmp_path.iterdir() if ".damaged-" in p.name]
    assert len(aside) == 1 and aside[0].read_bytes() == garbage  # kept, not deleted
    events = j.pending("mqtt", 10)
    assert events[0].body["kind"] == "damaged" and events[0].body["moved_to"] == str(aside[0])
    assert events[0].seq > 3  # never reuses a seq the damaged file may have handed out
    assert j.append([(RecordClass.TELEMETRY, reading("a", 9.0))])[0] > events[0].seq
    assert j.stats()["moved_aside"] == [str(aside[0])]


def test_corrupt_page_fails_quick_check_and_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    j = Journal(path, {"mqtt": ALL}, settings())
    fill_telemetry(j, 3_000)
    j.close()
    data = bytearray(path.read_bytes())
    page = 4096
    for offset in range(3 * page, len(data) - page, 7 * page):
        data[offset + 100: offset + 400] = os.urandom(300)
    path.write_bytes(bytes(data))
    j = Journal(path, {"mqtt": ALL}, settings())
    assert len(j.moved_aside) == 1
    assert j.pending("mqtt", 1)[0].body["kind"] == "damaged"
    assert j.pending("mqtt", 1)[0].seq > 3_000


def test_damaged_copies_are_bounded(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    for _ in range(4):
        path.write_bytes(b"garbage" * 100)
        Journal(path, {"mqtt": ALL}, settings(keep_damaged=2)).close()
    assert len([p for p in tmp_path.iterdir() if ".damaged-" in p.name]) == 2


def test_unopenable_path_is_not_damage(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    path.mkdir()  # a directory where the file should be: an operator error, not damage
    with pytest.raises(JournalUnavailable):
        Journal(path, {"mqtt": ALL}, settings())
    assert path.is_dir() and not [p for p in tmp_path.iterdir() if ".damaged-" in p.name]


def test_uncommitted_transaction_leaves_no_trace_after_kill(tmp_path: Path) -> None:
    """A transaction that never committed (the process died) neither exists nor consumed a seq."""
    path = tmp_path / "j.sqlite"
    j = Journal(path, {"mqtt": ALL}, settings())
    j.append([(RecordClass.TELEMETRY, reading("a", 1.0))])
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    # What a commit writes (schema 2, gateway/journal/tables.py): a batch row and the seq it used.
    other.execute("INSERT INTO batches (hi, lo, cls, n, created, codec, crc, body) VALUES (2, 2, 4, 1, 0, 0, 0, "
                  "'[\n{}\n]')")
    other.execute("UPDATE sqlite_sequence SET seq = 2 WHERE name = 'records'")
    other.close()  # like a process killed before COMMIT
    j.close()
    j = Journal(path, {"mqtt": ALL}, settings())
    assert j.append([(RecordClass.TELEMETRY, reading("a", 2.0))]) == [2]


def test_settings_parse_sizes_and_reject_nonsense() -> None:
    s = JournalSettings.model_validate({"max_bytes": "64MiB", "min_free_bytes": "1GB", "thin_to": "5m"})
    assert s.max_bytes == 64 * MiB and s.min_free_bytes == 10**9 and s.thin_to == 300.0
    assert s.replay_rate_for("x") is None  # adaptive by default (gateway/links_pacing.py)
    assert JournalSettings(replay_rate=1000).replay_rate_for("x") == 1000.0
    assert JournalSettings(replay_rate=0, replay_rates={"sat": 5}).replay_rate_for("mqtt") is None
    assert JournalSettings(replay_rates={"sat": 5}).replay_rate_for("sat") == 5
    with pytest.raises(ValidationError):
        JournalSettings.model_validate({"max_bytes": "lots"})
    with pytest.raises(ValidationError):
        JournalSettings.model_validate({"max_bytes": "100KB"})  # below the 1 MiB floor
