"""READINGS version 2 (docs/satellite.md 1.2): a time step per message, 3-bit time codes in the head byte.

Version 1 messages (every gateway not yet updated sends them) still decode, byte for byte as before; a decoder
that knows only version 1 refuses version 2 by its version nibble, with a clear error, rather than misreading it.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import compact
from gateway.shared import Quality, Reading, Value
from tests.unit.test_compact_fuzz import same

ALIASES = compact.AliasTable({1: "dam.level", 2: "rain.total", 3: "gate.opening"})
T = 1_800_000_000
# Made by the version-1 encoder of main (a5502f8) and by this one with version=1: the same bytes.
V1_HEX = "12e9076b49d20088270601ccdeea0202c8d6a3040250280202505006031a14040151a5081d"
V2_HEX = "22e9076b49d20088270a060116deea020214d6a30402380202580603cd140401ff18a4081d"


def example() -> list[Reading]:
    return [Reading("dam.level", 23.215, Quality.GOOD, T, seq=5000),
            Reading("rain.total", 3505.1, Quality.GOOD, T, seq=5001),
            Reading("rain.total", 3505.2, Quality.GOOD, T + 10, seq=5002),
            Reading("rain.total", 3505.5, Quality.GOOD, T + 30, seq=5003),
            Reading("gate.opening", None, Quality.COMM_FAIL, T + 35, seq=5005),
            Reading("dam.level", 23.2, Quality.UNCERTAIN, T + 300, seq=5006, historical=True)]


def fields(rs: tuple[Reading, ...] | list[Reading]) -> list[tuple[object, ...]]:
    return [(r.point, repr(r.value), r.quality, float(int(r.source_time)), r.seq, r.historical) for r in rs]


@pytest.mark.parametrize("hexdata, version", [(V1_HEX, 1), (V2_HEX, 2)])
def test_both_versions_decode_to_the_same_readings(hexdata: str, version: int) -> None:
    data = bytes.fromhex(hexdata)
    assert data[0] >> 4 == version
    assert compact.decode(data, ALIASES).version == version
    assert fields(compact.decode(data, ALIASES).readings) == fields(example())


def test_the_encoder_writes_version_2_readings_and_version_1_for_every_other_kind() -> None:
    assert compact.encode_readings(example(), gateway=1001, aliases=ALIASES).hex() == V2_HEX
    assert compact.encode_readings(example(), gateway=1001, aliases=ALIASES, version=1).hex() == V1_HEX
    alarm = compact.CompactAlarm(seq=9, time=T, point="dam.level", rule=1, level=2, value=23.2)
    assert compact.encode_alarm(alarm, gateway=1001, aliases=ALIASES)[0] >> 4 == 1
    assert compact.encode_ack([(1, 3)], gateway=1001, time=T, key=bytes(32))[0] >> 4 == 1


def test_a_version_this_decoder_does_not_know_is_refused_by_name() -> None:
    """What a version-1-only decoder does with a version 2 message (``unsupported version 2``), this one does
    with version 3: refuses it, saying which versions it reads, instead of misreading the bytes."""
    data = bytearray.fromhex(V2_HEX)
    data[0] = 3 << 4 | data[0] & 0x0F
    with pytest.raises(compact.CompactDecodeError, match=r"unsupported version 3 .*versions 1, 2"):
        compact.decode(bytes(data), ALIASES)


def rain(n: int, gaps: list[int]) -> list[Reading]:
    out, t, tips = [], T, 35_050
    for i in range(n):
        t += gaps[i % len(gaps)]
        tips += 1 + i % 3
        out.append(Reading("rain.total", tips / 10, Quality.GOOD, t + 0.2, seq=48_213_577 + i))
    return out


def test_a_rain_gauge_reported_by_exception_fits_18_readings_where_version_1_fit_15() -> None:
    """The case issue 17 left open: every reading has its own second, 10 to 50 s apart. Version 1 spends a
    time byte on each (two from 32 s up); version 2 names 1..5 steps of the message's time step in the head."""
    rs = rain(40, [10, 10, 20, 10, 30, 10, 50])
    v1 = compact.pack_readings(rs, gateway=1001, aliases=ALIASES, max_bytes=77, version=1)
    v2 = compact.pack_readings(rs, gateway=1001, aliases=ALIASES, max_bytes=77)
    assert len(v1.seqs) == 15
    assert len(v2.seqs) >= 20
    assert fields(compact.decode(v2.payload, ALIASES).readings) == fields(rs[: len(v2.seqs)])


values: st.SearchStrategy[Value] = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(),
    st.decimals(min_value=-10**4, max_value=10**4, places=2, allow_nan=False).map(float), st.text(max_size=5))


@st.composite
def grid_readings(draw: st.DrawFn) -> list[Reading]:
    """Readings on a poll grid (the time codes' case) with now and then an off-grid, backward or historical one."""
    step = draw(st.sampled_from([1, 5, 10, 60, 300]))
    t = draw(st.integers(0, 2**32 - 10**7))
    seq = draw(st.integers(0, 2**62))
    out = []
    for _ in range(draw(st.integers(1, 30))):
        t += draw(st.sampled_from([0, step, 2 * step, 5 * step, 6 * step, -step, 7]))
        seq += draw(st.sampled_from([1, 1, 1, 2, -3]))
        out.append(Reading(draw(st.sampled_from(sorted(ALIASES.by_point))), draw(values),
                           draw(st.sampled_from(list(Quality))), max(0, t) + 0.5, seq=max(0, seq),
                           historical=draw(st.booleans()) and draw(st.booleans())))
    return out


@settings(max_examples=300)
@given(grid_readings(), st.sampled_from([1, 2]), st.integers(1, 700))
def test_grid_readings_round_trip_in_both_versions_and_any_step(rs: list[Reading], version: int, step: int) -> None:
    data = compact.encode_readings(rs, gateway=7, aliases=ALIASES, version=version, step=step)
    got = compact.decode(data, ALIASES).readings
    assert [x[:1] + x[2:] for x in fields(got)] == [x[:1] + x[2:] for x in fields(rs)]
    assert all(same(a.value, b.value) for a, b in zip(got, rs, strict=True))


@settings(max_examples=200)
@given(grid_readings(), st.integers(0, 120))
def test_pack_keeps_the_budget_and_the_prefix(rs: list[Reading], budget: int) -> None:
    packed = compact.pack_readings(rs, gateway=1001, aliases=ALIASES, max_bytes=budget)
    assert len(packed.payload) <= budget
    assert packed.seqs == tuple(r.seq for r in rs[: len(packed.seqs)])
    if packed.payload:
        assert compact.decode(packed.payload, ALIASES).seqs == packed.seqs
