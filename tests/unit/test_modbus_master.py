"""The hand-written Modbus master (drivers/modbus/master.py, frames.py) against published frames,
against garbage (hypothesis), and against the faults bench/modbus_stack.py found pymodbus 3.16
letting through: replies from the wrong unit, with the wrong function, of the wrong length, and
a unit answering after its timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.modbus.frames import (
    ExceptionReply,
    FrameError,
    crc16,
    decode,
    encode,
    parse_response,
    read_request,
    request_pdu_length,
    response_pdu_length,
    write_request,
)
from drivers.modbus.master import Master, NoAnswer
from drivers.ports.stream import Transport

# Published RTU frames with their CRC, unit 0x11. Sources: the Modicon Modbus Protocol Reference Guide
# PI-MBUS-300 rev. J (read holding registers 0x006B x3: "11 03 00 6B 00 03 76 87") and the worked
# function-code examples of simplymodbus.ca (FC01, 02, 03, 04, 05, 06, 15, 16; requests and responses).
# Each was also checked against pymodbus 3.16's independent FramerRTU.compute_CRC.
PUBLISHED_RTU = [
    "1101001300250e84",  # FC01 request: coils 0x13, 37 of them
    "110105cd6bb20e1b45e6",  # FC01 response
    "110200c40016baa9",  # FC02 request
    "1103006b00037687",  # FC03 request
    "110306ae415652434049ad",  # FC03 response
    "1104000800 01b298".replace(" ", ""),  # FC04 request
    "110500acff004e8b",  # FC05 request: coil 0xAC on
    "1106000100039a9b",  # FC06 request: register 1 := 3
    "110f0013000a02cd01bf0b",  # FC15 request
    "1110000100020400 0a0102c6f0".replace(" ", ""),  # FC16 request
]


def test_crc16_modbus_check_value() -> None:
    # The CRC catalogue's check value for CRC-16/MODBUS (poly 0x8005 reflected, init 0xFFFF): crc("123456789").
    assert crc16(b"123456789") == 0x4B37


@pytest.mark.parametrize("frame_hex", PUBLISHED_RTU)
def test_published_rtu_frames(frame_hex: str) -> None:
    frame = bytes.fromhex(frame_hex)
    body = frame[:-2]
    assert crc16(body).to_bytes(2, "little") == frame[-2:]
    assert encode("rtu", body[0], body[1:]) == frame
    is_request = frame_hex in (PUBLISHED_RTU[0], PUBLISHED_RTU[2], PUBLISHED_RTU[3], *PUBLISHED_RTU[5:])
    decoded = decode("rtu", frame, request=is_request)
    assert decoded is not None and decoded.unit == 0x11 and decoded.consumed == len(frame)


def test_published_requests_match_our_encoder() -> None:
    assert encode("rtu", 0x11, read_request("coil", 0x13, 0x25)).hex() == PUBLISHED_RTU[0]
    assert encode("rtu", 0x11, read_request("holding", 0x6B, 3)).hex() == PUBLISHED_RTU[3]
    assert encode("rtu", 0x11, write_request("coil", 0xAC, [1], multiple=False)).hex() == PUBLISHED_RTU[6]
    assert encode("rtu", 0x11, write_request("holding", 1, [3], multiple=False)).hex() == PUBLISHED_RTU[7]
    assert encode("rtu", 0x11, write_request("holding", 1, [0x000A, 0x0102], multiple=True)).hex() \
        == PUBLISHED_RTU[9]
    response = decode("rtu", bytes.fromhex(PUBLISHED_RTU[4]))
    assert response is not None
    assert parse_response(read_request("holding", 0x6B, 3), response.pdu) == [0xAE41, 0x5652, 0x4340]


# --- garbage never raises anything but FrameError ---------------------------------------


@given(st.binary(max_size=600), st.sampled_from(["rtu", "ascii", "socket"]), st.booleans())
def test_decode_raises_only_frame_error(data: bytes, kind: str, request: bool) -> None:
    try:
        frame = decode(kind, data, request=request)  # type: ignore[arg-type]
    except FrameError:
        return
    if frame is not None:
        assert 0 < frame.consumed <= len(data)


@given(st.binary(max_size=300))
def test_pdu_length_raises_only_frame_error(head: bytes) -> None:
    for measure in (response_pdu_length, request_pdu_length):
        try:
            n = measure(head)
        except FrameError:
            continue
        assert n is None or n >= 2


requests = st.one_of(
    st.builds(read_request, st.sampled_from(["holding", "input"]), st.integers(0, 1000), st.integers(1, 125)),
    st.builds(read_request, st.sampled_from(["coil", "discrete"]), st.integers(0, 1000), st.integers(1, 2000)),
    st.builds(lambda a, v: write_request("holding", a, v, multiple=len(v) > 1),
              st.integers(0, 1000), st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=4)),
)


@given(requests, st.binary(max_size=300))
def test_parse_response_raises_only_frame_errors_and_checks_the_count(request: bytes, response: bytes) -> None:
    try:
        values = parse_response(request, response)
    except (FrameError, ExceptionReply):
        return
    if request[0] in (1, 2, 3, 4):
        assert len(values) == int.from_bytes(request[3:5], "big")  # never more or fewer than asked
    else:
        assert values == []


@given(st.integers(1, 247), st.lists(st.integers(0, 0xFFFF), min_size=1, max_size=125), st.data())
def test_any_single_bit_error_in_a_reply_is_caught(unit: int, registers: list[int], data: st.DataObject) -> None:
    pdu = bytes([3, 2 * len(registers)]) + b"".join(r.to_bytes(2, "big") for r in registers)
    frame = encode("rtu", unit, pdu)
    # Any byte but the function code and byte count (those change the frame's length, not just its CRC).
    index = data.draw(st.sampled_from([0, *range(3, len(frame))]))
    bit = data.draw(st.integers(0, 7))
    damaged = frame[:index] + bytes([frame[index] ^ (1 << bit)]) + frame[index + 1 :]
    with pytest.raises(FrameError, match="CRC"):
        decode("rtu", damaged)


# --- the master on a scripted line -------------------------------------------------------

Reply = list[tuple[float, bytes]]  # (seconds after the request, bytes the line delivers)


class ScriptedLine(Transport):
    """A line whose answers a test script decides: each request gets zero or more timed byte strings."""

    def __init__(self, script: Callable[[int, bytes], Reply]) -> None:
        super().__init__()
        self.script = script
        self.sent: list[bytes] = []

    async def open(self) -> None:
        self._lost = None

    def close(self) -> None:
        self._fail("closed")

    async def _write(self, data: bytes) -> None:
        frame = decode("rtu", data, request=True)
        assert frame is not None
        self.sent.append(data)
        loop = asyncio.get_running_loop()
        for delay, chunk in self.script(frame.unit, frame.pdu):
            loop.call_later(delay, self._feed, chunk)


def holding(unit: int, pdu: bytes, offset: int = 0) -> bytes:
    start, count = int.from_bytes(pdu[1:3], "big"), int.from_bytes(pdu[3:5], "big")
    values = b"".join((unit * 100 + start + i + offset).to_bytes(2, "big") for i in range(count))
    return encode("rtu", unit, bytes([pdu[0], len(values)]) + values)


def run(coro_factory: Callable[[Master], Awaitable[object]],
        script: Callable[[int, bytes], Reply]) -> tuple[Master, object]:
    async def main() -> tuple[Master, object]:
        master = Master(ScriptedLine(script), "rtu", gap=0.001)
        result = await coro_factory(master)
        return master, result

    return asyncio.run(main())


async def outcome(master: Master, unit: int, request: bytes, reply_within: float = 0.05) -> object:
    try:
        return await master.transact(unit, request, reply_within)
    except (NoAnswer, FrameError, ExceptionReply) as exc:
        return type(exc).__name__


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=80))
def test_master_turns_any_reply_bytes_into_a_known_outcome(reply: bytes) -> None:
    request = read_request("holding", 0, 3)

    async def go(master: Master) -> object:
        return await outcome(master, 1, request, reply_within=0.01)

    _, result = run(go, lambda _u, _p: [(0.0, reply)])
    assert result in ("NoAnswer", "FrameError", "ExceptionReply") or result == [100, 101, 102]


def test_wrong_unit_function_and_length_are_refused() -> None:
    def script(unit: int, pdu: bytes) -> Reply:
        good = holding(unit, pdu)
        if unit == 3:
            return [(0.0, encode("rtu", 4, good[1:-2]))]  # re-addressed from unit 4, valid CRC
        if unit == 5:
            return [(0.0, encode("rtu", 5, b"\x04" + good[2:-2]))]  # FC04 answer to FC03
        if unit == 6:
            data = good[3:-4]
            return [(0.0, encode("rtu", 6, bytes([3, len(data)]) + data))]  # one register short
        return [(0.0, good)]

    async def go(master: Master) -> object:
        request = read_request("holding", 0, 3)
        return [await outcome(master, u, request) for u in (1, 3, 5, 6, 1)]

    master, results = run(go, script)
    assert results == [[100, 101, 102], "FrameError", "FrameError", "FrameError", [100, 101, 102]]
    assert master.stats.bad_frames == 3


def test_a_reply_after_the_timeout_is_never_taken_for_the_next_request() -> None:
    # Unit 8 answers after 70 ms, past its 50 ms timeout. Its two blocks have the same shape, so without the
    # late-reply rule the reply to block A (800..805) would be returned as block B (808..813).
    def script(unit: int, pdu: bytes) -> Reply:
        return [(0.07 if unit == 8 else 0.045, holding(unit, pdu))]

    async def go(master: Master) -> object:
        block_a, block_b = read_request("holding", 0, 6), read_request("holding", 8, 6)
        return [await outcome(master, 8, block_a), await outcome(master, 8, block_b),
                await outcome(master, 1, block_a)]

    master, results = run(go, script)
    assert isinstance(results, list)
    assert results[0] == "NoAnswer" and results[1] == "NoAnswer"
    assert results[2] == [100, 101, 102, 103, 104, 105]  # unit 8's second late reply did not spoil unit 1's
    assert master.stats.late_replies == 2


def test_a_late_reply_inside_another_units_transaction_is_dropped_not_blamed() -> None:
    def script(unit: int, pdu: bytes) -> Reply:
        return [(0.07, holding(unit, pdu))] if unit == 8 else [(0.03, holding(unit, pdu))]

    async def go(master: Master) -> object:
        request = read_request("holding", 0, 2)
        return [await outcome(master, 8, request), await outcome(master, 2, request)]

    master, results = run(go, script)
    assert results == ["NoAnswer", [200, 201]]
    assert master.stats.late_replies == 1 and master.stats.bad_frames == 0


def test_garbage_then_silence_is_a_bad_frame_and_the_next_transaction_is_clean() -> None:
    calls = {"n": 0}

    def script(unit: int, pdu: bytes) -> Reply:
        calls["n"] += 1
        if calls["n"] == 1:
            return [(0.0, b"\x01\x03\x06\xff"), (0.005, b"\x00\x17garbage")]
        return [(0.0, holding(unit, pdu))]

    async def go(master: Master) -> object:
        request = read_request("holding", 0, 3)
        return [await outcome(master, 1, request), await outcome(master, 1, request)]

    master, results = run(go, script)
    assert results == ["FrameError", [100, 101, 102]]
    assert master.stats.discarded_bytes > 0


def test_a_retry_of_the_same_request_takes_the_late_reply_and_the_next_request_does_not() -> None:
    # The retry is identical, so the first attempt's late reply answers it correctly (same addresses);
    # the retry's own reply still comes and must not become the answer to block B or to unit 1.
    def script(unit: int, pdu: bytes) -> Reply:
        return [(0.07 if unit == 8 else 0.045, holding(unit, pdu))]

    async def go(master: Master) -> object:
        block_a, block_b = read_request("holding", 0, 6), read_request("holding", 8, 6)
        return [await outcome(master, 8, block_a), await outcome(master, 8, block_a),
                await outcome(master, 8, block_b), await outcome(master, 1, block_a)]

    master, results = run(go, script)
    assert results == ["NoAnswer", [800, 801, 802, 803, 804, 805], "NoAnswer", [100, 101, 102, 103, 104, 105]]
    assert master.stats.late_replies == 2


def test_a_reply_that_arrived_while_the_loop_was_late_is_not_taken_for_silence() -> None:
    # Issue 14 (the stall under libfaketime): a daemon whose event loop is held up past a transaction's
    # deadline (a loaded machine, GIL contention) finds the reply already received and the timeout due in
    # the same loop iteration; the timeout cancelled the wait although the bytes were in the buffer, and
    # the master reported silence (three in a row took a live unit offline).
    def script(unit: int, pdu: bytes) -> Reply:
        loop = asyncio.get_running_loop()
        loop.call_later(0.005, time.sleep, 0.08)  # the loop is busy elsewhere past the 50 ms deadline
        return [(0.01, holding(unit, pdu))]  # while the reply arrives well within it

    async def go(master: Master) -> object:
        return await outcome(master, 1, read_request("holding", 0, 2), reply_within=0.05)

    master, result = run(go, script)
    assert result == [100, 101]
    assert master.stats.timeouts == 0
