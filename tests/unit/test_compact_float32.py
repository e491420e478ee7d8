"""float32 register values in the compact codec: carried in 4 bytes (or as a short decimal), never widened."""

from __future__ import annotations

import math
import struct

from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus.codec import decode_point, encode_raw
from drivers.modbus.config import PointConfig
from gateway import compact
from gateway.shared import Quality, Reading, float32_decimal

ALIASES = compact.AliasTable({1: "dam.level", 2: "water.turbidity"})
T = 1_800_000_000


def one(value: float, quality: Quality = Quality.GOOD, version: int = compact.READINGS_VERSION) -> bytes:
    return compact.encode_readings([Reading("dam.level", value, quality, T, seq=1)], gateway=7, aliases=ALIASES,
                                   version=version)


def widened(v: float) -> float:
    return float(struct.unpack(">f", struct.pack(">f", v))[0])


def test_a_float32_gauge_value_is_two_bytes_of_decimal_after_the_modbus_decoder() -> None:
    """Before: 131.27 from a float32 register reached the codec as 131.27000427246094 and left as F64
    (8 bytes of value); now the decoder gives 131.27 and the codec writes DEC2 (zig-zag mantissa 26254: 3 bytes)."""
    level = PointConfig(id="dam.level", address=0, type="float32", byte_order="CDAB")
    value = decode_point(level, encode_raw(131.27, "float32", "CDAB"))
    assert isinstance(value, float)
    clean, decimal = one(value), one(0.5)  # 0.5: DEC1 mantissa 5, one byte
    assert len(clean) == len(decimal) + 2
    assert len(one(widened(131.27))) == len(clean) + 5  # what it cost before: F64
    assert compact.decode(clean, ALIASES).readings[0].value == 131.27


def test_float32_values_without_a_short_decimal_travel_in_four_bytes_never_eight() -> None:
    """Before: 0.12345678 (a float32's shortest decimal, 8 decimals) went as F64, 8 bytes."""
    v = float32_decimal(0.12345678)
    short, wide = one(v), one(widened(v))
    assert len(wide) - len(short) == 4  # F32 beside F64
    assert compact.decode(short, ALIASES).readings[0].value == v
    assert repr(compact.decode(short, ALIASES).readings[0].value) == repr(v)
    assert compact.decode(wide, ALIASES).readings[0].value == widened(v)  # a true double stays exact (F64)


def test_f32_with_every_quality_and_in_an_alarm() -> None:
    v = float32_decimal(3.2174563)
    for quality in Quality:
        got = compact.decode(one(v, quality), ALIASES).readings[0]
        assert (got.value, got.quality) == (v, quality)
    alarm = compact.CompactAlarm(seq=9, time=T, point="water.turbidity", rule=1, level=2, value=v)
    data = compact.encode_alarm(alarm, gateway=7, aliases=ALIASES)
    decoded = compact.decode(data, ALIASES).alarm
    assert decoded is not None and decoded.value == v


def test_infinities_go_as_f32_and_nan_keeps_its_bits() -> None:
    assert compact.decode(one(math.inf), ALIASES).readings[0].value == math.inf
    assert len(one(-math.inf)) == len(one(math.inf)) == len(one(widened(0.1))) - 4
    nan = struct.unpack(">d", bytes.fromhex("7ff8000000000123"))[0]
    got = compact.decode(one(nan), ALIASES).readings[0].value
    assert isinstance(got, float) and struct.pack(">d", got) == struct.pack(">d", nan)


def test_older_decoders_refuse_f32_rather_than_misread_it() -> None:
    """Codes 32/33 were reserved in version 1: a decoder without F32 raises, it does not misread."""
    data = one(float32_decimal(0.12345678), version=1)
    assert data[-5] & 0x3F == 32  # the head byte's value code, then 4 bytes of float32


@given(st.floats(allow_nan=False, width=32), st.sampled_from(list(Quality)))
def test_every_float32_decimal_round_trips_exactly(raw: float, quality: Quality) -> None:
    v = float32_decimal(raw)
    got = compact.decode(one(v, quality), ALIASES).readings[0].value
    assert isinstance(got, float) and struct.pack(">d", got) == struct.pack(">d", v)
    assert len(one(v)) <= len(one(widened(v)))
