"""Command plane on the virtual rig: a real mosquitto, a platform publishing envelopes on
``<prefix>/<gw>/cmd/...``, a harness (aiomqtt) feeding the CommandPlane and publishing replies on
``<prefix>/<gw>/reply`` with a message expiry. A good command executes against a fake target;
forged, expired, replayed (also after a restart of the verifier) and unsigned ones are
rejected, each with a correlated reply and an audit record."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.commands import CommandPlane, Envelope, ReplayCache, load_issuer_keys
from sim.broker import Broker
from sim.platform import Platform, signed_command
from sim.support import wait_for
from tests.unit.test_commands import GW, INTRUDER_KEY, OPS_KEY, FakeTarget, commands_config

pytestmark = pytest.mark.hil

PREFIX = "fieldgate/v1"
REPLY_EXPIRY_S = 60


class CommandHarness:
    """What the daemon will do with the MQTT link's on_command: verify, run, publish the reply."""

    def __init__(self, port: int, cache: Path, target: FakeTarget, audit: list[dict[str, Any]]) -> None:
        self.port = port
        self.cache = cache
        self.target = target
        self.audit = audit
        self.subscribed = asyncio.Event()
        self.plane = self._plane()

    def _plane(self) -> CommandPlane:
        config = commands_config()

        async def on_audit(record: dict[str, Any]) -> None:
            self.audit.append(json.loads(json.dumps(record)))  # as the journal will store it

        replay = ReplayCache(self.cache, max_entries=config.replay_cache_size, max_clock_skew=config.max_clock_skew)
        return CommandPlane(config, gateway_id=GW, keys=load_issuer_keys(config), target=self.target,
                            on_audit=on_audit, replay=replay)

    async def run(self) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port, identifier=f"fieldgate-{GW}",
                                  protocol=aiomqtt.ProtocolVersion.V5) as client:
            await client.subscribe(f"{PREFIX}/{GW}/cmd/#", qos=1)
            self.subscribed.set()
            async for message in client.messages:
                payload = message.payload if isinstance(message.payload, bytes) else str(message.payload).encode()
                reply = await self.plane.handle_json(payload, via="mqtt", topic=str(message.topic))
                props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
                props.MessageExpiryInterval = REPLY_EXPIRY_S
                await client.publish(f"{PREFIX}/{GW}/reply", reply.payload(), qos=1, properties=props)


@contextlib.asynccontextmanager
async def running(harness: CommandHarness) -> Any:
    task = asyncio.create_task(harness.run())
    try:
        await asyncio.wait_for(harness.subscribed.wait(), 10)
        yield harness
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        harness.plane.close()


def signed(cmd: str, args: dict[str, Any], command_id: int, *, iat: float | None = None, ttl: int = 300,
           key: Any = OPS_KEY) -> Envelope:
    return signed_command(key, gateway=GW, kid="county-ops-1", cmd=cmd, args=args, command_id=command_id,
                          issued_at=iat, ttl=ttl)


def test_commands_over_mqtt_good_forged_expired_replayed_unsigned(broker: Broker, tmp_path: Path) -> None:
    cache = tmp_path / "state" / "commands" / "replay.sqlite"
    # A replay cache that has existed for an hour (a fresh one refuses commands older than itself).
    ReplayCache(cache, max_entries=100, max_clock_skew=60, clock=lambda: time.time() - 3600,
                monotonic=lambda: time.monotonic() - 3600).close()
    target = FakeTarget()
    audit: list[dict[str, Any]] = []
    platform = Platform(broker.port, f"{PREFIX}/{GW}/reply")
    replies = platform.replies

    async def send(payload: bytes, expect: int, suffix: str = "cmd") -> dict[str, Any]:
        platform.publish(f"{PREFIX}/{GW}/{suffix}", payload, qos=1, wait=None)  # the loop must not block here
        await asyncio.to_thread(wait_for, lambda: len(replies()) >= expect, 10, f"reply #{expect}")
        return replies()[expect - 1]

    good = signed("write_point", {"point": "siren.east.coil", "value": True}, 501)
    forged = signed("write_point", {"point": "siren.east.coil", "value": True}, 502, key=INTRUDER_KEY)
    expired = signed("write_point", {"point": "siren.east.coil", "value": True}, 503, iat=time.time() - 7200,
                     ttl=600)
    unsigned = json.loads(signed("write_point", {"point": "siren.east.coil", "value": True}, 504).to_bytes())
    del unsigned["sig"]

    async def scenario() -> None:
        async with running(CommandHarness(broker.port, cache, target, audit)):
            reply = await send(good.to_bytes(), 1, "cmd/write_point")
            assert (reply["id"], reply["status"]) == (501, "ok"), reply
            assert reply["result"]["readback"] is True
            assert target.calls == [("write_point", ("siren.east.coil", True))]

            for payload, number, command_id, reason in (
                (forged.to_bytes(), 2, 502, "bad_signature"),
                (expired.to_bytes(), 3, 503, "expired"),
                (good.to_bytes(), 4, 501, "replayed"),
                (json.dumps(unsigned).encode(), 5, 504, "unsigned"),
                (b"rm -rf /", 6, None, "malformed"),
            ):
                reply = await send(payload, number)
                assert (reply["id"], reply["status"], reply["reason"]) == (command_id, "rejected", reason), reply
        # The gateway restarts: a new verifier on the same persisted cache still refuses the replay.
        async with running(CommandHarness(broker.port, cache, target, audit)):
            reply = await send(good.to_bytes(), 7)
            assert (reply["id"], reply["status"], reply["reason"]) == (501, "rejected", "replayed"), reply
            fresh = signed("read_point", {"point": "dam.level"}, 505)
            reply = await send(fresh.to_bytes(), 8)
            assert (reply["id"], reply["status"], reply["result"]) == (505, "ok", {"point": "dam.level",
                                                                                  "value": 23.4})

    try:
        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        platform.close()

    # Executed exactly once, whatever was thrown at it.
    assert target.calls == [("write_point", ("siren.east.coil", True)), ("read_point", "dam.level")]
    outcomes = [(a["phase"], a.get("id"), a["status"], a["reason"]) for a in audit]
    assert outcomes == [
        ("accepted", 501, "ok", None), ("done", 501, "ok", None),
        ("rejected", 502, "rejected", "bad_signature"),
        ("rejected", 503, "rejected", "expired"),
        ("rejected", 501, "rejected", "replayed"),
        ("rejected", 504, "rejected", "unsigned"),
        ("rejected", None, "rejected", "malformed"),
        ("rejected", 501, "rejected", "replayed"),
        ("accepted", 505, "ok", None), ("done", 505, "ok", None),
    ]
    assert all(a["via"] == "mqtt" and a["topic"].startswith(f"{PREFIX}/{GW}/cmd") for a in audit)
    assert audit[0]["topic"] == f"{PREFIX}/{GW}/cmd/write_point"
