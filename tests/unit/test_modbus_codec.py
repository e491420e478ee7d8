"""Byte/word orders, scaling and block planning of the Modbus driver."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus.codec import decode_point, decode_raw, encode_point, encode_raw, plan_blocks
from drivers.modbus.config import PointConfig

# 0x41460000 is 12.375 as float32. How the four orders put it on the wire:
WIRE = {
    "ABCD": [0x4146, 0x0000],
    "CDAB": [0x0000, 0x4146],
    "BADC": [0x4641, 0x0000],
    "DCBA": [0x0000, 0x4641],
}


@pytest.mark.parametrize("order", sorted(WIRE))
def test_float32_orders(order: str) -> None:
    assert decode_raw(WIRE[order], "float32", order) == 12.375
    assert encode_raw(12.375, "float32", order) == WIRE[order]


def test_int32_cdab_and_int16_negative() -> None:
    # 0x00012345 = 74565, low word first on the wire
    assert decode_raw([0x2345, 0x0001], "int32", "CDAB") == 74565
    assert decode_raw([0xFFFF], "int16", "ABCD") == -1
    assert decode_raw([0xFFFF, 0xFFFE], "int32", "ABCD") == -2


def test_64_bit_orders() -> None:
    value = 0x0102030405060708
    assert decode_raw([0x0102, 0x0304, 0x0506, 0x0708], "uint64", "ABCD") == value
    assert decode_raw([0x0708, 0x0506, 0x0304, 0x0102], "uint64", "CDAB") == value
    assert decode_raw([0x0807, 0x0605, 0x0403, 0x0201], "uint64", "DCBA") == value
    assert decode_raw([0x0201, 0x0403, 0x0605, 0x0807], "uint64", "BADC") == value


@given(st.floats(allow_nan=False, allow_infinity=False, width=32),
       st.sampled_from(["ABCD", "CDAB", "BADC", "DCBA"]))
def test_float32_round_trip(value: float, order: str) -> None:
    assert decode_raw(encode_raw(value, "float32", order), "float32", order) == value


@pytest.mark.parametrize("order", sorted(WIRE))
def test_float32_point_is_its_shortest_decimal_not_the_widened_double(order: str) -> None:
    """Before: a float32 point holding 131.27 read as 131.27000427246094 (the float32 widened to a double),
    digits the gauge never measured, which the compact satellite codec then had to carry as 8 bytes."""
    level = PointConfig(id="dam.level", address=0, type="float32", byte_order=order)
    registers = encode_raw(131.27, "float32", order)
    assert decode_raw(registers, "float32", order) == 131.27000427246094  # the raw register value, exactly
    value = decode_point(level, registers)
    assert repr(value) == "131.27"
    scaled = PointConfig(id="t", address=0, type="float32", byte_order=order, scale=0.1, offset=-40)
    assert repr(decode_point(scaled, encode_raw(131.27, "float32", order))) == "-26.873"


@given(st.floats(allow_nan=False, allow_infinity=False, width=32))
def test_float32_point_reads_back_as_the_same_float32(raw: float) -> None:
    point = PointConfig(id="f", address=0, type="float32")
    registers = encode_raw(raw, "float32", "ABCD")
    value = decode_point(point, registers)
    assert isinstance(value, float)
    assert encode_raw(value, "float32", "ABCD") == registers  # nothing the register held is lost
    assert len(repr(value)) <= len(repr(raw))  # and nothing is added


def test_scale_offset_and_bits() -> None:
    point = PointConfig(id="t", address=0, type="int16", scale=0.1, offset=-40)
    assert decode_point(point, [650]) == pytest.approx(25.0)
    assert decode_point(point, encode_point(point, -12.3)) == pytest.approx(-12.3)
    bit = PointConfig(id="b", address=0, type="bool", bit=3)
    assert decode_point(bit, [0b1000]) is True
    assert decode_point(bit, [0b0111]) is False


def test_nan_is_rejected() -> None:
    point = PointConfig(id="f", address=0, type="float32")
    nan = list(struct.unpack(">HH", struct.pack(">f", math.nan)))
    with pytest.raises(ValueError, match="non-finite"):
        decode_point(point, nan)


def test_point_config_consistency() -> None:
    with pytest.raises(ValueError, match="coil"):
        PointConfig(id="c", table="coil", address=0, type="uint16")
    with pytest.raises(ValueError, match="past register 65535"):
        PointConfig(id="c", address=65535, type="float32")


def test_coalescing_joins_within_gap_and_splits_on_limits() -> None:
    points = [PointConfig(id=f"p{a}", address=a, type="uint16") for a in (0, 1, 2, 10, 11, 40, 41)]
    points.append(PointConfig(id="f", address=50, type="float32"))
    points.append(PointConfig(id="i", table="input", address=0, type="uint16"))
    blocks = plan_blocks(points, max_block=100, max_gap=10)
    assert [(b.table, b.start, b.count) for b in blocks] == [("holding", 0, 12), ("holding", 40, 12), ("input", 0, 1)]
    one_each = plan_blocks(points, max_block=1, max_gap=0)
    assert len([b for b in one_each if b.table == "holding"]) == 8  # the float needs 2 > max_block: its own block
    capped = plan_blocks(points, max_block=12, max_gap=50)
    assert all(b.count <= 12 or len(b.points) == 1 for b in capped)


PLAIN_CASES = [  # (the point's settings, decoded inline by the bus)
    ({"type": "uint16"}, True), ({"type": "int16"}, True), ({"type": "int16", "byte_order": "CDAB"}, True),
    ({"type": "uint16", "table": "input"}, True), ({"type": "int16", "byte_order": "BADC"}, False),
    ({"type": "uint16", "scale": 0.1}, False), ({"type": "uint16", "offset": 1.0}, False),
    ({"type": "uint16", "bit": 3}, False), ({"type": "uint16", "valid_max": 100}, False),
    ({"type": "uint16", "enum": {0: "off", 1: "on"}}, False), ({"type": "uint32"}, False),
    ({"type": "float32"}, False), ({"type": "bool", "table": "coil"}, False),
]


@pytest.mark.parametrize(("extra", "inline"), PLAIN_CASES)
@given(words=st.lists(st.integers(0, 0xFFFF), min_size=4, max_size=4))
def test_the_bus_inline_decode_of_plain_registers_is_decode_point(extra: dict[str, object], inline: bool,
                                                                  words: list[int]) -> None:
    """drivers/modbus/bus.py reads a plain 16-bit register without decode_point: the same readings."""
    from drivers.modbus.bus import ModbusBus
    from drivers.modbus.codec import plain_word

    point = PointConfig.model_validate({"id": "p", "address": 0, **extra})
    assert (plain_word(point) is not None) == inline
    layout = [(point, 1, point.register_count, plain_word(point))]
    got = ModbusBus._readings(layout, words, 1.0, "d")[0]
    want = ModbusBus._reading(point, words[1 : 1 + point.register_count], 1.0, "d")
    assert (got.value, got.quality, type(got.value)) == (want.value, want.quality, type(want.value))
