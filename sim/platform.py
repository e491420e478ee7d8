"""The county platform's side of the MQTT link: the one MQTT client the tests and the benchmarks play it with.

It subscribes at QoS 1 with a persistent session (Clean Start 0, Session Expiry 1 h), as the county's platform
does: while it is away (a broker restart) the broker keeps what the gateway publishes for it. Every message is
kept with its topic, its body (the JSON value, or the raw payload when it is not JSON), its MQTT 5 properties and
when it arrived, unless the caller keeps only a count through ``on_message`` (a million-record drain). It
publishes raw payloads (an attacker's junk too) and signed command envelopes.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Self

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt import client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.commands.envelope import Envelope
from sim.support import wait_for

PREFIX = "fieldgate/v1"
SESSION_EXPIRY_S = 3600


@dataclass(frozen=True)
class Message:
    """One message as the platform received it."""

    topic: str
    body: Any  # the decoded JSON value, or ``payload`` itself when it is not JSON
    payload: bytes
    properties: Properties | None  # MQTT 5 properties (Message Expiry of a reply, ...)
    arrived: float  # time.time() at arrival: latency figures in bench/


def signed_command(key: Ed25519PrivateKey, *, gateway: str, kid: str, cmd: str, args: dict[str, Any],
                   command_id: int, issued_at: float | None = None, ttl: int = 300) -> Envelope:
    """A command envelope signed by issuer ``kid`` (docs/commands.md), valid ``ttl`` seconds from ``issued_at``."""
    issued = int(time.time() if issued_at is None else issued_at)
    return Envelope(id=command_id, gw=gateway, iat=issued, exp=issued + ttl, nonce=command_id.to_bytes(8, "big"),
                    kid=kid, cmd=cmd, args=args).signed(key)  # type: ignore[arg-type]


class Platform:
    """A platform-side MQTT 5 client on ``host:port``, subscribed to ``topics`` (none: it only publishes)."""

    def __init__(self, port: int, topics: str | Sequence[str] = "fieldgate/#", *, host: str = "127.0.0.1",
                 keep: bool = True, on_message: Callable[[Message], None] | None = None,
                 max_inflight: int | None = None) -> None:
        self.messages: list[Message] = []  # read through snapshot() or the queries below while it runs
        self._lock = threading.Lock()
        self.subscriptions = [topics] if isinstance(topics, str) else list(topics)
        self._keep = keep
        self._on_message = on_message
        self._subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"platform-{uuid.uuid4().hex[:8]}",
                                  protocol=paho.MQTTv5)
        self.client.on_connect = self._subscribe
        self.client.on_subscribe = lambda *_args: self._subscribed.set()
        self.client.on_message = self._received
        self.client.reconnect_delay_set(0.2, 1)  # type: ignore[arg-type]  # seconds; paho sleeps a float
        if max_inflight is not None:
            self.client.max_inflight_messages_set(max_inflight)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        self.client.connect(host, port, clean_start=False, properties=props)
        self.client.loop_start()
        wait_for(self.client.is_connected, 10, "the platform connected")
        if self.subscriptions:
            wait_for(self._subscribed.is_set, 10, f"the platform subscribed to {self.subscriptions}")

    def _subscribe(self, client: paho.Client, _userdata: Any, _flags: Any, _reason: Any, _props: Any = None) -> None:
        if self.subscriptions:
            client.subscribe([(topic, 1) for topic in self.subscriptions])

    def _received(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        arrived = time.time()
        try:
            body: Any = json.loads(message.payload)
        except (ValueError, RecursionError):
            body = message.payload
        received = Message(message.topic, body, bytes(message.payload), getattr(message, "properties", None), arrived)
        if self._on_message is not None:
            self._on_message(received)
        if self._keep:
            with self._lock:
                self.messages.append(received)

    # ---- what arrived ----

    def snapshot(self) -> list[Message]:
        with self._lock:
            return list(self.messages)

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()

    def on(self, topic: str) -> list[Any]:
        """Bodies published on exactly ``topic``."""
        return [m.body for m in self.snapshot() if m.topic == topic]

    def records(self, kind: str | None = "telemetry") -> list[dict[str, Any]]:
        """Records published under ``<gw>/<kind>`` (all kinds with None)."""
        return [r for m in self.snapshot() if kind is None or m.topic.endswith("/" + kind)
                for r in (m.body.get("records", []) if isinstance(m.body, dict) else [])]

    def status(self) -> list[str]:
        return [m.body.get("state") for m in self.snapshot() if m.topic.endswith("/status")]

    def values(self, point: str) -> list[Any]:
        return [r["value"] for r in self.records() if r["point"] == point]

    def replies(self) -> list[dict[str, Any]]:
        """Command replies (``<gw>/reply``), oldest first."""
        return [m.body for m in self.snapshot() if m.topic.endswith("/reply") and isinstance(m.body, dict)]

    def reply_to(self, command_id: object) -> dict[str, Any] | None:
        return next((r for r in self.replies() if r.get("id") == command_id), None)

    # ---- what it sends ----

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, *, properties: Properties | None = None,
                wait: float | None = 10) -> paho.MQTTMessageInfo:
        """Publish; with ``wait``, return once the broker has it (PUBACK for QoS 1), else at once."""
        info = self.client.publish(topic, payload, qos=qos, properties=properties)
        if wait is not None:
            info.wait_for_publish(wait)
        return info

    def send_command(self, gateway: str, envelope: bytes, *, suffix: str = "", qos: int = 1) -> None:
        """Publish a command envelope on ``<prefix>/<gateway>/cmd[/suffix]``, where the MQTT link listens."""
        self.publish(f"{PREFIX}/{gateway}/cmd" + (f"/{suffix}" if suffix else ""), envelope, qos=qos)

    def close(self) -> None:
        """Leave for good: the session ends with the connection (a broker restart is not a close, the session
        survives that), so the broker does not go on queueing for a platform that is gone."""
        props = Properties(PacketTypes.DISCONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 0
        self.client.loop_stop()
        self.client.disconnect(properties=props)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
