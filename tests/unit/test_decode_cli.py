"""`fieldgate decode`: strict JSON out, REPLY messages in full, and a clear word on bad hex."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from gateway import compact
from gateway.commands.names import Reason, Status
from gateway.commands.reply import Reply
from gateway.shared import Quality, Reading
from tests.unit.cli import fieldgate

ALIASES = compact.AliasTable({1: "dam.level", 2: "water.turbidity"})


def strict(text: str) -> Any:
    """RFC 8259 JSON: NaN, Infinity and -Infinity are not in it."""
    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")
    return json.loads(text, parse_constant=refuse)


def test_nan_and_infinities_are_printed_as_valid_json() -> None:
    """Before: json.dumps wrote bare NaN / Infinity, which strict JSON parsers refuse."""
    readings = [Reading("dam.level", math.nan, Quality.BAD_FRAME, 1_800_000_000, seq=5),
                Reading("water.turbidity", math.inf, Quality.GOOD, 1_800_000_000, seq=6),
                Reading("dam.level", -math.inf, Quality.GOOD, 1_800_000_001, seq=7)]
    data = compact.encode_readings(readings, gateway=9, aliases=ALIASES)
    alarm = compact.encode_alarm(compact.CompactAlarm(seq=8, time=1_800_000_002, point="dam.level", rule=1, level=2,
                                                     value=math.nan), gateway=9, aliases=ALIASES)
    ran = fieldgate("decode", data.hex())
    assert ran.returncode == 0, ran.stderr
    out = strict(ran.stdout)
    assert [r["value"] for r in out["readings"]] == ["NaN", "Infinity", "-Infinity"]
    ran = fieldgate("decode", alarm.hex())
    assert strict(ran.stdout)["alarm"]["value"] == "NaN"


def reply_message(result: dict[str, Any] | None, status: Status = Status.OK, reason: Reason = Reason.NONE) -> bytes:
    reply = Reply(gw="res-01", id=4242, kid="ops", cmd="ping", status=status, reason=reason, detail="",
                  result=result, ts=1_800_000_100.5, via="beidou")
    return compact.encode_reply(reply.compact_body(60), gateway=1001, time=1_800_000_100, command_id=4242, issuer=7)


def test_reply_is_decoded_in_full() -> None:
    """Before: a REPLY printed kind, gateway and time only (no command id, issuer, status, reason, result)."""
    ran = fieldgate("decode", reply_message({"gw": "res-01", "pong": True}).hex())
    assert ran.returncode == 0, ran.stderr
    out = strict(ran.stdout)
    assert out["kind"] == "reply" and out["gateway"] == 1001 and out["seqs"] == []
    assert out["reply"] == {"command_id": 4242, "issuer": 7, "status": "ok", "reason": "",
                            "result": {"gw": "res-01", "pong": True}}
    rejected = strict(fieldgate("decode", reply_message(None, Status.REJECTED, Reason.EXPIRED).hex()).stdout)
    assert rejected["reply"] == {"command_id": 4242, "issuer": 7, "status": "rejected", "reason": "expired",
                                 "result": None}


def test_reply_with_an_unreadable_body_says_so() -> None:
    data = compact.encode_reply(b"\x09\x00", gateway=1, time=0, command_id=3, issuer=None)  # status 9: none such
    out = strict(fieldgate("decode", data.hex()).stdout)
    assert out["reply"]["command_id"] == 3 and out["reply"]["issuer"] is None
    assert "unreadable" in out["reply"]["error"] and out["reply"]["body_hex"] == "0900"


@pytest.mark.parametrize("text,says", [
    ("1201a", "odd number of hex digits (5)"),
    ("12 01 a", "odd number of hex digits (5)"),
    ("12zz", "'z' at position 3 is not a hex digit"),
])
def test_bad_hex_is_reported_as_such(text: str, says: str) -> None:
    """Before: "abc" gave Python's "non-hexadecimal number found in fromhex() arg at position 3"."""
    ran = fieldgate("decode", text)
    assert ran.returncode == 2
    assert says in ran.stderr, ran.stderr
