"""Property tests: decode never raises anything but CompactDecodeError; encode/decode round-trips."""

from __future__ import annotations

import contextlib
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.compact import (
    AliasTable,
    CompactAlarm,
    CompactDecodeError,
    decode,
    encode_alarm,
    encode_readings,
    pack_readings,
)
from gateway.shared import Quality, Reading, Value

ALIASES = AliasTable({i: f"p{i}" for i in (0, 1, 2, 127, 128, 300, 2**32 - 1)})

values: st.SearchStrategy[Value] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(min_value=-10**6, max_value=10**6, places=2, allow_nan=False).map(float),
    st.text(max_size=20),
)


@st.composite
def readings(draw: st.DrawFn) -> list[Reading]:
    n = draw(st.integers(min_value=1, max_value=25))
    seq0 = draw(st.integers(min_value=0, max_value=2**62))
    t0 = draw(st.integers(min_value=0, max_value=2**32 - 10**6 - 1))  # + offsets stays < 2**32
    out = []
    for i in range(n):
        out.append(
            Reading(
                point=draw(st.sampled_from(sorted(ALIASES.by_point))),
                value=draw(values),
                quality=draw(st.sampled_from(list(Quality))),
                source_time=t0 + draw(st.integers(min_value=0, max_value=10**6)) + draw(st.floats(0, 0.999)),
                seq=seq0 + draw(st.sampled_from([i, i, i * 3, 2**20 - i])),
                historical=draw(st.booleans()),
            )
        )
    return out


def same(a: Value, b: Value) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack(">d", a) == struct.pack(">d", b)
    return type(a) is type(b) and a == b


@settings(max_examples=400)
@given(st.binary(max_size=120))
def test_decode_garbage_raises_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(CompactDecodeError):
        decode(data, ALIASES)


@settings(max_examples=300)
@given(readings(), st.data())
def test_mutated_messages_raise_only_decode_error(rs: list[Reading], data: st.DataObject) -> None:
    raw = bytearray(encode_readings(rs, gateway=5, aliases=ALIASES))
    i = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    raw[i] = data.draw(st.integers(min_value=0, max_value=255))
    cut = data.draw(st.integers(min_value=0, max_value=len(raw)))
    with contextlib.suppress(CompactDecodeError):
        decode(bytes(raw[:cut]), ALIASES)


@settings(max_examples=300)
@given(readings(), st.integers(min_value=0, max_value=2**32 - 1))
def test_readings_round_trip(rs: list[Reading], gateway: int) -> None:
    msg = decode(encode_readings(rs, gateway=gateway, aliases=ALIASES), ALIASES)
    assert msg.gateway == gateway
    assert msg.seqs == tuple(r.seq for r in rs)
    for got, want in zip(msg.readings, rs, strict=True):
        assert got.point == want.point
        assert same(got.value, want.value), (got.value, want.value)
        assert got.quality is want.quality
        assert got.source_time == float(int(want.source_time))
        assert got.historical == want.historical


@settings(max_examples=200)
@given(readings(), st.integers(min_value=0, max_value=400))
def test_pack_respects_budget_and_prefix(rs: list[Reading], budget: int) -> None:
    packed = pack_readings(rs, gateway=1, aliases=ALIASES, max_bytes=budget)
    assert len(packed.payload) <= budget
    assert packed.seqs == tuple(r.seq for r in rs[: len(packed.seqs)])
    if packed.payload:
        assert decode(packed.payload, ALIASES).seqs == packed.seqs


@settings(max_examples=200)
@given(
    st.integers(min_value=0, max_value=2**62),
    st.integers(min_value=0, max_value=2**32 - 1),
    st.sampled_from(sorted(ALIASES.by_point)),
    st.integers(min_value=0, max_value=2**32 - 1),
    st.integers(min_value=0, max_value=255),
    values.filter(lambda v: not isinstance(v, str)),
    st.text(max_size=100),
)
def test_alarm_round_trip_within_77_bytes(
    seq: int, t: int, point: str, rule: int, level: int, value: Value, text: str
) -> None:
    alarm = CompactAlarm(seq, t, point, rule, level, value, Quality.GOOD, text)
    raw = encode_alarm(alarm, gateway=2**32 - 1, aliases=ALIASES)
    assert len(raw) <= 77
    got = decode(raw, ALIASES).alarm
    assert got is not None
    assert (got.seq, got.time, got.point, got.rule, got.level) == (seq, t, point, rule, level)
    assert same(got.value, value)
    assert text.startswith(got.text)
