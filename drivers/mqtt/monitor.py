"""A subscriber that prints what reaches the broker (used by `make demo` and by technicians)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import aiomqtt


async def watch(host: str, port: int, topic: str, show: Callable[[str, dict[str, object]], None]) -> None:
    """Print every envelope published under ``topic``; reconnects until cancelled."""
    while True:
        try:
            async with aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V5) as client:
                await client.subscribe(topic, qos=1)
                async for message in client.messages:
                    try:
                        body = json.loads(message.payload)
                    except (ValueError, TypeError):
                        body = {"raw": repr(message.payload)[:200]}
                    show(str(message.topic), body if isinstance(body, dict) else {"value": body})
        except aiomqtt.MqttError:
            await asyncio.sleep(1.0)
