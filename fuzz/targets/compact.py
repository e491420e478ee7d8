"""The compact satellite codec, receive side (gateway/compact.py): ``decode`` raises only
``CompactDecodeError``; what it returns re-encodes to the same readings; a COMMAND's issuer and
a REPLY's body (gateway/commands/reply.py, documented ``ValueError``) are read without crashing.

Seeds: one message of every kind (READINGS in versions 1 and 2), made by the codec's own encoders (the ACK as bytes: its
format is being changed elsewhere, and a seed only has to be a good starting point).
"""

from __future__ import annotations

import contextlib
import struct

from gateway import compact
from gateway.commands.reply import parse_satellite_reply
from gateway.shared import Quality, Reading, Value

NAME = "compact"
COVERS = ("gateway/compact.py", "gateway/commands/reply.py")
ALIASES = compact.AliasTable({i: f"p{i}" for i in (0, 1, 2, 7, 127, 128, 300, 2**32 - 1)})
GATEWAY, T0 = 1001, 1795853523


def _readings() -> list[Reading]:
    values: list[Value] = [12.5, 12.75, 12.75, 3, 4, -1, True, None, "open", 0.1, 1e300, float("nan"), -0.0, 2**62]
    return [Reading(point=f"p{(0, 1, 2, 7, 128, 300)[i % 6]}", value=v, quality=list(Quality)[i % len(Quality)],
                    source_time=T0 + 7 * i, seq=100 + i + (i // 5) * 3, historical=i % 4 == 3)
            for i, v in enumerate(values)]


def _grid() -> list[Reading]:
    """Readings 0, 1..5 and 6 steps of 10 s apart, some historical: every version-2 time code."""
    offsets = (0, 0, 10, 30, 50, 110, 3, -20)
    return [Reading(point=f"p{(1, 2)[i % 2]}", value=0.5 * i, quality=Quality.GOOD,
                    source_time=T0 + sum(offsets[: i + 1]), seq=200 + i, historical=i == 6)
            for i in range(len(offsets))]


def _alarm(value: Value, text: str, ref: int | None = None) -> compact.CompactAlarm:
    return compact.CompactAlarm(seq=500, time=T0, point="p7", rule=3, level=2, value=value, text=text, ref_seq=ref)


def seeds() -> list[bytes]:
    readings = _readings()
    return [
        compact.encode_readings(readings, gateway=GATEWAY, aliases=ALIASES),
        compact.encode_readings(readings[:3], gateway=0, aliases=ALIASES),
        compact.encode_readings(readings, gateway=GATEWAY, aliases=ALIASES, version=1),  # what older gateways send
        compact.encode_readings(_grid(), gateway=GATEWAY, aliases=ALIASES),  # version 2's time codes
        compact.encode_alarm(_alarm(41.25, "水位超警戒"), gateway=GATEWAY, aliases=ALIASES),
        compact.encode_alarm_cancel(_alarm(None, "", ref=480), gateway=GATEWAY, aliases=ALIASES),
        bytes.fromhex("14e9076b0a8cd3050200040200"),  # ACK of seqs 5..9 and 12, gateway 1001
        compact.encode_command(b"\x10\x01\xd8\x04" + bytes(64), gateway=GATEWAY, time=T0, command_id=300),
        compact.encode_reply(b"\x00\x00" + b'{"value":12.5}', gateway=GATEWAY, time=T0, command_id=300, issuer=1),
        compact.encode_reply(b"\x01\x03", gateway=GATEWAY, time=T0, command_id=7, issuer=None),
    ]


def _same(a: Value, b: Value) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack(">d", a) == struct.pack(">d", b)
    return type(a) is type(b) and a == b


def fuzz_one(data: bytes) -> None:
    try:
        message = compact.decode(data, ALIASES)
    except compact.CompactDecodeError:
        return
    if message.kind is compact.MessageKind.READINGS:
        assert len(message.seqs) == len(message.readings)
        # zero readings decode, but no encoder makes them: nothing to compare
        if message.readings and all(r.point in ALIASES.by_point for r in message.readings):
            again = compact.decode(compact.encode_readings(message.readings, gateway=message.gateway, aliases=ALIASES),
                                   ALIASES).readings
            assert [(r.point, r.quality, r.source_time, r.seq, r.historical) for r in again] == [
                (r.point, r.quality, r.source_time, r.seq, r.historical) for r in message.readings]
            assert all(_same(a.value, b.value) for a, b in zip(again, message.readings, strict=True))
    elif message.kind is compact.MessageKind.COMMAND:
        issuer = compact.command_issuer(message)
        assert issuer is None or 0 <= issuer < 2**32
    elif message.kind is compact.MessageKind.REPLY:
        with contextlib.suppress(ValueError):  # documented for a bad reply body
            parse_satellite_reply(message)
