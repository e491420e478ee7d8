"""Signed command envelopes, JSON form (MQTT): ``parse_json`` raises only ``EnvelopeError``, and an
envelope it accepts comes back unchanged from its own JSON (gateway/commands/envelope.py).

Seeds: the documented vector of docs/commands.md (signed and unsigned), the other commands.
"""

from __future__ import annotations

from gateway.commands.envelope import Envelope, EnvelopeError, parse_json
from tests.unit.test_commands_codec import VECTOR_ENV as VECTOR  # docs/commands.md, "Test vector"
from tests.unit.test_commands_codec import VECTOR_KEY as KEY

NAME = "command_json"
COVERS = ("gateway/commands/envelope.py", "gateway/commands/canonical.py")
MAX_LEN = 20_000  # past MAX_ENVELOPE_BYTES (16 384)
DICTIONARY = [b'"v"', b'"id"', b'"gw"', b'"iat"', b'"exp"', b'"nonce"', b'"kid"', b'"cmd"', b'"args"', b'"sig"',
              b"1e400", b"-0", b"9007199254740993", b'"\\ud800"', b"NaN", b"Infinity"]


def seeds() -> list[bytes]:
    signed = VECTOR.signed(KEY)
    others = [Envelope(id=300 + i, gw="gw-1", iat=1795853523, exp=1795854123, nonce=b"", kid="k", cmd=cmd,  # type: ignore[arg-type]
                       args=args).signed(KEY)
              for i, (cmd, args) in enumerate([("ping", {}), ("read_point", {"point": "dam.level"}),
                                               ("trigger_broadcast", {"message": "撤离", "zones": ["a", "b"],
                                                                      "repeat": 3, "gain": -6.5})])]
    return [signed.to_bytes(), VECTOR.to_bytes(), *(e.to_bytes() for e in others)]


def fuzz_one(data: bytes) -> None:
    try:
        env = parse_json(data)
    except EnvelopeError:
        return
    assert parse_json(env.to_bytes()) == env
    env.signing_bytes()
