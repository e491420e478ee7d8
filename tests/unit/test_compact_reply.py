"""Compact REPLY (gateway -> platform answer to a satellite COMMAND): layout, sizes, errors, and
property tests (round trip; decode raises only CompactDecodeError, the platform-side reader only
ValueError). Layout: docs/satellite.md §1.6."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.commands.names import REASON_CODES, Reason, Status
from gateway.commands.reply import Reply, decode_compact_reply, parse_satellite_reply
from gateway.compact import (
    BEIDOU_LEVEL3_BYTES,
    CompactDecodeError,
    CompactEncodeError,
    MessageKind,
    command_issuer,
    decode,
    encode_command,
    encode_reply,
    reply_overhead,
)

T = 1_795_853_524


def reply(status: Status = Status.OK, reason: Reason = Reason.NONE, result: dict[str, Any] | None = None,
          command_id: int | None = 300) -> Reply:
    return Reply(gw="res-qingshui-01", id=command_id, kid="county-ops-1", cmd="ping", status=status, reason=reason,
                 detail="", result=result, ts=T + 0.7, via="bd")


def test_ping_reply_with_its_result_fits_one_beidou_message() -> None:
    pong = {"pong": True, "gw": "res-qingshui-01", "time": T + 0.7}
    room = BEIDOU_LEVEL3_BYTES - reply_overhead(gateway=1001, command_id=300, issuer=1)
    raw = encode_reply(reply(result=pong).compact_body(room), gateway=1001, time=T, command_id=300, issuer=1,
                       max_bytes=BEIDOU_LEVEL3_BYTES)
    assert len(raw) <= BEIDOU_LEVEL3_BYTES
    # header: version 1 / kind 6, gateway 1001 (2-byte varint), time, id 300 (2 bytes); issuer 1 -> 2
    assert raw[:10] == bytes([0x16, 0xE9, 0x07]) + T.to_bytes(4, "big") + bytes([0xAC, 0x02, 0x02])
    msg = decode(raw)
    assert msg.kind is MessageKind.REPLY and msg.gateway == 1001 and msg.base_time == T
    assert msg.seqs == (), "a command id must never enter the platform's (gateway, seq) dedup"
    assert msg.reply is not None and (msg.reply.command_id, msg.reply.issuer) == (300, 1)
    got = parse_satellite_reply(raw)
    assert (got.gateway, got.time, got.command_id, got.issuer) == (1001, T, 300, 1)
    assert (got.status, got.reason, got.result) == (Status.OK, Reason.NONE, pong)


def test_rejection_is_twelve_bytes_and_names_its_reason() -> None:
    raw = encode_reply(reply(Status.REJECTED, Reason.REPLAYED).compact_body(), gateway=42, time=T,
                       command_id=9000, issuer=0)
    assert len(raw) == 1 + 1 + 4 + 2 + 1 + 2
    got = parse_satellite_reply(raw)
    assert (got.status, got.reason, got.result, got.issuer) == (Status.REJECTED, Reason.REPLAYED, None, 0)


def test_result_that_does_not_fit_is_left_out_not_cut() -> None:
    big = {"text": "x" * 200}
    room = 77 - reply_overhead(gateway=42, command_id=1, issuer=None)
    raw = encode_reply(reply(result=big).compact_body(room), gateway=42, time=T, command_id=1, issuer=None,
                       max_bytes=77)
    got = parse_satellite_reply(raw)
    assert (got.status, got.result, got.issuer) == (Status.OK, None, None)


def test_encode_refuses_what_it_cannot_carry() -> None:
    with pytest.raises(CompactEncodeError):
        encode_reply(b"\x00", gateway=1, time=T, command_id=1, issuer=None)  # no reason byte
    with pytest.raises(CompactEncodeError):
        encode_reply(b"\x00\x00", gateway=1, time=T, command_id=1, issuer=2**32)
    with pytest.raises(CompactEncodeError):
        encode_reply(b"\x00\x00" + b"{}" * 40, gateway=1, time=T, command_id=1, issuer=None, max_bytes=77)
    with pytest.raises(CompactEncodeError):
        encode_reply(b"\x00\x00", gateway=1, time=2**32, command_id=1, issuer=None)


def test_decode_refuses_truncated_replies() -> None:
    raw = encode_reply(b"\x01\x09", gateway=42, time=T, command_id=5, issuer=3)
    for cut in range(len(raw)):
        with pytest.raises(CompactDecodeError):
            decode(raw[:cut])
    with pytest.raises(ValueError):
        parse_satellite_reply(raw[:-1])


def test_platform_reader_refuses_other_kinds_and_bad_bodies() -> None:
    command = encode_command(b"\x00\x01" + bytes(66), gateway=42, time=T, command_id=5)
    with pytest.raises(ValueError, match="not a REPLY"):
        parse_satellite_reply(command)
    for body in (b"\x03\x00", b"\x00" + bytes([len(REASON_CODES)]), b"\x00\x00[1]", b"\x00\x00{\"a\":NaN}",
                 b"\x00\x00{\"a\":1,\"a\":2}", b"\x00\x00\xff", b"\x00\x00" + b"[" * 100_000):
        with pytest.raises(ValueError):
            decode_compact_reply(body)


def test_command_issuer_is_read_from_the_command_body() -> None:
    # docs/commands.md test vector: ping, id 300, gateway 1001, issuer 1
    vector = bytes.fromhex(
        "15e9076b0a8cd3ac020001d804593ee5dc811c70207782e6b3b76dc516d989f9286a61ef6da64be6a04cff44dfc1458ca666"
        "c9075c7d72c70fb674b20f13d49d4ae33a48aca5a9fc139b73f30f")
    msg = decode(vector)
    assert msg.kind is MessageKind.COMMAND and msg.seqs == (300,)
    assert command_issuer(msg) == 1
    assert command_issuer(decode(encode_command(b"\x00", gateway=1, time=T, command_id=1))) is None
    assert command_issuer(decode(encode_command(b"\x00\xff\xff\xff\xff\x7f", gateway=1, time=T,
                                                command_id=1))) is None  # over u32
    assert command_issuer(decode(encode_reply(b"\x00\x00", gateway=1, time=T, command_id=1, issuer=4))) is None


# ---------------------------------------------------------------------------- properties

bodies = st.builds(
    lambda s, r, extra: bytes([s, r]) + extra,
    st.integers(0, 2), st.integers(0, len(REASON_CODES) - 1), st.binary(max_size=60))


@settings(max_examples=300)
@given(bodies, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**53 - 1),
       st.none() | st.integers(0, 2**32 - 1))
def test_reply_round_trip(body: bytes, gateway: int, t: int, command_id: int, issuer: int | None) -> None:
    msg = decode(encode_reply(body, gateway=gateway, time=t, command_id=command_id, issuer=issuer))
    assert (msg.kind, msg.gateway, msg.base_time, msg.seqs) == (MessageKind.REPLY, gateway, t, ())
    assert msg.reply is not None
    assert (msg.reply.command_id, msg.reply.issuer, msg.reply.body) == (command_id, issuer, body)


results = st.none() | st.dictionaries(
    st.text(max_size=8), st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    max_size=5)


@settings(max_examples=300)
@given(st.sampled_from(list(Status)), st.sampled_from(list(Reason)), results, st.integers(0, 120),
       st.integers(0, 2**14 - 1))
def test_reply_objects_round_trip_within_the_budget(status: Status, reason: Reason,
                                                    result: dict[str, Any] | None, max_bytes: int,
                                                    command_id: int) -> None:
    room = max_bytes - reply_overhead(gateway=42, command_id=command_id, issuer=7)
    raw = encode_reply(reply(status, reason, result, command_id).compact_body(room), gateway=42, time=T,
                       command_id=command_id, issuer=7)
    got = parse_satellite_reply(raw)
    assert (got.status, got.reason, got.command_id, got.issuer) == (status, reason, command_id, 7)
    assert got.result in (result or None, None)  # whole, or left out when it does not fit
    if got.result is not None:
        assert len(raw) <= max_bytes


@settings(max_examples=400)
@given(bodies, st.none() | st.integers(0, 2**32 - 1), st.data())
def test_mutated_replies_raise_only_the_documented_errors(body: bytes, issuer: int | None,
                                                          data: st.DataObject) -> None:
    raw = bytearray(encode_reply(body, gateway=42, time=T, command_id=300, issuer=issuer))
    i = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    raw[i] = data.draw(st.integers(min_value=0, max_value=255))
    cut = data.draw(st.integers(min_value=0, max_value=len(raw)))
    with contextlib.suppress(CompactDecodeError):
        decode(bytes(raw[:cut]))
    with contextlib.suppress(ValueError):
        parse_satellite_reply(bytes(raw[:cut]))


@settings(max_examples=300)
@given(st.binary(max_size=100))
def test_garbage_reply_bodies_raise_only_value_error(body: bytes) -> None:
    with contextlib.suppress(ValueError):
        decode_compact_reply(body)
    with contextlib.suppress(ValueError):
        parse_satellite_reply(bytes([0x16, 0x2A]) + T.to_bytes(4, "big") + b"\x01" + body)
