"""The MQTT link against a real mosquitto: PUBACK, reply expiry, persistent session, refusals, window.

(Its in-process cases are in tests/unit/test_mqtt_link.py.)"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.mqtt.client import PublishRefused
from drivers.mqtt.config import MqttLinkConfig
from drivers.mqtt.link import LinkDown, MqttLink
from gateway.shared import NullProgress, OutboundMessage
from sim.broker import Broker
from sim.platform import Platform
from sim.support import until

pytestmark = [pytest.mark.hil, pytest.mark.timeout(60)]


@pytest.fixture
def acl_broker(tmp_path: Path) -> Iterator[Broker]:
    """Anonymous clients may use fieldgate/# and platform/#, nothing else; at most 2 QoS 1 messages in flight."""
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite fieldgate/#\ntopic readwrite platform/#\n")
    broker = Broker(tmp_path / "broker", extra_conf=f"acl_file {acl}\nmax_inflight_messages 2\n").start()
    yield broker
    broker.stop()


def config(port: int, **kw: Any) -> MqttLinkConfig:
    return MqttLinkConfig.model_validate({"type": "mqtt", "host": "127.0.0.1", "port": port,
                                          "reconnect_min": 0.1, "reconnect_max": 0.5, **kw})


class Running:
    def __init__(self, link: MqttLink) -> None:
        self.link = link
        self.task = asyncio.create_task(link.run(NullProgress()))

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
def platform(acl_broker: Broker) -> Iterator[Platform]:
    p = Platform(acl_broker.port, "fieldgate/#")
    yield p
    p.close()


async def _send_reply_expiry_window_and_refusal(acl_broker: Broker, platform: Platform) -> None:
    link = MqttLink(config(acl_broker.port), "gw-1")
    with pytest.raises(LinkDown):
        await link.send(OutboundMessage("fieldgate/v1/gw-1/telemetry", b"{}", (1,)))
    running = Running(link)
    try:
        await asyncio.wait_for(link.wait_connected(), 10)
        assert link.window == 2, "the in-flight window must follow the server's Receive Maximum"
        await asyncio.gather(*(link.send(OutboundMessage("fieldgate/v1/gw-1/telemetry", b'{"n":%d}' % i, (i,)))
                               for i in range(10)))
        await link.publish_reply("reply/7", b'{"ok":true}', expiry_s=90)
        await until(lambda: any(m.topic.endswith("/reply/7") for m in platform.snapshot()),
                    f"reply: {platform.snapshot()}")
        reply = next(m for m in platform.snapshot() if m.topic.endswith("/reply/7"))
        assert reply.topic == "fieldgate/v1/gw-1/reply/7" and reply.payload == b'{"ok":true}'
        assert reply.properties is not None and 0 < reply.properties.MessageExpiryInterval <= 90
        await until(lambda: len([m for m in platform.snapshot() if m.topic.endswith("/telemetry")]) == 10,
                    "10 messages")
        # The ACL refuses this topic: PUBACK carries 0x87, the record must not count as delivered.
        with pytest.raises(PublishRefused, match="Not authorized"):
            await link.send(OutboundMessage("elsewhere/gw-1/telemetry", b"{}", (11,)))
        assert link.connected
    finally:
        await running.stop()
    await until(lambda: "offline" in [body["state"] for body in platform.on("fieldgate/v1/gw-1/status")],
                "offline status on a clean stop")


async def _commands_queued_while_away_arrive_after_reconnect(acl_broker: Broker, platform: Platform) -> None:
    """Clean Start 0 + Session Expiry: the broker keeps our subscription and queues QoS 1 commands."""
    received: list[tuple[str, bytes]] = []

    async def on_command(topic: str, payload: bytes) -> None:
        received.append((topic, payload))

    first = Running(MqttLink(config(acl_broker.port, session_expiry=600), "gw-2", on_command=on_command))
    await asyncio.wait_for(first.link.wait_connected(), 10)
    await first.stop()
    platform.send_command("gw-2", b"while-away", suffix="ping")
    second_link = MqttLink(config(acl_broker.port, session_expiry=600), "gw-2", on_command=on_command)
    second = Running(second_link)
    try:
        await until(lambda: ("fieldgate/v1/gw-2/cmd/ping", b"while-away") in received, "queued command delivered")
    finally:
        await second.stop()


async def _missing_key_is_a_config_error_and_the_link_stays_down(
    tmp_path: Path, acl_broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fieldgate.mqtt")
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    cfg = config(acl_broker.port, tls={"ca_file": str(ca), "cert_file": str(tmp_path / "gw.pem"),
                                       "key_file": str(tmp_path / "gw.key")}, reconnect_max=0.2)
    link = MqttLink(cfg, "gw-3")
    running = Running(link)
    try:
        await asyncio.sleep(1.0)  # several re-checks
        assert not running.task.done(), "the link loop must not end on a config error"
        assert not link.connected
    finally:
        await running.stop()
    lines = [r.getMessage() for r in caplog.records if "configuration error" in r.getMessage()]
    assert lines and all(f"client certificate file {tmp_path / 'gw.pem'} does not exist" in line for line in lines)
    assert len(lines) == 1, f"one line, not one per retry: {lines}"
    assert link.last_failure is not None and link.last_failure.kind == "config"


def test_send_reply_expiry_window_and_refusal(acl_broker: Broker, platform: Platform) -> None:
    asyncio.run(_send_reply_expiry_window_and_refusal(acl_broker, platform))


def test_commands_queued_while_away_arrive_after_reconnect(acl_broker: Broker, platform: Platform) -> None:
    asyncio.run(_commands_queued_while_away_arrive_after_reconnect(acl_broker, platform))


def test_missing_key_is_a_config_error_and_the_link_stays_down(
    tmp_path: Path, acl_broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    asyncio.run(_missing_key_is_a_config_error_and_the_link_stays_down(tmp_path, acl_broker, caplog))
