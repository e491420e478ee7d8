"""The `thingsboard` profile: topics and payload shapes of the ThingsBoard MQTT gateway API.

Shapes as documented at thingsboard.io/docs/reference/gateway-mqtt-api/ (connect,
telemetry, attributes, rpc) and /docs/reference/mqtt-api/ (the gateway's own device).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from drivers.mqtt.config import MqttLinkConfig
from gateway.journal import JournalRecord
from gateway.profiles import ThingsboardProfile, get_profile
from gateway.profiles.options import ThingsboardOptions
from gateway.shared import EventRecord, OutboundMessage, Quality, Reading, RecordClass

T0 = 1_795_853_523.412


def rec(seq: int, point: str, value: Any, quality: Quality = Quality.GOOD, ts: float = T0, unit: str = "",
        cls: RecordClass = RecordClass.TELEMETRY) -> JournalRecord:
    return JournalRecord(seq, cls, Reading(point, value, quality, ts, unit=unit).to_json(), ts)


def by_topic(messages: list[OutboundMessage]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for m in messages:
        out.setdefault(m.topic, []).append(json.loads(m.payload))
    return out


def profile(**options: Any) -> ThingsboardProfile:
    return ThingsboardProfile("res-01", ThingsboardOptions(**options))


def test_telemetry_shape_devices_from_point_prefix() -> None:
    tb = profile()
    messages = tb.encode([rec(1, "dam.level", 23.4, unit="m"), rec(2, "dam.temp", 11.5, ts=T0),
                          rec(3, "rain.total", 42.7, ts=T0 + 1, unit="mm"), rec(4, "dam.level", 23.5, ts=T0 + 5)])
    topics = [m.topic for m in messages]
    # connects come before the telemetry that needs them
    assert topics.index("v1/gateway/connect") < topics.index("v1/gateway/telemetry")
    got = by_topic(messages)
    assert sorted(c["device"] for c in got["v1/gateway/connect"]) == ["res-01.dam", "res-01.rain"]
    telemetry = got["v1/gateway/telemetry"][0]
    assert telemetry == {
        "res-01.dam": [{"ts": 1795853523412, "values": {"level": 23.4, "temp": 11.5}},
                       {"ts": 1795853528412, "values": {"level": 23.5}}],
        "res-01.rain": [{"ts": 1795853524412, "values": {"total": 42.7}}],
    }
    assert got["v1/gateway/attributes"] == [{"res-01.dam": {"level_unit": "m"}, "res-01.rain": {"total_unit": "mm"}}]
    telemetry_message = next(m for m in messages if m.topic == "v1/gateway/telemetry")
    assert telemetry_message.seqs == (1, 2, 3, 4)
    assert all(m.seqs == () for m in messages if m.topic != "v1/gateway/telemetry")


def test_connect_and_units_once_per_session_and_again_after_reconnect() -> None:
    tb = profile()
    tb.encode([rec(1, "dam.level", 1.0, unit="m")])
    again = by_topic(tb.encode([rec(2, "dam.level", 2.0, unit="m")]))
    assert "v1/gateway/connect" not in again and "v1/gateway/attributes" not in again
    birth = by_topic(tb.on_connect())
    assert birth["v1/gateway/connect"] == [{"device": "res-01.dam"}]
    assert birth["v1/devices/me/attributes"] == [{"fieldgate_gateway": "res-01", "fieldgate_profile": "thingsboard"}]
    after = by_topic(tb.encode([rec(3, "dam.level", 3.0, unit="m")]))
    assert "v1/gateway/connect" not in after  # announced by on_connect
    assert after["v1/gateway/attributes"] == [{"res-01.dam": {"level_unit": "m"}}]


def test_quality_travels_beside_the_value_and_null_is_never_sent() -> None:
    tb = profile()
    got = by_topic(tb.encode([
        rec(1, "dam.level", None, Quality.COMM_FAIL, cls=RecordClass.STATE),
        rec(2, "dam.level", 23.4, Quality.GOOD, ts=T0 + 1, cls=RecordClass.STATE),
        rec(3, "dam.level", 23.5, Quality.GOOD, ts=T0 + 2),
        rec(4, "dam.level", 9.9, Quality.UNCERTAIN, ts=T0 + 3),
    ]))
    entries = got["v1/gateway/telemetry"][0]["res-01.dam"]
    assert [e["values"] for e in entries] == [
        {"level_quality": "comm_fail"},
        {"level": 23.4, "level_quality": "good"},  # the change back to good is sent
        {"level": 23.5},
        {"level": 9.9, "level_quality": "uncertain"},
    ]


def test_explicit_mapping_name_template_and_device_type() -> None:
    tb = profile(device_of_point={"res.level": "Dam"}, device_name="{device} @ {gateway}", device_type="gauge")
    birth = by_topic(tb.on_connect())
    assert birth["v1/gateway/connect"] == [{"device": "Dam @ res-01", "type": "gauge"}]
    got = by_topic(tb.encode([rec(1, "res.level", 1.5), rec(2, "other.flow", 0.5)]))
    assert got["v1/gateway/telemetry"][0] == {
        "Dam @ res-01": [{"ts": 1795853523412, "values": {"res.level": 1.5}}],
        "other @ res-01": [{"ts": 1795853523412, "values": {"flow": 0.5}}],
    }


def test_points_without_device_and_events_go_to_the_gateway_itself() -> None:
    tb = profile()
    alarm = EventRecord("alarm", "level.danger", {"state": "raised", "severity": "severe"}, T0 + 2)
    messages = tb.encode([rec(1, "uptime", 120), JournalRecord(2, RecordClass.ALARM, alarm.to_json(), T0 + 2)])
    got = by_topic(messages)
    own = got["v1/devices/me/telemetry"][0]
    assert own[0] == {"ts": 1795853523412, "values": {"uptime": 120}}
    assert own[1]["ts"] == 1795853525412
    assert own[1]["values"]["alarm"]["key"] == "level.danger" and own[1]["values"]["alarm"]["seq"] == 2
    assert next(m for m in messages if m.topic == "v1/devices/me/telemetry").seqs == (1, 2)
    assert "v1/gateway/telemetry" not in got


def test_every_record_is_carried_by_some_message() -> None:
    tb = profile()
    records = [rec(i, p, None if q is not Quality.GOOD else 1.0, q)
               for i, (p, q) in enumerate([("a.x", Quality.GOOD), ("a.y", Quality.STALE), ("z", Quality.BAD_FRAME),
                                           ("b.c", Quality.OUT_OF_RANGE)], start=1)]
    carried = sorted(s for m in tb.encode(records) for s in m.seqs)
    assert carried == [1, 2, 3, 4]


def test_rpc_request_and_reply_round_trip() -> None:
    tb = profile()
    tb.encode([rec(1, "siren.state", 0)])
    request = b'{"device": "res-01.siren", "data": {"id": 17, "method": "trigger", "params": {"pattern": "test"}}}'
    command = tb.decode_command("v1/gateway/rpc", request)
    assert command is not None
    assert (command.kind, command.method, command.request_id, command.device, command.point_prefix) == \
        ("rpc", "trigger", 17, "res-01.siren", "siren")
    assert command.params == {"pattern": "test"}
    topic, payload = tb.encode_reply(command, {"success": True})
    assert topic == "v1/gateway/rpc"
    assert json.loads(payload) == {"device": "res-01.siren", "id": 17, "data": {"success": True}}


def test_rpc_to_the_gateway_itself() -> None:
    tb = profile()
    command = tb.decode_command("v1/devices/me/rpc/request/5", b'{"method": "ping", "params": {}}')
    assert command is not None and command.device is None and command.request_id == "5"
    topic, payload = tb.encode_reply(command, {"pong": True})
    assert topic == "v1/devices/me/rpc/response/5" and json.loads(payload) == {"pong": True}


def test_shared_attribute_update() -> None:
    tb = profile()
    command = tb.decode_command("v1/gateway/attributes", b'{"device": "res-01.dam", "data": {"limit": 150.5}}')
    assert command is not None and command.kind == "attributes" and command.params == {"limit": 150.5}


@pytest.mark.parametrize("topic, payload", [
    ("v1/gateway/rpc", b"not json"),
    ("v1/gateway/rpc", b"[1, 2]"),
    ("v1/gateway/rpc", b'{"device": "x"}'),
    ("v1/gateway/rpc", b'{"device": 3, "data": {"id": 1, "method": "m"}}'),
    ("v1/gateway/rpc", b'{"device": "x", "data": {"id": 1}}'),
    ("v1/gateway/rpc", b"\xff\xfe"),
    ("v1/gateway/rpc", b"{" + b" " * 70_000 + b"}"),
    ("v1/devices/me/rpc/request/", b'{"method": "ping"}'),
    ("v1/gateway/attributes", b'{"device": "x", "data": 5}'),
    ("v1/unknown", b"{}"),
])
def test_malformed_commands_are_ignored_not_crashed(topic: str, payload: bytes) -> None:
    assert profile().decode_command(topic, payload) is None


def test_session_of_the_thingsboard_profile() -> None:
    config = MqttLinkConfig(type="mqtt", host="tb", profile="thingsboard",
                            thingsboard=ThingsboardOptions(device_of_point={"a.b": "A"}))
    tb = get_profile(config.profile, "gw", config)
    assert tb.status_topic() is None  # no will, no retained status: ThingsBoard tracks connectivity itself
    assert set(tb.subscriptions()) == {"v1/gateway/rpc", "v1/gateway/attributes", "v1/devices/me/rpc/request/+",
                                       "v1/devices/me/attributes"}
    assert tb.reply_topic("v1/gateway/rpc") == "v1/gateway/rpc"


def test_options_are_validated() -> None:
    with pytest.raises(ValidationError, match="device_name must contain"):
        ThingsboardOptions(device_name="{gateway}")
    with pytest.raises(ValidationError, match="may only use"):
        ThingsboardOptions(device_name="{device}{site}")
    with pytest.raises(ValidationError):
        MqttLinkConfig(type="mqtt", host="tb", profile="sparkplug")  # type: ignore[arg-type]
