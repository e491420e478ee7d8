"""The reply to a command: JSON for MQTT, a few bytes for satellite.

Satellite: the body (``Reply.compact_body``) travels in a compact REPLY message
(``gateway.compact.encode_reply``, docs/satellite.md §1.6); the platform reads a received
message with :func:`parse_satellite_reply`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.commands.canonical import CanonicalError, canonical_json
from gateway.commands.envelope import strict_loads
from gateway.commands.names import REASON_CODES, Reason, Status

if TYPE_CHECKING:
    from gateway import compact

REPLY_VERSION = 1
_STATUS_CODES: tuple[Status, ...] = (Status.OK, Status.REJECTED, Status.FAILED)


@dataclass(frozen=True, slots=True)
class Reply:
    gw: str
    id: int | None  # the command id (None when the input was too broken to carry one)
    kid: str | None
    cmd: str | None
    status: Status
    reason: Reason
    detail: str
    result: dict[str, Any] | None
    ts: float
    via: str

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"v": REPLY_VERSION, "gw": self.gw, "id": self.id, "kid": self.kid, "cmd": self.cmd,
                               "status": self.status.value, "ts": self.ts, "via": self.via}
        if self.reason:
            out["reason"] = self.reason.value
            out["detail"] = self.detail
        if self.result is not None:
            out["result"] = self.result
        return out

    def payload(self) -> bytes:
        """The MQTT payload for ``<prefix>/<gw>/reply``."""
        return json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=False, default=str).encode()

    def compact_body(self, max_bytes: int = 60) -> bytes:
        """Satellite reply body (the compact header's seq carries the command id):
        status code (1 byte: 0 ok, 1 rejected, 2 failed), reason code (1 byte, docs/commands.md),
        then the result as canonical JSON only if the whole body stays within ``max_bytes``."""
        head = bytes([_STATUS_CODES.index(self.status), REASON_CODES.index(self.reason)])
        if self.result:
            try:
                result = canonical_json(self.result)
            except CanonicalError:
                return head
            if len(head) + len(result) <= max_bytes:
                return head + result
        return head


def decode_compact_reply(body: bytes) -> tuple[Status, Reason, dict[str, Any] | None]:
    """Platform side of ``Reply.compact_body``. Raises ValueError (and nothing else) on bad input."""
    if len(body) < 2 or body[0] >= len(_STATUS_CODES) or body[1] >= len(REASON_CODES):
        raise ValueError("not a compact command reply")
    result: Any = None
    if len(body) > 2:
        try:
            result = strict_loads(bytes(body[2:]))  # the gateway writes JCS: no NaN, no duplicate keys
        except RecursionError:  # deeply nested junk
            raise ValueError("compact reply result nested too deeply") from None
        if not isinstance(result, dict):
            raise ValueError("compact reply result is not an object")
    return _STATUS_CODES[body[0]], REASON_CODES[body[1]], result


@dataclass(frozen=True, slots=True)
class SatelliteReply:
    """A compact REPLY as the platform reads it. ``command_id`` and ``issuer`` are echoed from the
    command (unauthenticated for a rejected one): correlate by (gateway, issuer, command_id)."""

    gateway: int
    time: int
    command_id: int
    issuer: int | None
    status: Status
    reason: Reason
    result: dict[str, Any] | None


def parse_satellite_reply(message: compact.CompactMessage | bytes) -> SatelliteReply:
    """Platform side: a received REPLY message (raw bytes or decoded). Raises ValueError on bad input
    (``CompactDecodeError`` is turned into ValueError too)."""
    from gateway import compact  # the compact codec: only where a satellite message is made or read

    if isinstance(message, bytes | bytearray):
        try:
            message = compact.decode(bytes(message))
        except compact.CompactDecodeError as exc:
            raise ValueError(f"not a compact message: {exc}") from None
    if message.kind is not compact.MessageKind.REPLY or message.reply is None:
        raise ValueError(f"not a REPLY message ({message.kind.name})")
    status, reason, result = decode_compact_reply(message.reply.body)
    return SatelliteReply(message.gateway, message.base_time, message.reply.command_id, message.reply.issuer,
                          status, reason, result)
