"""Turn Modbus registers into numbers, and plan block reads.

Byte/word order naming follows the field convention: the value's bytes, most
significant first, are A B C D (E F G H for 64-bit). ABCD is big-endian (the
Modbus default); CDAB swaps 16-bit words; BADC swaps the bytes inside each
word; DCBA is fully little-endian. For 64-bit values the same rule applies
word-wise (CDAB reverses the four words).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

from drivers.modbus.config import PointConfig
from gateway.shared import float32_decimal

_STRUCT = {
    "uint16": ">H", "int16": ">h", "uint32": ">I", "int32": ">i",
    "float32": ">f", "uint64": ">Q", "int64": ">q", "float64": ">d",
}


_ONE_WORD_AS_IS = frozenset({"ABCD", "CDAB"})  # word order only: a single register reads as sent


def registers_to_bytes(registers: list[int], byte_order: str) -> bytes:
    """Reorder raw registers (as the device sent them) into big-endian value bytes."""
    words = list(registers)
    if byte_order in ("CDAB", "DCBA"):
        words.reverse()
    raw = b"".join(w.to_bytes(2, "big") for w in words)
    if byte_order in ("BADC", "DCBA"):
        raw = b"".join(raw[i + 1 : i + 2] + raw[i : i + 1] for i in range(0, len(raw), 2))
    return raw


def bytes_to_registers(raw: bytes, byte_order: str) -> list[int]:
    """Inverse of registers_to_bytes: what a device using ``byte_order`` would hold (simulators, tests)."""
    if byte_order in ("BADC", "DCBA"):
        raw = b"".join(raw[i + 1 : i + 2] + raw[i : i + 1] for i in range(0, len(raw), 2))
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    if byte_order in ("CDAB", "DCBA"):
        words.reverse()
    return words


def decode_raw(registers: list[int], data_type: str, byte_order: str) -> int | float:
    """The unscaled number held in ``registers``."""
    if len(registers) == 1 and byte_order in _ONE_WORD_AS_IS:
        # The common case (a 16-bit register, bytes in order): no bytes object, no struct call.
        word = registers[0]
        if data_type == "uint16":
            return word
        if data_type == "int16":
            return word - 0x10000 if word & 0x8000 else word
    raw = registers_to_bytes(registers, byte_order)
    value: int | float = struct.unpack(_STRUCT[data_type], raw)[0]
    return value


def encode_raw(value: int | float, data_type: str, byte_order: str) -> list[int]:
    if data_type.startswith("float"):
        raw = struct.pack(_STRUCT[data_type], float(value))
    else:
        raw = struct.pack(_STRUCT[data_type], int(value))
    return bytes_to_registers(raw, byte_order)


class OutOfRange(ValueError):
    """Decoded fine, but not a value the point may take (valid range, enum)."""


def decode_point(point: PointConfig, registers: list[int]) -> int | float | bool | str:
    """Engineering value of ``point``.

    Raises ValueError for what the device must not send (NaN/inf floats, short data) and
    OutOfRange for a value outside the point's valid range or enumeration.
    """
    if len(registers) < point.register_count:
        raise ValueError(f"{len(registers)} registers for a {point.register_count}-register point")
    if point.type == "string":
        return decode_string(registers, point.byte_order)
    if point.type == "bool":
        if point.bit is not None:
            return bool((registers[0] >> point.bit) & 1)
        return bool(registers[0])
    raw = decode_raw(registers, point.type, point.byte_order)
    if point.bit is not None:
        raw = (int(raw) >> point.bit) & ((1 << point.bit_width) - 1)
    if point.enum is not None:
        label = point.enum.get(int(raw))
        if label is None:
            raise OutOfRange(f"raw value {raw} is not in the enumeration")
        return label
    if isinstance(raw, float) and not math.isfinite(raw):
        raise ValueError(f"device sent a non-finite float ({raw})")
    value: int | float = raw if point.scale == 1.0 and point.offset == 0.0 else raw * point.scale + point.offset
    if isinstance(raw, int) and isinstance(value, float):
        # An integer register scaled by 0.1 has one decimal, not 40.900000000000006.
        value = round(value, _decimals(point.scale, point.offset))
    elif point.type == "float32" and isinstance(value, float):
        # A float32 register measured ~7 significant digits: 131.27, not 131.27000427246094 (the float32
        # widened to a double). Scaled or not, the value is the shortest decimal float32 reads back the same.
        value = float32_decimal(value)
    if (point.valid_min is not None and value < point.valid_min) or (
        point.valid_max is not None and value > point.valid_max
    ):
        raise OutOfRange(f"{value} outside {point.valid_min}..{point.valid_max}")
    return value


def plain_word(point: PointConfig) -> str | None:
    """"uint16" / "int16" when ``decode_point`` of this point is the register itself (signed for int16): one
    register read as sent, no bit, enumeration, scaling or valid range. The bus decodes those inline."""
    plain = (point.table in ("holding", "input") and point.type in ("uint16", "int16")
             and point.byte_order in _ONE_WORD_AS_IS and point.bit is None and point.enum is None
             and point.scale == 1.0 and point.offset == 0.0 and point.valid_min is None and point.valid_max is None)
    return point.type if plain else None


def _decimals(*factors: float) -> int:
    """Decimal places that scale and offset can produce (0.1 → 1, 0.005 → 3), at most 9."""
    places = 0
    for factor in factors:
        text = f"{abs(factor):.9f}".rstrip("0")
        places = max(places, len(text.split(".")[1]) if "." in text else 0)
    return min(places, 9)


def decode_string(registers: list[int], byte_order: str) -> str:
    """ASCII text, two characters per register; BADC/DCBA swap the pair. NULs and spaces end it."""
    raw = b"".join(w.to_bytes(2, "big") for w in registers)
    if byte_order in ("BADC", "DCBA"):
        raw = b"".join(raw[i + 1 : i + 2] + raw[i : i + 1] for i in range(0, len(raw), 2))
    text = raw.split(b"\0", 1)[0].decode("ascii", errors="replace").rstrip()
    if any(not (ch.isprintable()) for ch in text):
        raise ValueError("string point holds non-printable bytes")
    return text


def encode_string(text: str, length: int, byte_order: str) -> list[int]:
    raw = text.encode("ascii")[: 2 * length].ljust(2 * length, b"\0")
    if byte_order in ("BADC", "DCBA"):
        raw = b"".join(raw[i + 1 : i + 2] + raw[i : i + 1] for i in range(0, len(raw), 2))
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]


def encode_point(point: PointConfig, value: float | str) -> list[int]:
    """Registers a device would hold for engineering ``value`` (simulators and writes).

    Raises ValueError when the value does not fit the point's type.
    """
    if point.type == "string":
        return encode_string(str(value), point.register_count, point.byte_order)
    if point.type == "bool":
        return [1 if value else 0]
    if isinstance(value, str):
        raise ValueError(f"point {point.id} takes a number, not '{value}'")
    raw = (float(value) - point.offset) / point.scale
    if not point.type.startswith("float"):
        raw = round(raw)
    try:
        return encode_raw(raw, point.type, point.byte_order)
    except (struct.error, OverflowError) as exc:
        raise ValueError(f"{value} does not fit {point.type}") from exc


@dataclass(frozen=True, slots=True)
class Block:
    """One read request: ``count`` units from ``start`` in ``table``, serving ``points``."""

    table: str
    start: int
    count: int
    points: tuple[PointConfig, ...]

    def slice_for(self, point: PointConfig, words: list[int]) -> list[int]:
        offset = point.address - self.start
        return words[offset : offset + point.register_count]


def plan_blocks(points: list[PointConfig], max_block: int, max_gap: int) -> list[Block]:
    """Coalesce points into as few reads as the limits allow (sorted by table and address).

    Priority points (inputs of alarm rules) are planned first, in blocks of their own, so a
    poll reads them before anything else on the device.
    """
    urgent = [p for p in points if p.priority]
    if urgent and len(urgent) < len(points):
        ordinary = [p for p in points if not p.priority]
        return _plan(urgent, max_block, max_gap) + _plan(ordinary, max_block, max_gap)
    return _plan(points, max_block, max_gap)


def _plan(points: list[PointConfig], max_block: int, max_gap: int) -> list[Block]:
    blocks: list[Block] = []
    for table in ("coil", "discrete", "holding", "input"):
        members = sorted((p for p in points if p.table == table), key=lambda p: p.address)
        # FC01/02 read up to 2000 bits; FC03/04 up to 125 registers (Modbus spec 6.1-6.4).
        limit = max_block if table in ("holding", "input") else min(max_block * 16, 2000)
        current: list[PointConfig] = []
        start = end = 0
        for point in members:
            p_end = point.address + point.register_count
            if current and point.address - end <= max_gap and max(end, p_end) - start <= limit:
                current.append(point)
                end = max(end, p_end)
                continue
            if current:
                blocks.append(Block(table, start, end - start, tuple(current)))
            current, start, end = [point], point.address, p_end
        if current:
            blocks.append(Block(table, start, end - start, tuple(current)))
    return blocks


def device_blocks(points: list[PointConfig], max_block: int, max_gap: int, coalesce: bool) -> list[Block]:
    """The reads one poll of a device makes; ``coalesce=False`` (device quirk) reads point by point."""
    if coalesce:
        return plan_blocks(points, max_block, max_gap)
    ordered = sorted(points, key=lambda p: (not p.priority, p.table, p.address))
    return [Block(p.table, p.address, p.register_count, (p,)) for p in ordered]
