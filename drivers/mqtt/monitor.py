"""A subscriber that prints what reaches the broker (used by `make demo` and by technicians).

Anything on the broker can publish under the watched topic, so no message may end the monitor
(and with it the demo): one that is not JSON, is nested past the parser's recursion limit, is
too large to show, or trips the printer is shown as a one-line note and the monitor goes on.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

import aiomqtt

log = logging.getLogger("fieldgate.mqtt.monitor")

# Our own envelopes stay far below this (a batch of 200 readings is ~30 KiB); larger ones are not decoded.
MAX_DECODED_BYTES = 256 * 1024


def body_of(payload: object) -> dict[str, object]:
    """The message as a JSON object to show; a note in place of anything that is not one."""
    raw = payload if isinstance(payload, bytes | bytearray) else str(payload).encode()
    if len(raw) > MAX_DECODED_BYTES:
        return {"raw": f"{len(raw)} bytes, larger than {MAX_DECODED_BYTES}: not decoded"}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON (or an over-long number), or nested too deep
        return {"raw": repr(bytes(raw[:200]))}
    return body if isinstance(body, dict) else {"value": body}


async def watch(host: str, port: int, topic: str, show: Callable[[str, dict[str, object]], None]) -> None:
    """Print every envelope published under ``topic``; reconnects until cancelled."""
    while True:
        try:
            async with aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V5) as client:
                await client.subscribe(topic, qos=1)
                async for message in client.messages:
                    try:
                        show(str(message.topic), body_of(message.payload))
                    except Exception as exc:  # a display slip must not end the monitor
                        log.warning("monitor: message on %s not shown: %s", message.topic, repr(exc)[:200])
        except aiomqtt.MqttError:
            await asyncio.sleep(1.0)
