"""The thingsboard profile's messages byte for byte: pinned, and equal to the encoder they replaced.

The telemetry body is built as text from the stored records (gateway/profiles/tb_telemetry.py) instead of
decoding every body and encoding a dict of the whole message. ``Reference.encode`` is that replaced
encoder (main before issue 18's thingsboard pass, on the same routes); the property test holds the two
to the same topics, bytes and seqs over any mix of records, stored as text or given as bodies.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.journal import JournalRecord
from gateway.journal.records import encode_body
from gateway.profiles import ThingsboardProfile
from gateway.profiles.options import ThingsboardOptions
from gateway.shared import EventRecord, OutboundMessage, Quality, Reading, RecordClass

T0 = 1_795_853_523.412


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class Reference(ThingsboardProfile):
    """The encoder as it was: every body decoded, a dict per message, one ``json.dumps`` of it."""

    def encode(self, records: Sequence[JournalRecord], now: float | None = None) -> list[OutboundMessage]:
        devices: dict[str, list[dict[str, Any]]] = {}
        device_seqs: list[int] = []
        own: list[dict[str, Any]] = []
        own_seqs: list[int] = []
        attributes: dict[str, dict[str, str]] = {}
        for record in records:
            body = json.loads(record.text) if record.text is not None else record.body
            if "point" in body and "q" in body:
                route = self.route(str(body["point"]))
                device, key = route.device, route.key
                values = self._values(record.cls, body, key)
                unit = str(body.get("unit") or "")
                ts = round(float(body.get("ts", record.created)) * 1000)
                if device is None:
                    own.append({"ts": ts, "values": values})
                    own_seqs.append(record.seq)
                    continue
                entries = devices.setdefault(device, [])
                last = entries[-1] if entries else None
                if last is not None and last["ts"] == ts and last["values"].keys().isdisjoint(values):
                    last["values"].update(values)
                else:
                    entries.append({"ts": ts, "values": values})
                device_seqs.append(record.seq)
                if unit and (device, key) not in self._units_sent:
                    self._units_sent.add((device, key))
                    attributes.setdefault(device, {})[f"{key}_unit"] = unit
            else:
                kind = str(body.get("kind") or RecordClass(record.cls).label)
                own.append({"ts": round(float(body.get("ts", record.created)) * 1000),
                            "values": {kind: {**body, "seq": record.seq}}})
                own_seqs.append(record.seq)
        messages = [self._connect(name) for name in devices if name not in self._announced]
        self._announced.update(devices)
        if attributes:
            messages.append(OutboundMessage("v1/gateway/attributes", _dumps(attributes), ()))
        if devices:
            messages.append(OutboundMessage("v1/gateway/telemetry", _dumps(devices), tuple(device_seqs)))
        if own:
            messages.append(OutboundMessage("v1/devices/me/telemetry", _dumps(own), tuple(own_seqs)))
        return messages


def stored(seq: int, reading: Reading, cls: RecordClass = RecordClass.TELEMETRY) -> JournalRecord:
    """A record as the journal hands it back: the body's stored text, not parsed."""
    return JournalRecord(seq, cls, None, reading.source_time, encode_body(reading.to_json()))


def site_batch() -> list[JournalRecord]:
    alarm = EventRecord("alarm", "dam.level.high", {"state": "raised"}, T0 + 2)
    return [
        stored(1, Reading("dam.level", 23.4, Quality.GOOD, T0, unit="m")),
        stored(2, Reading("dam.temp", 11, Quality.GOOD, T0, unit="°C")),
        stored(3, Reading("rain.total", None, Quality.COMM_FAIL, T0, unit="mm"), RecordClass.STATE),
        stored(4, Reading("dam.level", 23.5, Quality.UNCERTAIN, T0 + 0.1, unit="m")),
        stored(5, Reading("siren.state", True, Quality.GOOD, T0 + 0.1), RecordClass.STATE),
        stored(6, Reading("valve.position", "open", Quality.GOOD, T0 + 0.1)),
        stored(7, Reading("dam.level", -1.5e-07, Quality.GOOD, T0 + 0.1, unit="m")),
        stored(8, Reading("Wehr.Pegel ü", 3, Quality.GOOD, T0 + 0.2)),
        stored(9, Reading("uptime", 120, Quality.GOOD, T0 + 0.2)),
        JournalRecord(10, RecordClass.ALARM, None, T0 + 2, encode_body(alarm.to_json())),
        JournalRecord(11, RecordClass.TELEMETRY, Reading("dam.temp", 12.25, Quality.GOOD, T0 + 3).to_json(), T0 + 3),
    ]


