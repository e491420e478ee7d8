"""The `fieldgate` profile: produced envelopes validate against docs/payload-schema.json.

The validator below is deliberately small: it implements exactly the JSON Schema keywords
the schema uses and refuses any other keyword, so the schema cannot silently grow beyond
what this test checks.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.mqtt.config import MqttLinkConfig
from gateway.journal import JournalRecord
from gateway.profiles import FieldgateSessionProfile, get_profile
from gateway.shared import EventRecord, Quality, Reading, RecordClass

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "docs" / "payload-schema.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
ANNOTATIONS = {"$schema", "$id", "title", "description"}


class Invalid(AssertionError):
    pass


def _type_ok(value: Any, name: str) -> bool:
    if name == "null":
        return value is None
    if name == "boolean":
        return isinstance(value, bool)
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if name == "string":
        return isinstance(value, str)
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    raise Invalid(f"unknown type {name}")


def validate(value: Any, schema: dict[str, Any], where: str = "$") -> None:
    """Raise Invalid naming the first violation."""
    for keyword, rule in schema.items():
        if keyword in ANNOTATIONS or keyword in {"$defs", "then"}:
            continue
        if keyword == "$ref":
            assert rule.startswith("#/$defs/"), rule
            validate(value, SCHEMA["$defs"][rule.removeprefix("#/$defs/")], where)
        elif keyword == "type":
            names = rule if isinstance(rule, list) else [rule]
            if not any(_type_ok(value, n) for n in names):
                raise Invalid(f"{where}: {value!r} is not {rule}")
        elif keyword == "const":
            if value != rule or type(value) is not type(rule):
                raise Invalid(f"{where}: {value!r} is not {rule!r}")
        elif keyword == "enum":
            if value not in rule:
                raise Invalid(f"{where}: {value!r} not in {rule}")
        elif keyword == "minimum":
            if isinstance(value, int | float) and value < rule:
                raise Invalid(f"{where}: {value} < {rule}")
        elif keyword == "minLength":
            if isinstance(value, str) and len(value) < rule:
                raise Invalid(f"{where}: shorter than {rule}")
        elif keyword == "pattern":
            if isinstance(value, str) and not re.search(rule, value):
                raise Invalid(f"{where}: {value!r} does not match {rule}")
        elif keyword == "required":
            if isinstance(value, dict):
                missing = [k for k in rule if k not in value]
                if missing:
                    raise Invalid(f"{where}: missing {missing}")
        elif keyword == "properties":
            if isinstance(value, dict):
                for name, sub in rule.items():
                    if name in value:
                        validate(value[name], sub, f"{where}.{name}")
        elif keyword == "additionalProperties":
            assert rule is False, "only additionalProperties: false is supported"
            if isinstance(value, dict):
                extra = set(value) - set(schema.get("properties", {}))
                if extra:
                    raise Invalid(f"{where}: unexpected {sorted(extra)}")
        elif keyword == "items":
            if isinstance(value, list):
                for i, item in enumerate(value):
                    validate(item, rule, f"{where}[{i}]")
        elif keyword == "minItems":
            if isinstance(value, list) and len(value) < rule:
                raise Invalid(f"{where}: fewer than {rule} items")
        elif keyword == "oneOf":
            passed = [i for i, sub in enumerate(rule) if _passes(value, sub, where)]
            if len(passed) != 1:
                raise Invalid(f"{where}: matches {len(passed)} of oneOf (must be exactly 1)")
        elif keyword == "not":
            if _passes(value, rule, where):
                raise Invalid(f"{where}: matches a 'not' schema")
        elif keyword == "if":
            if _passes(value, rule, where) and "then" in schema:
                validate(value, schema["then"], where)
        else:
            raise Invalid(f"the test validator does not implement keyword '{keyword}'")


def _passes(value: Any, schema: dict[str, Any], where: str) -> bool:
    try:
        validate(value, schema, where)
    except Invalid as exc:
        if "does not implement" in str(exc):
            raise
        return False
    return True


# ---- records as the journal hands them to the profile ------------------------------------------------


def reading_record(seq: int, reading: Reading, cls: RecordClass = RecordClass.TELEMETRY,
                   created: float | None = None) -> JournalRecord:
    return JournalRecord(seq, cls, reading.to_json(), reading.source_time if created is None else created)


def event_record(seq: int, event: EventRecord, cls: RecordClass = RecordClass.ALARM) -> JournalRecord:
    return JournalRecord(seq, cls, event.to_json(), event.source_time)


T0 = 1_795_853_523.412


def sample_records() -> list[JournalRecord]:
    return [
        reading_record(1, Reading("dam.level", 23.417, Quality.GOOD, T0, unit="m")),
        reading_record(2, Reading("rain.total", None, Quality.COMM_FAIL, T0 + 0.6, unit="mm",
                                  attrs={"detail": "connection lost"}), RecordClass.STATE),
        reading_record(3, Reading("gate.open", True, Quality.GOOD, T0 + 1)),
        reading_record(4, Reading("pump.count", 3_000_000_123, Quality.GOOD, T0 + 1)),
        reading_record(5, Reading("dam.level", 23.5, Quality.UNCERTAIN, T0 + 2, unit="m")),
        reading_record(6, Reading("dam.level", 23.6, Quality.GOOD, T0 - 3600, unit="m"), created=T0 - 3600),
        event_record(7, EventRecord("alarm", "level.danger", {"state": "raised", "severity": "severe"}, T0 + 3)),
        event_record(8, EventRecord("evidence", "siren1", {"readback": True}, T0 + 4), RecordClass.EVIDENCE),
    ]


def test_produced_envelopes_validate_against_the_schema() -> None:
    profile = FieldgateSessionProfile("res-qingshui-01")
    messages = profile.encode(sample_records(), now=T0 + 10)
    assert {m.topic.rsplit("/", 1)[1] for m in messages} == {"telemetry", "alarm", "evidence"}
    assert sorted(s for m in messages for s in m.seqs) == list(range(1, 9))
    for message in messages:
        validate(json.loads(message.payload), SCHEMA)
    validate(json.loads(profile.status("online")), SCHEMA)
    validate(json.loads(profile.status("offline")), SCHEMA)


def test_schema_rejects_what_the_docs_forbid() -> None:
    good = json.loads(FieldgateSessionProfile("gw-1").encode(sample_records()[:2], now=T0)[0].payload)
    validate(good, SCHEMA)
    broken: list[dict[str, Any]] = []
    stale_value = json.loads(json.dumps(good))
    stale_value["records"][1]["value"] = 12.0  # comm_fail must never carry a value
    broken.append(stale_value)
    no_seq = json.loads(json.dumps(good))
    del no_seq["records"][0]["seq"]
    broken.append(no_seq)
    future = json.loads(json.dumps(good))
    future["v"] = 2
    broken.append(future)
    bad_quality = json.loads(json.dumps(good))
    bad_quality["records"][0]["q"] = "ok"
    broken.append(bad_quality)
    empty = {"v": 1, "gw": "gw-1", "records": []}
    broken.append(empty)
    for doc in broken:
        with pytest.raises(Invalid):
            validate(doc, SCHEMA)


FINITE = st.floats(allow_nan=False, allow_infinity=False, width=32)
VALUES = st.one_of(FINITE, st.integers(-(2**53), 2**53), st.booleans(), st.text(max_size=20))


@st.composite
def readings(draw: st.DrawFn) -> Reading:
    quality = draw(st.sampled_from(list(Quality)))
    value = draw(VALUES) if quality in (Quality.GOOD, Quality.UNCERTAIN) else None
    point = draw(st.from_regex(r"[a-z][a-z0-9_]{0,8}(\.[a-z0-9_]{1,8}){0,2}", fullmatch=True))
    when = draw(st.floats(min_value=1e9, max_value=4e9))
    return Reading(point, value, quality, when, unit=draw(st.sampled_from(["", "m", "mm", "m3/s", "°C"])))


@settings(max_examples=60, deadline=None)
@given(st.lists(readings(), min_size=1, max_size=20), st.floats(min_value=0, max_value=7200))
def test_any_readings_give_valid_envelopes(batch: list[Reading], delay: float) -> None:
    records = [reading_record(i + 1, r) for i, r in enumerate(batch)]
    now = max(r.source_time for r in batch) + delay
    for message in FieldgateSessionProfile("gw-1").encode(records, now=now):
        validate(json.loads(message.payload), SCHEMA)


def test_session_topics_and_reply() -> None:
    config = MqttLinkConfig(type="mqtt", host="broker", topic_prefix="county/v1/")
    profile = get_profile("fieldgate", "gw-1", config)
    assert profile.status_topic() == "county/v1/gw-1/status"
    assert profile.subscriptions() == ["county/v1/gw-1/cmd/#"]
    assert profile.on_connect() == []
    assert profile.reply_topic("reply/42") == "county/v1/gw-1/reply/42"
    command = profile.decode_command("county/v1/gw-1/cmd/ping", b"{}")
    assert command is not None and command.method == "ping"
    assert profile.decode_command("county/v1/other/cmd/ping", b"{}") is None
    assert profile.decode_command("county/v1/gw-1/cmd/ping", b"x" * 70_000) is None


def test_unknown_profile_is_refused() -> None:
    config = MqttLinkConfig(type="mqtt", host="broker")
    with pytest.raises(ValueError, match="unknown payload profile 'sparkplug'"):
        get_profile("sparkplug", "gw-1", config)


# ---- the stored body is spliced, not decoded and encoded again (issue 18) ------------------------------


@settings(max_examples=200, deadline=None)
@given(point=st.text(min_size=1, max_size=12), value=st.one_of(st.none(), st.integers(), st.floats(allow_nan=False),
       st.booleans(), st.text(max_size=8)), unit=st.text(max_size=4), late=st.booleans(),
       attrs=st.dictionaries(st.sampled_from(["seq", "hist", "a", "é"]), st.integers(), max_size=2))
def test_spliced_stored_text_is_byte_identical_to_encoding_the_body(point: str, value: Any, unit: str, late: bool,
                                                                    attrs: dict[str, int]) -> None:
    from gateway.journal.records import encode_body

    reading = Reading(point, value, Quality.GOOD, T0, unit=unit, attrs=attrs)
    created = T0 - (100 if late else 0)
    from_dict = JournalRecord(7, RecordClass.TELEMETRY, reading.to_json(), created)
    from_text = JournalRecord(7, RecordClass.TELEMETRY, None, created, encode_body(reading.to_json()))
    profile = FieldgateSessionProfile("gw-é")
    spliced = profile.encode([from_text], now=T0)
    assert spliced[0].payload == profile.encode([from_dict], now=T0)[0].payload
    item = json.loads(spliced[0].payload)["records"][0]
    assert item["seq"] == 7 and item.get("hist", False) is late
