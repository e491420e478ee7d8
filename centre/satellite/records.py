"""A gateway's compact message as the fieldgate MQTT envelope it would have published itself.

Same topics (``<prefix>/<gw>/alarm|telemetry|event|reply``), same seqs, the same fields where the
compact form carries them (docs/payloads.md), plus ``"via": "beidou"`` on every record. What the
compact form does not carry is left out, never made up: an alarm's ``alarm_id`` and ``class`` and
all but its first point; times are whole seconds; an acknowledged alarm travels as an ALARM and so
reads ``"transition": "raised"`` (docs/satellite.md §7.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from centre.satellite.config import Gateway
from gateway import compact
from gateway.compactview import dumps, json_value
from gateway.satellite import SEVERITY_LEVEL
from gateway.shared import Reading

VIA = "beidou"
ENVELOPE_VERSION = 1  # gateway.payloads.ENVELOPE_VERSION: the same envelope
_SEVERITY = {level: name for name, level in SEVERITY_LEVEL.items()}


@dataclass(frozen=True, slots=True)
class Publication:
    topic: str
    payload: bytes
    seqs: tuple[int, ...]  # journal seqs it carries (the ACK names them once the broker has it)
    expiry_s: int | None = None  # MQTT 5 Message Expiry Interval (replies, as the gateway sets it)


def envelope(gateway: Gateway, kind: str, records: list[dict[str, Any]]) -> Publication:
    body = {"v": ENVELOPE_VERSION, "gw": gateway.gateway_id, "records": records}
    seqs = tuple(int(r["seq"]) for r in records)
    return Publication(f"{gateway.base}/{kind}", dumps(body).encode(), seqs)


def reading_record(gateway: Gateway, reading: Reading, now: float) -> dict[str, Any]:
    record = reading.to_json()
    record["value"] = json_value(reading.value)
    record["unit"] = gateway.units.get(reading.point, "")
    if now - reading.source_time > gateway.historical_after:
        record["hist"] = True  # as the gateway marks a record it sends late
    record["via"] = VIA
    return record


def alarm_record(gateway: Gateway, message: compact.CompactMessage, now: float) -> tuple[str, dict[str, Any]]:
    """(topic kind, record) of an ALARM or ALARM_CANCEL."""
    alarm = message.alarm
    assert alarm is not None
    cleared = message.kind is compact.MessageKind.ALARM_CANCEL
    camera, _, role = alarm.point.partition(".")
    record: dict[str, Any]
    if alarm.rule == 0 and camera in gateway.cameras:  # a camera detection (gateway/satellite.py sends rule 0)
        record = {"kind": "detection", "key": camera, "ts": float(alarm.time), "phase": "end" if cleared else "new",
                  "role": role, "score": json_value(alarm.value)}
        kind = "event" if cleared else "alarm"
    else:
        rule = gateway.rules_by_alias.get(alarm.rule, f"@{alarm.rule}" if alarm.rule else "")
        record = {"kind": "alarm", "key": rule, "ts": float(alarm.time),
                  "transition": "cleared" if cleared else "raised", "rule": rule,
                  "severity": _SEVERITY.get(alarm.level, str(alarm.level)),
                  "points": {alarm.point: {"value": json_value(alarm.value), "q": alarm.quality.value,
                                           "ts": float(alarm.time)}}}
        if alarm.text:
            record["message"] = alarm.text
        kind = "alarm"
    record["seq"] = alarm.seq
    if now - alarm.time > gateway.historical_after:
        record["hist"] = True
    record["via"] = VIA
    return kind, record


REPLY_EXPIRY_S = 300  # the gateway's default reply_expiry (docs/commands.md)


def reply_publication(gateway: Gateway, message: compact.CompactMessage) -> Publication | None:
    """A REPLY as the gateway's MQTT reply (docs/commands.md "Reply"); None if its body is unreadable."""
    from gateway.commands.reply import parse_satellite_reply

    try:
        reply = parse_satellite_reply(message)
    except ValueError:
        return None
    body: dict[str, Any] = {"v": 1, "gw": gateway.gateway_id, "id": reply.command_id,
                            "kid": gateway.issuers.get(reply.issuer) if reply.issuer is not None else None,
                            "cmd": None, "status": reply.status.value, "ts": float(reply.time), "via": VIA,
                            "issuer": reply.issuer}
    if reply.reason:
        body["reason"], body["detail"] = reply.reason.value, ""
    if reply.result is not None:
        body["result"] = reply.result
    return Publication(f"{gateway.base}/reply", dumps(body).encode(), (), REPLY_EXPIRY_S)
