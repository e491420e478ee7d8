"""Modbus framing (RTU CRC, ASCII LRC, MBAP), PDU parsing of bad replies, request planning and explain."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.modbus.codec import device_blocks, plan_blocks
from drivers.modbus.config import ModbusRtuBus, PointConfig, inter_frame_gap
from drivers.modbus.frames import (
    ExceptionReply,
    FrameError,
    decode,
    encode,
    parse_response,
    read_request,
    write_request,
)
from drivers.modbus.tools import explain, probe_table


def test_published_frames() -> None:
    # Read 10 holding registers from unit 1: the CRC example quoted throughout Modbus RTU guides.
    assert encode("rtu", 1, read_request("holding", 0, 10)).hex() == "01030000000ac5cd"
    assert encode("rtu", 1, read_request("holding", 0, 1)).hex() == "010300000001840a"
    # Modbus over Serial Line v1.02, 2.5.2.1 (ASCII): unit 0x11 reads 3 registers from 0x006B.
    assert encode("ascii", 0x11, read_request("holding", 0x6B, 3)) == b":1103006B00037E\r\n"


def test_round_trip_and_tcp_header() -> None:
    pdu = bytes([3, 4, 0x41, 0x46, 0, 0])
    for kind in ("rtu", "ascii", "socket"):
        frame = decode(kind, encode(kind, 7, pdu, tid=0x1234))  # type: ignore[arg-type]
        assert frame is not None and frame.unit == 7 and frame.pdu == pdu
    assert decode("socket", encode("socket", 7, pdu, tid=0x1234)).tid == 0x1234  # type: ignore[union-attr]


def test_bad_frames_are_frame_errors() -> None:
    good = encode("rtu", 1, bytes([3, 2, 0, 5]))
    assert decode("rtu", good[:-1]) is None  # incomplete: wait for more
    with pytest.raises(FrameError, match="CRC"):
        decode("rtu", good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(FrameError, match="garbage"):
        decode("rtu", b"\x01\x42\x00\x00\x00")
    with pytest.raises(FrameError, match="LRC"):
        decode("ascii", b":1103006B00037F\r\n")
    with pytest.raises(FrameError, match="non-hex"):
        decode("ascii", b":11zz\r\n")
    with pytest.raises(FrameError, match="header"):
        decode("socket", b"\x00\x01\x00\x07\x00\x06\x01\x03")


def test_reply_checks() -> None:
    request = read_request("holding", 0, 2)
    assert parse_response(request, bytes([3, 4, 0, 1, 0, 2])) == [1, 2]
    with pytest.raises(FrameError, match="expected 4"):
        parse_response(request, bytes([3, 2, 0, 1]))  # short: fewer registers than asked
    with pytest.raises(FrameError, match="expected 4"):
        parse_response(request, bytes([3, 6, 0, 1, 0, 2, 0, 3]))  # long
    with pytest.raises(FrameError, match="function 4"):
        parse_response(request, bytes([4, 4, 0, 1, 0, 2]))
    with pytest.raises(ExceptionReply, match="illegal data address"):
        parse_response(request, bytes([0x83, 2]))
    coils = read_request("coil", 0, 10)
    assert parse_response(coils, bytes([1, 2, 0b0000_0101, 0b10])) == [1, 0, 1, 0, 0, 0, 0, 0, 0, 1]
    write = write_request("coil", 3, [1], multiple=False)
    assert write.hex() == "050003ff00" and parse_response(write, write) == []
    with pytest.raises(FrameError, match="echo"):
        parse_response(write, bytes.fromhex("0500030000"))
    assert write_request("holding", 1, [7], multiple=True)[0] == 16
    assert write_request("coil", 0, [1, 0, 1], multiple=False)[0] == 15


@given(st.binary(max_size=300), st.sampled_from(["rtu", "ascii", "socket"]))
def test_decoder_never_crashes_on_garbage(data: bytes, kind: str) -> None:
    with contextlib.suppress(FrameError):
        decode(kind, data)  # type: ignore[arg-type]


def test_gap_follows_the_spec() -> None:
    assert inter_frame_gap(9600) == pytest.approx(3.5 * 10 / 9600)  # 3.65 ms
    assert inter_frame_gap(9600, parity="E") == pytest.approx(3.5 * 11 / 9600)
    assert inter_frame_gap(115200) == 0.00175  # fixed above 19200 baud


def test_forty_registers_with_gaps_in_at_most_three_requests() -> None:
    addresses = [*range(0, 10), *range(14, 24), *range(33, 43), *range(52, 62)]  # gaps of 4, 9 and 9
    points = [PointConfig(id=f"r{a}", address=a) for a in addresses]
    assert len(points) == 40
    blocks = plan_blocks(points, max_block=125, max_gap=10)
    assert len(blocks) <= 3 and sum(len(b.points) for b in blocks) == 40
    assert len(plan_blocks(points, max_block=20, max_gap=10)) == 4  # the quirk cap splits it
    assert len(device_blocks(points, 125, 10, coalesce=False)) == 40


def test_priority_points_are_read_first() -> None:
    points = [PointConfig(id="a", address=0), PointConfig(id="gas", address=50, priority=True),
              PointConfig(id="b", address=1)]
    assert [b.points[0].id for b in plan_blocks(points, 125, 10)] == ["gas", "a"]


def test_explain_shows_requests_and_line_use() -> None:
    bus = ModbusRtuBus.model_validate({"type": "modbus_rtu", "name": "dam", "port": "/dev/null", "devices": [
        {"name": "radar", "unit_id": 1, "poll_interval": 1, "points": [
            {"id": "lvl", "address": 0, "type": "float32"}, {"id": "q", "address": 4}]}]})
    lines = explain(bus)
    assert "device radar unit 1: 1 requests per poll" in lines[1]
    assert lines[2].strip() == "read holding 0..4 (5) → lvl, q"
    assert "line use at 9600 baud" in lines[-1]


def test_probe_table_lists_every_order() -> None:
    text = "\n".join(probe_table([0x0000, 0x4146], 10, "holding", [1.0, 0.1]))
    assert "CDAB 12.375" in text
