"""SL 651-2014 HEX/BCD frames as the centre receives them: the stream splitter, frame and body decoding,
observations, JSON, M3 reassembly. Documented error: ``Sl651Error`` only (the splitter returns it).

Promises checked: an accepted frame re-encodes to the same bytes; the splitter's buffer stays under one
frame plus the input; observations and the JSON form of an accepted message never fail.

Input: one flag byte (bit 0: repair the length field; bit 1: repair the CRC, so mutants reach the body
decoders; bit 2: also feed the bytes through the stream splitter in two pieces), then the frame.
"""

from __future__ import annotations

import contextlib
import json

from drivers.sl651.errors import Sl651Error
from drivers.sl651.frame import HEADER, MAX_FRAME, FrameReader, Reassembler, crc
from drivers.sl651.message import decode, decode_message, encode, observations, to_json
from fuzz.seeds import vectors

NAME = "sl651"
COVERS = ("drivers/sl651/frame.py", "drivers/sl651/body.py", "drivers/sl651/elements.py", "drivers/sl651/message.py")
DICTIONARY = [b"\x7e\x7e", b"\xf1\xf1", b"\xf0\xf0", b"\x04\x18", b"\xf4\x60", b"\xf5\xc0", b"\x39\x23",
              b"\x20\x19", b"\x38\x12", b"\xff\xff", b"\x02", b"\x16", b"\x03", b"\x17", b"\x1b", b"\x80"]
# 31H: a level series of 4 five-minute steps, the third missing (all F); 34H: F4 rainfall and F5 level lists
BUILT_IN = [
    "7E7E010010100001A000310000020001200724172349F1F1001010000148F0F02007241700041800000539230000055000000560"
    "FFFFFFFF00000580030000",
    "7E7E010010100001A000340000020002200724172349F1F1001010000150F0F02007241600F460000102030405060708090AFF"
    "F5C0000100020003000400050006000700080009000A000BFFFF030000",
]


def _repair(frame: bytes) -> bytes:
    if len(frame) >= HEADER:
        length = max(1, min(0xFFF, len(frame) - HEADER - 3))
        flag = frame[11] & 0x80
        frame = frame[:11] + bytes([flag | length >> 8, length & 0xFF]) + frame[13:]
    return frame


def seeds() -> list[bytes]:
    frames = [bytes.fromhex(f["hex"]) for f in vectors("sl651.json").get("frames", []) if "hex" in f]
    frames += [_repair(bytes.fromhex(h)) for h in BUILT_IN]
    frames = [f[:-2] + crc(f[:-2]) for f in frames]
    return [bytes([flag]) + f for f in frames for flag in (0, 3, 7)]


def fuzz_one(data: bytes) -> None:
    if not data:
        return
    flags, frame = data[0], data[1:]
    if flags & 1:
        frame = _repair(frame)
    if flags & 2 and len(frame) >= 2:
        frame = frame[:-2] + crc(frame[:-2])
    try:
        message = decode(frame)
    except Sl651Error:
        pass
    else:
        assert encode(message) == frame, "an accepted frame re-encodes to the same bytes"
        observations(message)
        json.dumps(to_json(message))
    if flags & 4:
        reader, reassembler = FrameReader(), Reassembler(max_messages=4, max_bytes=1 << 14)
        half = len(frame) // 2
        for piece in (frame[:half], frame[half:]):
            for got in reader.feed(piece):
                if isinstance(got, Sl651Error):
                    continue
                whole = reassembler.add(got)
                if whole is not None:
                    with contextlib.suppress(Sl651Error):
                        decode_message(whole)
            assert reader.buffered <= MAX_FRAME + len(frame)
