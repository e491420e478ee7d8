"""The demo's broker monitor against hostile messages on its broker (issue #12).

`make demo` runs the gateway and the monitor in one task group, so a message that killed the
monitor took the whole demo down: one deeply nested JSON message was enough (RecursionError).
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest

from drivers.mqtt.monitor import watch
from sim.broker import Broker
from sim.demo import _show_at_broker
from sim.platform import Platform

pytestmark = [pytest.mark.hil, pytest.mark.timeout(60)]

HOSTILE = {
    "nested": b"[" * 100_000 + b"]" * 100_000,
    "nested-object": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    "long-number": b"9" * 50_000,
    "huge": b'{"records": [' + b'"x",' * 250_000 + b'"x"]}',  # 1 MB
    "not-json": b"\xff\xfe\x00garbage",
    "printer-slip": b"{}",
    "odd-records": json.dumps({"records": [None, 1, {"point": None, "value": float("nan")}, {"kind": []}]}).encode(),
}


def test_hostile_messages_do_not_end_the_monitor(broker: Broker) -> None:
    shown: list[tuple[str, dict[str, object]]] = []
    markers: dict[object, asyncio.Event] = {"hello": asyncio.Event(), "after": asyncio.Event()}

    def show(topic: str, body: dict[str, object]) -> None:
        shown.append((topic, body))
        if body.get("state") in markers:
            markers[body.get("state")].set()
        if topic.endswith("/printer-slip"):
            raise KeyError("a printer that trips on a message")
        _show_at_broker(topic, body)  # the demo's own printer sees every message too

    async def scenario() -> None:
        monitor = asyncio.create_task(watch("127.0.0.1", broker.port, "fieldgate/#", show))
        platform = await asyncio.to_thread(Platform, broker.port, ())  # publishes only; runs in its own thread

        async def publish(topic: str, payload: bytes) -> None:
            await asyncio.to_thread(platform.publish, topic, payload)

        try:
            async with asyncio.timeout(20):  # the monitor subscribes: a marker gets through
                while not markers["hello"].is_set():
                    await publish("fieldgate/v1/gw/status", b'{"state": "hello"}')
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(markers["hello"].wait(), 0.2)
            for name, payload in HOSTILE.items():
                await publish(f"fieldgate/v1/gw/{name}", payload)
            await publish("fieldgate/v1/gw/status", b'{"state": "after"}')
            after = asyncio.create_task(markers["after"].wait())
            await asyncio.wait([after, monitor], timeout=20, return_when=asyncio.FIRST_COMPLETED)
            after.cancel()
        finally:
            platform.close()
        assert not monitor.done(), f"the monitor ended: {monitor.exception()!r}"
        assert markers["after"].is_set(), f"the message after the hostile ones never showed: {shown}"
        monitor.cancel()
        topics = [topic.rsplit("/", 1)[-1] for topic, _ in shown]
        assert set(HOSTILE) <= set(topics), topics  # each one shown (as a note), none fatal

    asyncio.run(scenario())

