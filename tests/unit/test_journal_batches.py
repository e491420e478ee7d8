"""The batch layout (schema 2): per-link ack bitmaps, out-of-order acks, compression, and a schema 1
journal with a backlog migrated on open and published under its own seqs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from pathlib import Path

import pytest

from gateway.journal import AsyncJournal, Journal, JournalSettings, batch
from gateway.journal.records import RECORDS_VIEW, SCHEMA_VERSION, JournalUnavailable
from gateway.links import LinkRunner
from gateway.payloads import FieldgateProfile
from gateway.shared import EventRecord, NullProgress, Quality, Reading, RecordClass
from tests.unit.test_journal_replay import LoopbackLink, drained

ALL = set(RecordClass)
TELEMETRY_ONLY = {RecordClass.TELEMETRY}


def settings(**kw: object) -> JournalSettings:
    return JournalSettings.model_validate({"reserve_bytes": 0, "min_free_bytes": 0, **kw})


def reading(i: int) -> Reading:
    return Reading(f"p{i % 7}", float(i), Quality.GOOD, 1000.0 + i, "m")


def owed_seqs(j: Journal, link: str, cls: RecordClass = RecordClass.TELEMETRY) -> list[int]:
    return [r.seq for r in j.owed(link, cls, 0, 2**63 - 1, 10**6)]


def test_out_of_order_acks_release_a_batch_only_when_all_of_it_is_acknowledged(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite", {"mqtt": ALL}, settings())
    seqs = j.append([(RecordClass.TELEMETRY, reading(i)) for i in range(10)])
    j.ack("mqtt", seqs[5:8])  # a later PUBACK first
    j.ack("mqtt", [seqs[9], seqs[0]])
    assert owed_seqs(j, "mqtt") == [seqs[i] for i in (1, 2, 3, 4, 8)]
    assert j.depth() == j.depth("mqtt") == 5
    assert j.db.execute("SELECT count(*) FROM batches").fetchone()[0] == 1
    j.ack("mqtt", [*seqs[:5], seqs[8]])
    assert j.depth() == 0 and owed_seqs(j, "mqtt") == []
    assert j.db.execute("SELECT count(*) FROM batches").fetchone()[0] == 0  # the row went with its last ack
    j.close()
    j = Journal(tmp_path / "j.sqlite", {"mqtt": ALL}, settings())
    assert j.append([(RecordClass.TELEMETRY, reading(99))]) == [seqs[-1] + 1]  # seqs are never reused


def test_a_record_is_held_until_every_link_that_carries_it_acknowledged_it(tmp_path: Path) -> None:
    links = {"mqtt": ALL, "sat": {RecordClass.ALARM}}
    j = Journal(tmp_path / "j.sqlite", links, settings())
    seqs = j.append([(RecordClass.TELEMETRY, reading(0)), (RecordClass.ALARM, reading(1)),
                     (RecordClass.TELEMETRY, reading(2))])
    assert j.counts[RecordClass.ALARM] == 1 and j.counts[RecordClass.TELEMETRY] == 2
    j.ack("mqtt", seqs)
    assert j.counts[RecordClass.ALARM] == 1 and j.counts[RecordClass.TELEMETRY] == 0
    assert owed_seqs(j, "sat", RecordClass.ALARM) == [seqs[1]]
    j.ack("sat", [seqs[1]])
    assert j.depth() == 0 and j.db.execute("SELECT count(*) FROM batches").fetchone()[0] == 0
    j.close()
    # the counts are rebuilt from the bitmaps on open
    j = Journal(tmp_path / "j.sqlite", links, settings())
    assert j.depth() == 0


def test_alarms_come_first_and_a_mixed_commit_keeps_seq_order_within_a_class(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite", {"mqtt": ALL}, settings())
    items = [(RecordClass.TELEMETRY, reading(0)), (RecordClass.EVENT, EventRecord("e", "x", {}, 1.0)),
             (RecordClass.TELEMETRY, reading(1)), (RecordClass.ALARM, reading(2)), (RecordClass.TELEMETRY, reading(3))]
    seqs = j.append(items)
    assert seqs == list(range(seqs[0], seqs[0] + 5))
    pending = j.pending("mqtt", 10)
    assert [r.seq for r in pending] == [seqs[3], seqs[1], seqs[0], seqs[2], seqs[4]]
    assert [r.body["value"] for r in pending if r.cls is RecordClass.TELEMETRY] == [0.0, 1.0, 3.0]
    # the view shows each record once, under its seq, with its body
    view = dict(j.db.execute("SELECT seq, body FROM records").fetchall())
    assert sorted(view) == seqs and json.loads(view[seqs[3]])["value"] == 2.0


def test_compressed_batches_read_back_the_same(tmp_path: Path) -> None:
    plain = Journal(tmp_path / "a.sqlite", {"mqtt": ALL}, settings())
    packed = Journal(tmp_path / "b.sqlite", {"mqtt": ALL}, settings(compress=True))
    items = [(RecordClass.TELEMETRY, reading(i)) for i in range(300)]
    assert plain.append(items) == packed.append(items)
    assert ([(r.seq, r.text) for r in plain.pending("mqtt", 500)]
            == [(r.seq, r.text) for r in packed.pending("mqtt", 500)])
    assert packed.db.execute("SELECT codec FROM batches").fetchall() == [(1,)]
    packed.ack("mqtt", [r.seq for r in packed.pending("mqtt", 500)][::-1])
    assert packed.depth() == 0


SCHEMA_1 = """
CREATE TABLE records (seq INTEGER PRIMARY KEY AUTOINCREMENT, cls INTEGER NOT NULL, point TEXT NOT NULL,
                      created REAL NOT NULL, body TEXT NOT NULL);