PINNED_TELEMETRY = (
    '{"res-01.dam":[{"ts":1795853523412,"values":{"level":23.4,"temp":11}},'
    '{"ts":1795853523512,"values":{"level":23.5,"level_quality":"uncertain"}},'
    '{"ts":1795853523512,"values":{"level":-1.5e-07}},'
    '{"ts":1795853526412,"values":{"temp":12.25}}],'
    '"res-01.rain":[{"ts":1795853523412,"values":{"total_quality":"comm_fail"}}],'
    '"res-01.siren":[{"ts":1795853523512,"values":{"state":true,"state_quality":"good"}}],'
    '"res-01.valve":[{"ts":1795853523512,"values":{"position":"open"}}],'
    '"res-01.Wehr":[{"ts":1795853523612,"values":{"Pegel ü":3}}]}'
).encode()


def test_telemetry_bytes_are_pinned() -> None:
    messages = ThingsboardProfile("res-01", ThingsboardOptions()).encode(site_batch())
    assert [m.topic for m in messages] == ["v1/gateway/connect"] * 5 + [
        "v1/gateway/attributes", "v1/gateway/telemetry", "v1/devices/me/telemetry"]
    assert [json.loads(m.payload)["device"] for m in messages[:5]] == [
        "res-01.dam", "res-01.rain", "res-01.siren", "res-01.valve", "res-01.Wehr"]
    assert messages[5].payload == (
        '{"res-01.dam":{"level_unit":"m","temp_unit":"°C"},"res-01.rain":{"total_unit":"mm"}}').encode()
    assert messages[6].payload == PINNED_TELEMETRY
    assert messages[6].seqs == (1, 2, 3, 4, 5, 6, 7, 8, 11)
    assert messages[7].seqs == (9, 10)
    assert messages[7].payload.startswith(b'[{"ts":1795853523612,"values":{"uptime":120}},{"ts":1795853525412,')


def test_the_same_messages_as_the_replaced_encoder_on_the_site_batch() -> None:
    options = ThingsboardOptions(device_of_point={"dam.temp": "Dam"}, quality_suffix=".q")
    new, old = ThingsboardProfile("res-01", options), Reference("res-01", options)
    assert new.encode(site_batch()) == old.encode(site_batch())


POINTS = ["a.x", "a.y", "b.x", "z", "c.k.l", "ü.ß", 'q"t.k', "back\\slash.k", "ctl\n.k", ".x", "a.", "m.x"]
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                   st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6))
READINGS = st.builds(Reading, st.sampled_from(POINTS), VALUES, st.sampled_from(list(Quality)),
                     st.sampled_from([T0, T0 + 0.0004, T0 + 0.001, T0 + 1.5, 1e9]),
                     st.sampled_from(["", "m", "°C", 'a"b']))
RECORDS = st.lists(st.tuples(READINGS, st.sampled_from([RecordClass.TELEMETRY, RecordClass.STATE]),
                             st.sampled_from(["text", "body", "event"])), max_size=25)


def as_records(drawn: list[tuple[Reading, RecordClass, str]]) -> list[JournalRecord]:
    out = []
    for seq, (reading, cls, form) in enumerate(drawn, start=1):
        if form == "event":
            event = EventRecord("event", reading.point, {"value": str(reading.value)}, reading.source_time)
            out.append(JournalRecord(seq, RecordClass.EVENT, None, T0, encode_body(event.to_json())))
        elif form == "text":
            out.append(stored(seq, reading, cls))
        else:
            out.append(JournalRecord(seq, cls, reading.to_json(), reading.source_time))
    return out


@settings(max_examples=400, deadline=None)
@given(RECORDS, RECORDS, st.booleans())
def test_the_same_messages_as_the_replaced_encoder(first: list[Any], second: list[Any], mapped: bool) -> None:
    options = ThingsboardOptions(device_of_point={"a.y": "Y", "z": "Y"} if mapped else {})
    new, old = ThingsboardProfile("gw", options), Reference("gw", options)
    assert new.encode(as_records(first)) == old.encode(as_records(first))
    assert new.on_connect() == old.on_connect()
    assert new.encode(as_records(second)) == old.encode(as_records(second))
