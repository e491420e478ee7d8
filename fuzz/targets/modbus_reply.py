"""Modbus replies as the master reads them: one frame off the wire (RTU, ASCII or TCP/MBAP),
checked against the request, then every point of the block decoded.

Documented errors: ``FrameError`` / ``ExceptionReply`` (drivers/modbus/frames.py) and
``ValueError`` (incl. ``OutOfRange``) from ``decode_point``. Scenarios (request + points) come
from the decoding cases in tests/cases/; seeds are their correct replies in each framing.

Input: framing byte (bit 7: repair the CRC, LRC or MBAP length so mutants get past them),
scenario byte, then the bytes on the wire.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import yaml

from drivers.modbus.codec import Block, decode_point, device_blocks
from drivers.modbus.config import ModbusRtuBus, ModbusTcpBus, PointConfig
from drivers.modbus.frames import (
    ExceptionReply,
    FrameError,
    crc16,
    decode,
    encode,
    parse_response,
    read_request,
    response_pdu_length,
    write_request,
)
from fuzz.seeds import case_folders
from gateway.config import load_site
from sim.rs485 import answer
from tests.unit.test_cases import build_units

NAME = "modbus_reply"
COVERS = ("drivers/modbus/frames.py", "drivers/modbus/codec.py")
FRAMINGS = ("rtu", "ascii", "socket")


@dataclass(frozen=True)
class Scenario:
    unit: int
    request: bytes
    points: tuple[PointConfig, ...]
    block: Block | None
    reply: bytes  # the PDU the simulated unit answers


def _scenarios() -> list[Scenario]:
    out: list[Scenario] = []
    for folder in case_folders():
        units = build_units(yaml.safe_load((folder / "registers.yaml").read_text()))
        for bus in load_site(folder / "site.yaml").buses:
            if not isinstance(bus, ModbusRtuBus | ModbusTcpBus):
                continue
            for device in bus.devices:
                sim = units.get(device.unit_id)
                for block in device_blocks(device.points, device.max_block, device.max_gap, device.coalesce):
                    request = read_request(block.table, block.start, block.count)
                    reply = answer(sim, request) if sim else bytes([request[0] | 0x80, 11])
                    out.append(Scenario(device.unit_id, request, block.points, block, reply))
    writes = [write_request("coil", 0xAC, [1], multiple=False), write_request("holding", 1, [3], multiple=False),
              write_request("coil", 0x13, [1, 0, 1] * 4, multiple=True),
              write_request("holding", 1, [0x000A, 0x0102], multiple=True)]
    out += [Scenario(0x11, w, (), None, w[:5]) for w in writes]
    return out[:256]


SCENARIOS = _scenarios()


def repaired(kind: str, wire: bytes) -> bytes:
    """``wire`` with the check of its first frame made right (what a mutant rarely gets by chance)."""
    if kind == "rtu":
        try:
            n = response_pdu_length(wire[1:3])
        except FrameError:
            return wire
        if n is None or len(wire) < 3 + n:
            return wire
        return wire[: 1 + n] + crc16(wire[: 1 + n]).to_bytes(2, "little") + wire[3 + n :]
    if kind == "ascii":
        end = wire.find(b"\r\n")
        if wire[:1] != b":" or end < 3:
            return wire
        try:
            raw = bytes.fromhex(wire[1:end].decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            return wire
        return encode("ascii", raw[0], raw[1:-1]) + wire[end + 2 :] if len(raw) >= 2 else wire
    if len(wire) >= 7:
        return wire[:4] + (min(len(wire), 260) - 6).to_bytes(2, "big") + wire[6:]
    return wire


def seeds() -> list[bytes]:
    return [bytes([k | repair, i]) + encode(kind, s.unit, s.reply, tid=i)
            for i, s in enumerate(SCENARIOS) for k, kind in enumerate(FRAMINGS) for repair in (0, 0x80)]


def fuzz_one(data: bytes) -> None:
    if len(data) < 2:
        return
    kind, scenario, wire = FRAMINGS[data[0] % 3], SCENARIOS[data[1] % len(SCENARIOS)], data[2:]
    if data[0] & 0x80:
        wire = repaired(kind, wire)
    try:
        frame = decode(kind, wire)
        if frame is None:
            return
        assert 0 < frame.consumed <= len(wire)
        words = parse_response(scenario.request, frame.pdu)
    except (FrameError, ExceptionReply):
        return
    if scenario.block is None:
        assert words == []
        return
    assert len(words) == scenario.block.count  # never more or fewer values than asked
    for point in scenario.points:
        with contextlib.suppress(ValueError):  # OutOfRange included: what a device must not send
            decode_point(point, scenario.block.slice_for(point, words))