CREATE TABLE pending (link TEXT NOT NULL, cls INTEGER NOT NULL, seq INTEGER NOT NULL,
                      PRIMARY KEY (link, cls, seq)) WITHOUT ROWID;
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def write_schema_1(path: Path, backlog: int) -> None:
    """A journal as the code before the batch layout left it: seqs 1..backlog+2, of which the link "mqtt"
    owes the telemetry 3..backlog+2 and an alarm, "gone" (no longer configured) owes seq 1, seq 2 was
    acknowledged by everyone, and seqs up to 9 000 000 were handed out."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.executescript(SCHEMA_1)
        db.execute("BEGIN")
        rows = [(1, 4, "old", 10.0, '{"point":"old","value":1}')]
        for i in range(3, backlog + 3):
            cls = 0 if i == 5 else 4  # seq 5 an alarm
            rows.append((i, cls, f"p{i % 5}", 100.0 + i // 1000, json.dumps({"point": f"p{i % 5}", "value": i},
                                                                            separators=(",", ":"))))
        db.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?)", rows)
        db.execute("INSERT INTO pending VALUES ('gone', 4, 1)")
        db.executemany("INSERT INTO pending VALUES ('mqtt', ?, ?)", [(r[1], r[0]) for r in rows[1:]])
        db.execute("UPDATE sqlite_sequence SET seq = 9000000 WHERE name = 'records'")
        db.execute("INSERT INTO meta VALUES ('dropped/age/telemetry', '7')")
        db.execute("COMMIT")


def test_a_schema_1_journal_is_migrated_on_open(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    write_schema_1(path, 2500)
    j = Journal(path, {"mqtt": ALL}, settings())
    assert j.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert j.db.execute("SELECT type FROM sqlite_master WHERE name = 'records'").fetchone()[0] == "view"
    assert j.db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'pending'").fetchone()[0] == 0
    assert owed_seqs(j, "mqtt") == [s for s in range(3, 2503) if s != 5]
    assert owed_seqs(j, "mqtt", RecordClass.ALARM) == [5]
    assert j.pending("mqtt", 1)[0].body == {"point": "p0", "value": 5}
    assert j.depth() == 2500 and j.dropped == {"age/telemetry": 7}
    assert j.append([(RecordClass.TELEMETRY, reading(0))]) == [9_000_001]
    j.close()
    j = Journal(path, {"mqtt": ALL}, settings())  # opening again migrates nothing, loses nothing
    assert j.depth() == 2501


def test_a_box_upgraded_with_a_backlog_publishes_it(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    write_schema_1(path, 3000)
    link = LoopbackLink()

    async def scenario() -> None:
        journal = Journal(path, {"mqtt": ALL}, settings())
        aj = AsyncJournal(journal, queue_size=100, commit_window=0.01)
        runner = LinkRunner(link, aj, FieldgateProfile("gw"), batch=200, max_inflight=4, replay_rate=None)
        tasks = [asyncio.create_task(aj.run(NullProgress())), asyncio.create_task(runner.run(NullProgress()))]
        try:
            await drained(aj, 3000, link)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await aj.close()

    asyncio.run(scenario())
    got = {r["seq"]: r for r in link.records}
    assert sorted(got) == list(range(3, 3003))
    assert got[5]["_kind"] == "alarm" and link.records[0]["seq"] == 5  # the alarm first
    assert all(got[s]["value"] == s for s in got)


def test_a_journal_from_a_newer_release_is_refused_untouched(tmp_path: Path) -> None:
    """A software update rolled back leaves a journal the newer release wrote. Before: a file this release
    could not read was 'damaged' (moved aside, a fresh journal begun) or opened with its backlog unseen."""
    path = tmp_path / "j.sqlite"
    j = Journal(path, {"mqtt": ALL}, settings())
    j.append([(RecordClass.TELEMETRY, reading(i)) for i in range(10)])
    j.db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    j.close()
    with pytest.raises(JournalUnavailable, match=f"schema {SCHEMA_VERSION + 1}, newer than this release"):
        Journal(path, {"mqtt": ALL}, settings())
    assert sorted(p.name for p in tmp_path.iterdir() if "aside" in p.name or "damaged" in p.name) == []
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1


def test_owed_seqs_reads_either_schema_from_a_plain_connection(tmp_path: Path) -> None:
    """What tools and tests (the soak, the package upgrade test) read of a journal file they do not own."""
    old = tmp_path / "old.sqlite"
    write_schema_1(old, 20)
    with contextlib.closing(sqlite3.connect(old)) as db:
        assert batch.owed_seqs(db) == [1, *range(3, 23)] and batch.owed_seqs(db, "gone") == [1]
        assert batch.owed_seqs(db, "mqtt") == list(range(3, 23))
    new = tmp_path / "new.sqlite"
    j = Journal(new, {"mqtt": ALL, "bd": {RecordClass.ALARM}}, settings())
    seqs = j.append([(RecordClass.TELEMETRY, reading(i)) for i in range(10)]
                    + [(RecordClass.ALARM, EventRecord("alarm", "lvl", {"transition": "raised"}, 1.0))])
    j.ack("mqtt", [seqs[0], seqs[3], seqs[-1]])
    j.close()
    with contextlib.closing(sqlite3.connect(f"file:{new}?mode=ro", uri=True)) as db:
        assert batch.owed_seqs(db, "mqtt") == [s for i, s in enumerate(seqs) if i not in (0, 3, 10)]
        assert batch.owed_seqs(db, "bd") == [seqs[-1]]
        assert batch.owed_seqs(db) == [s for i, s in enumerate(seqs) if i not in (0, 3)]


def _ack_steps(j: Journal, seqs: list[int]) -> int:
    """SQLite virtual-machine steps an ack takes (counted, not timed)."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    j.db.set_progress_handler(count, 1)
    try:
        j.ack("mqtt", seqs)
    finally:
        j.db.set_progress_handler(None, 1)
    return steps


