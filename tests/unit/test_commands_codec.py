"""Canonical bytes of a command: RFC 8785 numbers and ordering, the documented vector, and the
compact satellite form (same signature, bounded size, hostile bytes never crash)."""

from __future__ import annotations

import contextlib
import json
import re
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import compact
from gateway.alerts.signing import public_key_text
from gateway.commands.canonical import CanonicalError, canonical_json, number_text
from gateway.commands.envelope import Envelope, EnvelopeError, encode_compact, from_compact, parse_json

# RFC 8785 Appendix B, "Number Serialization Samples" (IEEE-754 bits -> JSON text);
# source: https://www.rfc-editor.org/rfc/rfc8785#appendix-B
RFC8785_NUMBERS = [
    ("0000000000000000", "0"), ("8000000000000000", "0"), ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"), ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"), ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"), ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"), ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"), ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"), ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"), ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"), ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"), ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"), ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "text"), RFC8785_NUMBERS)
def test_rfc8785_number_samples(bits: str, text: str) -> None:
    assert number_text(struct.unpack(">d", bytes.fromhex(bits))[0]) == text


def test_big_integers_are_written_as_the_double_they_are() -> None:
    expected = b"[9007199254740992,9007199254740991,27155076053351330]"
    assert canonical_json([2**53, 2**53 - 1, 27155076053351330]) == expected
    with pytest.raises(CanonicalError):
        canonical_json(2**70)  # JCS would print 1.1805916207174113e+21: the signed text would not be the value


def test_rfc8785_key_order_is_by_utf16_code_units() -> None:
    # RFC 8785 section 3.2.3: the emoji (a surrogate pair, 0xD83D...) sorts before U+FB33.
    keys = ["\u20ac", "\r", "\ufb33", "1", "\U0001f600", "\u0080", "\u00f6"]
    out = canonical_json(dict.fromkeys(keys, 0)).decode()
    assert [json.loads(out)[k] for k in keys] == [0] * 7
    assert list(json.loads(out)) == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


def test_rfc8785_string_escapes_and_literals() -> None:
    value = {"numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001],
             "string": "\u20ac$\u000f\nA'B\"\\\\\"/", "literals": [None, True, False]}
    assert canonical_json(value) == (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}').encode()


def _nested(depth: int) -> list[object]:
    out: list[object] = []
    for _ in range(depth):
        out = [out]
    return out


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 2**53 + 1, 10**400, {1: 2}, "\ud800", object(),
                                 _nested(20)])
def test_what_jcs_cannot_carry_is_refused(bad: object) -> None:
    with pytest.raises(CanonicalError):
        canonical_json(bad)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_number_text_round_trips(x: float) -> None:
    assert float(number_text(x)) == x


# ---------------------------------------------------------------------------- the documented vector

VECTOR_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))  # docs/commands.md, "Test vector"
VECTOR_ENV = Envelope(id=42, gw="res-qingshui-01", iat=1795853523, exp=1795853823,
                      nonce=bytes.fromhex("000102030405060708090a0b"), kid="county-ops-1", cmd="write_point",
                      args={"point": "spillway.gate_setpoint", "value": 1.25})


def test_documented_vector() -> None:
    assert public_key_text(VECTOR_KEY) == "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
    assert VECTOR_ENV.signing_bytes() == (
        b'fieldgate-command-v1|{"args":{"point":"spillway.gate_setpoint","value":1.25},"cmd":"write_point",'
        b'"exp":1795853823,"gw":"res-qingshui-01","iat":1795853523,"id":42,"kid":"county-ops-1",'
        b'"nonce":"AAECAwQFBgcICQoL","v":1}')
    signed = VECTOR_ENV.signed(VECTOR_KEY)
    assert signed.sig is not None and signed.sig.hex() == (
        "590bf60b550bbf65cba4c902d718932fc4c170c96d4c11735dcef5eb55dc8d7e"
        "6d9589d127284c8d8bc1857334b325204c553d927433a2f7f90d32d97ed29b08")


def test_documented_compact_vector() -> None:
    ping = Envelope(id=300, gw="res-qingshui-01", iat=1795853523, exp=1795854123, nonce=b"", kid="county-ops-1",
                    cmd="ping", args={}).signed(VECTOR_KEY)
    data = encode_compact(ping, gateway_number=1001, issuer_number=1)
    assert len(data) == compact.BEIDOU_LEVEL3_BYTES  # an argument-less command just fits a level-3 card
    assert data.hex() == (
        "15e9076b0a8cd3ac020001d804593ee5dc811c70207782e6b3b76dc516d989f9286a61ef6da64be6a04cff44dfc1458c"
        "a666c9075c7d72c70fb674b20f13d49d4ae33a48aca5a9fc139b73f30f")
    back = from_compact(compact.decode(data), "res-qingshui-01", {1: "county-ops-1"})
    assert back == ping


