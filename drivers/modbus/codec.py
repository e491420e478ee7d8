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

_STRUCT = {
    "uint16": ">H", "int16": ">h", "uint32": ">I", "int32": ">i",
    "float32": ">f", "uint64": ">Q", "int64": ">q", "float64": ">d",
}


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
    raw = registers_to_bytes(registers, byte_order)
    value: int | float = struct.unpack(_STRUCT[data_type], raw)[0]
    return value


def encode_raw(value: int | float, data_type: str, byte_order: str) -> list[int]:
    if data_type.startswith("float"):
        raw = struct.pack(_STRUCT[data_type], float(value))
    else:
        raw = struct.pack(_STRUCT[data_type], int(value))
    return bytes_to_registers(raw, byte_order)


def decode_point(point: PointConfig, registers: list[int]) -> int | float | bool:
    """Scaled engineering value of ``point``; raises ValueError for NaN/inf floats."""
    if point.bit is not None:
        return bool((registers[0] >> point.bit) & 1)
    if point.type == "bool":
        return bool(registers[0])
    raw = decode_raw(registers, point.type, point.byte_order)
    if isinstance(raw, float) and not math.isfinite(raw):
        raise ValueError(f"device sent a non-finite float ({raw})")
    if point.scale == 1.0 and point.offset == 0.0:
        return raw
    return raw * point.scale + point.offset


def encode_point(point: PointConfig, value: float) -> list[int]:
    """Registers a device would hold for engineering ``value`` (simulators and writes)."""
    raw = (value - point.offset) / point.scale
    if not point.type.startswith("float"):
        raw = round(raw)
    return encode_raw(raw, point.type, point.byte_order)


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
    """Coalesce points into as few reads as the limits allow (sorted by table and address)."""
    blocks: list[Block] = []
    for table in ("coil", "discrete", "holding", "input"):
        members = sorted((p for p in points if p.table == table), key=lambda p: p.address)
        limit = max_block if table in ("holding", "input") else max_block * 16
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
