"""What every payload profile provides, and the neutral form of a command coming back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from gateway.journal import JournalRecord
from gateway.shared import OutboundMessage, PayloadProfileName


@dataclass(frozen=True, slots=True)
class InboundCommand:
    """A request from the platform in profile-neutral form (the command plane decides what to do)."""

    kind: Literal["rpc", "attributes"]
    topic: str
    method: str
    params: Any = None
    request_id: int | str | None = None
    device: str | None = None  # the platform's device name; None: the gateway itself
    point_prefix: str | None = None  # the fieldgate device (point id prefix) it maps back to
    extra: dict[str, Any] = field(default_factory=dict)


class PayloadProfile(Protocol):
    """Encodes journal records for one link and describes its MQTT session (drivers/mqtt/session.py)."""

    @property
    def name(self) -> PayloadProfileName: ...

    def encode(self, records: Sequence[JournalRecord], now: float | None = None) -> list[OutboundMessage]: ...

    def status_topic(self) -> str | None: ...

    def status(self, state: str) -> bytes: ...

    def subscriptions(self) -> list[str]: ...

    def on_connect(self) -> list[OutboundMessage]: ...

    def reply_topic(self, suffix: str) -> str: ...

    def decode_command(self, topic: str, payload: bytes) -> InboundCommand | None: ...

    def encode_reply(self, command: InboundCommand, result: Any) -> tuple[str, bytes]: ...