def test_an_ack_of_backlog_and_live_seqs_does_not_walk_the_rows_between(tmp_path: Path) -> None:
    """A PUBACK (or acks merged by the link runner) covering the oldest backlog and the newest live records
    read every batch row in between: O(backlog) per ack during a drain (bench/RESULTS.md, fourth pass)."""
    j = Journal(tmp_path / "j.sqlite", {"mqtt": TELEMETRY_ONLY}, settings())
    seqs: list[int] = []
    for c in range(100):  # 100 rows, 100 000 records: the first and last are further apart than batch.SPAN
        seqs += j.append([(RecordClass.TELEMETRY, reading(c * 1000 + i)) for i in range(1000)])
    assert seqs[-1] - seqs[0] > batch.SPAN
    near = _ack_steps(j, [seqs[0], seqs[1]])
    far = _ack_steps(j, [seqs[2], seqs[-1]])
    assert j.depth("mqtt") == len(seqs) - 4
    assert set(batch.owed_seqs(j.db, "mqtt")).isdisjoint({seqs[0], seqs[1], seqs[2], seqs[-1]})
    # Before: the second ack stepped through all 100 rows (714 steps against 85); now two key ranges.
    assert far < 3 * near
    j.close()


def test_the_records_view_reads_a_batch_holding_a_non_finite_value(tmp_path: Path) -> None:
    """Python's json writes NaN/Infinity bare (what the platform gets, unchanged); the view showed such a
    batch through json_each, which refused the whole query as malformed JSON. Failed before the fix."""
    j = Journal(tmp_path / "j.sqlite", {"mqtt": ALL}, settings())
    seqs = j.append([(RecordClass.TELEMETRY, Reading("p", value, Quality.GOOD, 1000.0, "m"))
                     for value in (1.5, float("nan"), float("inf"), -float("inf"))])
    odd = j.append([(RecordClass.TELEMETRY, Reading("q", value, Quality.GOOD, 1000.0, "m", attrs={"s": ":NaN"}))
                    for value in (2.0, float("nan"))])
    j.append([(RecordClass.TELEMETRY, Reading("r", 3.0, Quality.GOOD, 1000.0, "m"))])
    got = j.db.execute("SELECT seq, point, json_extract(body, '$.value'), body IS NULL OR json_valid(body) "
                       "FROM records ORDER BY seq").fetchall()
    assert got == [(seqs[0], "p", 1.5, 1), (seqs[1], "p", "NaN", 1), (seqs[2], "p", "Infinity", 1),
                   (seqs[3], "p", "-Infinity", 1), (odd[0], None, None, 1), (odd[1], None, None, 1),
                   (odd[1] + 1, "r", 3.0, 1)]
    assert j.pending("mqtt", 5)[1].text == '{"point":"p","value":NaN,"unit":"m","q":"good","ts":1000.0}'
    j.close()


def test_an_older_records_view_is_replaced_at_open_and_an_open_writes_no_view_otherwise(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite"
    Journal(path, {"mqtt": ALL}, settings()).close()
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.executescript("DROP VIEW records; CREATE VIEW records (seq, cls, point, created, body) AS "
                         "SELECT b.lo + j.key, b.cls, NULL, b.created, j.value FROM batches b, json_each(b.body) j;")
    j = Journal(path, {"mqtt": ALL}, settings())
    assert j.db.execute("SELECT sql FROM sqlite_master WHERE name = 'records'").fetchone()[0] == \
        RECORDS_VIEW.strip().rstrip(";")
    cookie = j.db.execute("PRAGMA schema_version").fetchone()[0]
    j.close()
    j = Journal(path, {"mqtt": ALL}, settings())
    assert j.db.execute("PRAGMA schema_version").fetchone()[0] == cookie
    j.close()
