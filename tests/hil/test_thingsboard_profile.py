"""The thingsboard profile over the real MQTT link to a real mosquitto, with a subscriber playing ThingsBoard.

The fake platform checks what ThingsBoard's gateway API expects (thingsboard.io/docs/reference/
gateway-mqtt-api/): a device is connected on v1/gateway/connect before its telemetry,
telemetry is {"<device>": [{"ts": ms, "values": {...}}]}, and an RPC sent on v1/gateway/rpc
is answered on the same topic with the same id and device.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from drivers.mqtt.config import MqttLinkConfig
from drivers.mqtt.link import MqttLink
from gateway.journal import JournalRecord
from gateway.profiles import get_profile
from gateway.shared import NullProgress, Quality, Reading, RecordClass
from sim.broker import Broker
from sim.platform import Platform
from sim.support import wait_for

pytestmark = [pytest.mark.hil, pytest.mark.timeout(60)]


class FakeThingsboard(Platform):
    """The platform subscribed to the gateway API topics, in arrival order; it sends RPCs."""

    def __init__(self, port: int) -> None:
        super().__init__(port, ["v1/gateway/#", "v1/devices/me/#"])

    def topics(self) -> list[str]:
        return [m.topic for m in self.snapshot()]

    def rpc(self, body: dict[str, Any]) -> None:
        self.publish("v1/gateway/rpc", json.dumps(body))


@pytest.fixture
def thingsboard(broker: Broker) -> Iterator[FakeThingsboard]:
    tb = FakeThingsboard(broker.port)
    yield tb
    tb.close()


def records(t0: float) -> list[JournalRecord]:
    readings = [
        (1, RecordClass.TELEMETRY, Reading("dam.level", 23.4, Quality.GOOD, t0, unit="m")),
        (2, RecordClass.TELEMETRY, Reading("dam.temp", 11.5, Quality.GOOD, t0 + 0.5, unit="degC")),
        (3, RecordClass.STATE, Reading("rain.total", None, Quality.COMM_FAIL, t0 + 1, unit="mm")),
        (4, RecordClass.STATE, Reading("siren.state", 0, Quality.GOOD, t0 + 1)),
    ]
    return [JournalRecord(seq, cls, r.to_json(), t0) for seq, cls, r in readings]


async def scenario(port: int, tb: FakeThingsboard) -> None:
    config = MqttLinkConfig(type="mqtt", name="tb", host="127.0.0.1", port=port, profile="thingsboard",
                            reconnect_min=0.1, reconnect_max=0.5)
    profile = get_profile(config.profile, "res-01", config)
    replies: list[str] = []

    async def on_command(topic: str, payload: bytes) -> None:
        command = profile.decode_command(topic, payload)
        if command is None or command.kind != "rpc":
            return
        reply_topic, body = profile.encode_reply(command, {"success": True, "method": command.method,
                                                           "point_prefix": command.point_prefix})
        await link.publish_reply(reply_topic, body, expiry_s=60)
        replies.append(command.method)

    link = MqttLink(config, "res-01", session=profile, on_command=on_command)
    task = asyncio.create_task(link.run(NullProgress()))
    try:
        await asyncio.wait_for(link.wait_connected(), 10)
        t0 = 1_795_853_523.0
        for message in profile.encode(records(t0)):
            await link.send(message)
        await asyncio.to_thread(wait_for, lambda: len(tb.on("v1/gateway/telemetry")) >= 1, 10, "telemetry")
        tb.rpc({"device": "res-01.siren", "data": {"id": 41, "method": "trigger", "params": {"pattern": "test"}}})
        await asyncio.to_thread(wait_for, lambda: "trigger" in replies, 10, "the RPC handled")
        await asyncio.to_thread(wait_for, lambda: any(b.get("id") == 41 for b in tb.on("v1/gateway/rpc")), 10,
                                "the RPC reply at ThingsBoard")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_site_reports_to_thingsboard(broker: Broker, thingsboard: FakeThingsboard) -> None:
    asyncio.run(scenario(broker.port, thingsboard))
    topics = thingsboard.topics()
    connects = thingsboard.on("v1/gateway/connect")
    assert {c["device"] for c in connects} == {"res-01.dam", "res-01.rain", "res-01.siren"}
    first_telemetry = topics.index("v1/gateway/telemetry")
    assert all(topics.index("v1/gateway/connect") < first_telemetry for _ in connects)
    [telemetry] = thingsboard.on("v1/gateway/telemetry")
    assert telemetry == {
        "res-01.dam": [{"ts": 1795853523000, "values": {"level": 23.4}},
                       {"ts": 1795853523500, "values": {"temp": 11.5}}],
        "res-01.rain": [{"ts": 1795853524000, "values": {"total_quality": "comm_fail"}}],
        "res-01.siren": [{"ts": 1795853524000, "values": {"state": 0, "state_quality": "good"}}],
    }
    assert thingsboard.on("v1/gateway/attributes") == [
        {"res-01.dam": {"level_unit": "m", "temp_unit": "degC"}, "res-01.rain": {"total_unit": "mm"}}]
    assert thingsboard.on("v1/devices/me/attributes")[0]["fieldgate_profile"] == "thingsboard"
    replies = [b for b in thingsboard.on("v1/gateway/rpc") if b.get("id") == 41]
    assert replies == [{"device": "res-01.siren", "id": 41,
                           "data": {"success": True, "method": "trigger", "point_prefix": "siren"}}]
    reply_props = [m.properties for m in thingsboard.snapshot()
                   if m.topic == "v1/gateway/rpc" and m.body.get("id") == 41]
    assert reply_props[-1] is not None and 0 < reply_props[-1].MessageExpiryInterval <= 60
    # No fieldgate topics and no retained status: ThingsBoard accepts only its own topics.
    assert all(t.startswith(("v1/gateway/", "v1/devices/me/")) for t in topics)