def test_json_form_round_trips_and_any_layout_is_accepted() -> None:
    signed = VECTOR_ENV.signed(VECTOR_KEY)
    assert parse_json(signed.to_bytes()) == signed
    pretty = json.dumps(signed.to_json(), indent=2, sort_keys=True).encode()
    assert parse_json(pretty) == signed


# ---------------------------------------------------------------------------- compact form

envelopes = st.builds(
    Envelope,
    id=st.integers(0, 2**53 - 1),
    gw=st.just("gw-1"),
    iat=st.integers(0, 2**32 - 1 - 10**6),  # exp = iat + ttl (up to 10**6) stays a u32
    exp=st.just(0),
    nonce=st.binary(max_size=12),
    kid=st.just("k"),
    cmd=st.sampled_from(["ping", "read_point", "write_point", "cancel_broadcast"]),
    args=st.dictionaries(st.text(max_size=8), st.one_of(st.none(), st.booleans(), st.integers(-(2**53) + 1, 2**53 - 1),
                                                        st.floats(allow_nan=False, allow_infinity=False),
                                                        st.text(max_size=20)), max_size=4),
)


@settings(max_examples=200, deadline=None)
@given(envelopes, st.integers(1, 10**6), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_compact_round_trip_keeps_the_canonical_bytes(env: Envelope, ttl: int, gw_number: int,
                                                      issuer: int) -> None:
    env = Envelope(id=env.id, gw=env.gw, iat=env.iat, exp=env.iat + ttl, nonce=env.nonce, kid=env.kid,
                   cmd=env.cmd, args=env.args).signed(VECTOR_KEY)
    message = compact.decode(encode_compact(env, gateway_number=gw_number, issuer_number=issuer))
    back = from_compact(message, "gw-1", {issuer: "k"})
    assert back.signing_bytes() == env.signing_bytes() and back.sig == env.sig
    VECTOR_KEY.public_key().verify(back.sig or b"", back.signing_bytes())


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_hostile_compact_bytes_raise_only_known_errors(data: bytes) -> None:
    try:
        message = compact.decode(data)
    except compact.CompactDecodeError:
        return
    with contextlib.suppress(EnvelopeError):
        from_compact(message, "gw-1", {0: "k", 1: "k1"})


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                 st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
                              lambda c: st.one_of(st.lists(c, max_size=4),
                                                  st.dictionaries(st.sampled_from(
                                                      ["v", "id", "gw", "iat", "exp", "nonce", "kid", "cmd", "args",
                                                       "sig", "x"]), c, max_size=10)),
                              max_leaves=20).map(lambda v: json.dumps(v).encode())))
def test_hostile_json_raises_only_envelope_errors(data: bytes) -> None:
    with contextlib.suppress(EnvelopeError):
        parse_json(data)


def test_docs_schema_and_reason_codes_match_the_code() -> None:
    from pathlib import Path

    from gateway.commands.names import COMMANDS, REASON_CODES

    doc = (Path(__file__).resolve().parents[2] / "docs" / "commands.md").read_text(encoding="utf-8")
    block = doc.split('JSON Schema (draft 2020-12):\n\n```json\n', 1)[1].split("```", 1)[0]
    schema = json.loads(block)
    signed = VECTOR_ENV.signed(VECTOR_KEY).to_json()
    assert set(schema["required"]) == set(schema["properties"]) == set(signed)
    assert schema["properties"]["cmd"]["enum"] == list(COMMANDS)
    assert re.fullmatch(schema["properties"]["nonce"]["pattern"], signed["nonce"])
    assert re.fullmatch(schema["properties"]["sig"]["pattern"], signed["sig"])
    listed = re.findall(r"(\d+) `([a-z_]+)`", doc.split("Reason codes:", 1)[1].split("##", 1)[0])
    assert [(int(i), r) for i, r in listed] == [(i, r.value) for i, r in enumerate(REASON_CODES) if r.value]


@given(st.binary(max_size=12))
def test_docs_nonce_pattern_accepts_every_valid_nonce(nonce: bytes) -> None:
    import base64
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "commands.md").read_text(encoding="utf-8")
    schema = json.loads(doc.split('JSON Schema (draft 2020-12):\n\n```json\n', 1)[1].split("```", 1)[0])
    assert re.fullmatch(schema["properties"]["nonce"]["pattern"], base64.b64encode(nonce).decode())
