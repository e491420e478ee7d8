"""What a payload profile tells the MQTT link about the session (topics, birth, will).

The profile objects live in gateway/profiles/; the link only needs this structural
protocol, so the driver does not import the core beyond gateway.shared.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from gateway.shared import OutboundMessage


class MqttSession(Protocol):
    def status_topic(self) -> str | None:
        """Retained birth/status topic, also the will topic; None when the platform tracks presence itself."""
        ...

    def status(self, state: str) -> bytes:
        """Status payload for ``online`` (birth, retained) and ``offline`` (will and clean stop)."""
        ...

    def subscriptions(self) -> list[str]:
        """Command topic filters, subscribed with QoS 1 on every connect (the session keeps them)."""
        ...

    def on_connect(self) -> list[OutboundMessage]:
        """Messages to publish after every (re)connect, before any record (e.g. ThingsBoard device connects)."""
        ...

    def reply_topic(self, suffix: str) -> str:
        """The full topic of a command reply, from the suffix the command plane gives."""
        ...


class DefaultSession:
    """The `fieldgate` topics for a link built without a profile (the original constructor)."""

    def __init__(self, topic_prefix: str, gateway_id: str, status_payload: Callable[[str], bytes]) -> None:
        self.base = f"{topic_prefix.rstrip('/')}/{gateway_id}"
        self._status_payload = status_payload

    def status_topic(self) -> str | None:
        return f"{self.base}/status"

    def status(self, state: str) -> bytes:
        return self._status_payload(state)

    def subscriptions(self) -> list[str]:
        return [f"{self.base}/cmd/#"]

    def on_connect(self) -> list[OutboundMessage]:
        return []

    def reply_topic(self, suffix: str) -> str:
        return f"{self.base}/{suffix.lstrip('/')}"
