"""A pull as runs of batch records (issue 18, fifth pass): the envelopes a link sends are the same bytes as
``encode`` of the same records one by one, whatever the bodies, the classes, the acks and the age."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.journal import Journal, JournalSettings
from gateway.journal.batch import Batch, Run, unacked
from gateway.journal.records import encode_bodies, encode_body
from gateway.links import REPLAYABLE, URGENT, Pull, collect
from gateway.payloads import FieldgateProfile
from gateway.shared import Quality, Reading, RecordClass

T0 = 1_795_853_523.412
VALUES = st.one_of(st.none(), st.integers(), st.floats(allow_nan=False), st.booleans(), st.text(max_size=6))
BODIES = st.one_of(
    st.builds(lambda point, value, attrs: Reading(point, value, Quality.GOOD, T0, unit="m", attrs=attrs).to_json(),
              st.text(min_size=1, max_size=6), VALUES,
              st.dictionaries(st.sampled_from(["seq", "hist", "a", "é", "t"]), st.integers(), max_size=2)),
    st.just({}), st.just({"x": {}}), st.just({"s": "},\\n{"}), st.just({"s": "a\nb}"}))


def batch_of(bodies: list[dict[str, Any]], seqs: list[int], created: float) -> Batch:
    return Batch(int(RecordClass.TELEMETRY), created, seqs, ",\n".join(encode_body(b) for b in bodies))


@settings(max_examples=300, deadline=None)
@given(bodies=st.lists(BODIES, min_size=1, max_size=12), gaps=st.lists(st.integers(1, 3), min_size=12, max_size=12),
       late=st.booleans(), cut=st.integers(0, 12), data=st.data())
def test_runs_encode_to_the_same_bytes_as_their_records(bodies: list[dict[str, Any]], gaps: list[int], late: bool,
                                                        cut: int, data: st.DataObject) -> None:
    seqs, seq = [], 100
    for gap in gaps[:len(bodies)]:
        seq += gap
        seqs.append(seq)
    batch = batch_of(bodies, seqs, T0 - (100 if late else 0))
    start = data.draw(st.integers(0, len(bodies) - 1))
    end = data.draw(st.integers(start + 1, len(bodies)))
    runs = [Run(batch, RecordClass.TELEMETRY, start, end)]
    if 0 < cut < len(runs[0]):
        runs = list(runs[0].split(cut))
    profile = FieldgateProfile("gw-é")
    records = [record for run in runs for record in run.records()]
    assert [r.seq for r in records] == seqs[start:end]
    assert profile.encode_runs(runs, now=T0) == profile.encode(records, now=T0)
    texts = [encode_body(b) for b in bodies]
    rebuilt = batch_of(bodies, seqs, T0)
    rebuilt.wire()  # the body's text is let go once the wire form is made; the texts come back from it
    assert rebuilt.texts == texts and batch.texts == texts


def test_unacked_gives_the_runs_of_clear_bits() -> None:
    assert unacked(0, 10, 0, 10) == [(0, 10)]
    assert unacked(0b1010, 10, 0, 10) == [(0, 1), (2, 3), (4, 10)]
    assert unacked(0b1010, 10, 2, 9) == [(2, 3), (4, 9)]
    assert unacked(0b1111111111, 10, 0, 10) == []
    assert unacked(0b1000000000, 10, 3, 10) == [(3, 9)]


def test_a_pull_through_a_journal_with_acks_and_classes_sends_what_encode_did(tmp_path: Path) -> None:
    settings_ = JournalSettings.model_validate({"reserve_bytes": 0, "min_free_bytes": 0})
    j = Journal(tmp_path / "j.sqlite", {"mqtt": set(RecordClass)}, settings_)
    now = time.time()
    items = [(RecordClass.ALARM if i % 97 == 0 else RecordClass.TELEMETRY,
              Reading(f"p{i % 5}", float(i), Quality.GOOD, now, "m")) for i in range(1200)]
    seqs = j.append(items[:600]) + j.append(items[600:])
    j.ack("mqtt", seqs[10:20] + seqs[300:301] + seqs[700:950:3])
    pull = collect(j, "mqtt", 2000, seqs[-1], dict.fromkeys(URGENT, 0), dict.fromkeys(REPLAYABLE, seqs[-1]),
                   dict.fromkeys(REPLAYABLE, 0), 2000)
    records = pull.records
    assert [r.seq for r in records] == [r.seq for cls in RecordClass
                                        for r in j.owed("mqtt", cls, 0, seqs[-1], 2000)]
    profile = FieldgateProfile("gw")
    groups = Pull.messages(pull, 500)
    assert [sum(map(len, g)) for g in groups] == [500, 500, len(records) - 1000]
    sent = [m for g in groups for m in profile.encode_runs(g, now=now + 60)]
    assert sent == [m for start in range(0, len(records), 500)
                    for m in profile.encode(records[start:start + 500], now=now + 60)]
    j.close()


JSONS = st.recursive(st.one_of(st.none(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5),
                               st.sampled_from(["},{", "}", "{"])),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=3), inner, max_size=3),
                     max_leaves=8)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=4), JSONS, max_size=4), min_size=1, max_size=8))
def test_a_commit_encoded_whole_stores_what_record_by_record_stored(bodies: list[dict[str, Any]]) -> None:
    assert encode_bodies(bodies) == ",\n".join(encode_body(b) for b in bodies)
