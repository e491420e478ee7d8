"""A decoded compact satellite message as JSON, for people and programs on the platform side.

Used by ``fieldgate decode`` and ``fieldgate sat-centre``. Everything printed is valid JSON
(RFC 8259): a non-finite float (a compact F64/F32 value may be NaN or infinite) is written as
the string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"`` (the convention of the protobuf JSON
mapping), never as the bare ``NaN`` that Python's json module writes by default and strict
parsers refuse.
"""

from __future__ import annotations

import json
import math
import string
from typing import Any

from gateway import compact
from gateway.shared import Value

_HEX = frozenset(string.hexdigits)


def parse_hex(text: str) -> bytes:
    """The bytes a hex message stands for; spaces and colons between digits are allowed.

    Raises ValueError saying what is wrong: a character that is not a hex digit (and where),
    or an odd number of digits (a byte is two).
    """
    digits = "".join(text.split()).replace(":", "")
    for i, ch in enumerate(digits):
        if ch not in _HEX:
            raise ValueError(f"{ch!r} at position {i + 1} is not a hex digit")
    if len(digits) % 2:
        raise ValueError(f"odd number of hex digits ({len(digits)}): every byte is two digits, one is missing "
                         f"or one too many")
    return bytes.fromhex(digits)


def json_value(value: Value) -> Value:
    """``value`` as strict JSON can carry it: NaN and the infinities become strings."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def dumps(obj: Any, *, indent: int | None = None) -> str:
    """Strict JSON (raises ValueError on a non-finite float left in ``obj``: a bug, not bad input)."""
    separators = None if indent is not None else (",", ":")
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, indent=indent, separators=separators)


def message_json(message: compact.CompactMessage, *, ack_mac: str | None = None) -> dict[str, Any]:
    """Every field of ``message``; ``ack_mac`` is the verdict on an ACK's MAC, if one was checked."""
    out: dict[str, Any] = {
        "kind": message.kind.name.lower(), "version": message.version, "gateway": message.gateway,
        "base_time": message.base_time,
        "seqs": list(message.seqs),
        "readings": [{**r.to_json(), "value": json_value(r.value)} for r in message.readings],
    }
    if message.alarm is not None:
        alarm = message.alarm
        out["alarm"] = {"seq": alarm.seq, "time": alarm.time, "point": alarm.point, "rule": alarm.rule,
                        "level": alarm.level, "value": json_value(alarm.value), "quality": alarm.quality.value,
                        "text": alarm.text, "ref_seq": alarm.ref_seq}
    if message.acked:
        out["acked"] = [list(r) for r in message.acked]
        out["mac"] = ack_mac if ack_mac is not None else "not checked"
    if message.kind is compact.MessageKind.COMMAND:
        out["command_id"] = message.seqs[0] if message.seqs else None
        out["command_bytes"] = len(message.command)
    if message.reply is not None:
        out["reply"] = reply_json(message)
    return out


def reply_json(message: compact.CompactMessage) -> dict[str, Any]:
    """A REPLY in full: command id, issuer, status, reason, result (or why the body is unreadable)."""
    from gateway.commands.reply import parse_satellite_reply

    assert message.reply is not None
    out: dict[str, Any] = {"command_id": message.reply.command_id, "issuer": message.reply.issuer}
    try:
        parsed = parse_satellite_reply(message)
    except ValueError as exc:
        out["error"] = f"reply body unreadable: {exc}"
        out["body_hex"] = message.reply.body.hex()
        return out
    out.update(status=parsed.status.value, reason=parsed.reason.value, result=parsed.result)
    return out
