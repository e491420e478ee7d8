"""Signed command envelopes, compact form (satellite): the COMMAND message decoded by
gateway/compact.py, then ``from_compact`` (gateway/commands/envelope.py). Documented errors:
``CompactDecodeError``, ``EnvelopeError``; an accepted envelope has signing bytes.
"""

from __future__ import annotations

from gateway import compact
from gateway.commands.envelope import Envelope, EnvelopeError, encode_compact, from_compact
from tests.unit.test_commands_codec import VECTOR_KEY as KEY  # docs/commands.md, "Test vector"

NAME = "command_compact"
COVERS = ("gateway/commands/envelope.py", "gateway/compact.py")
ISSUERS = {0: "k0", 1: "county-ops-1", 2**32 - 1: "last"}


def seeds() -> list[bytes]:
    commands = [("ping", {}, b""), ("status", {}, b"\x00" * 12), ("read_point", {"point": "dam.level"}, b"\x01\x02"),
                ("write_point", {"point": "spillway.gate_setpoint", "value": 1.25}, bytes(range(12))),
                ("cancel_broadcast", {"id": 7}, b"\xff")]
    out = []
    for i, (cmd, args, nonce) in enumerate(commands):
        env = Envelope(id=300 + i, gw="res-qingshui-01", iat=1795853523, exp=1795854123, nonce=nonce,
                       kid="county-ops-1", cmd=cmd, args=args).signed(KEY)  # type: ignore[arg-type]
        out.append(encode_compact(env, gateway_number=1001, issuer_number=1))
    return out


def fuzz_one(data: bytes) -> None:
    try:
        env = from_compact(compact.decode(data), "res-qingshui-01", ISSUERS)
    except (compact.CompactDecodeError, EnvelopeError):
        return
    env.signing_bytes()
