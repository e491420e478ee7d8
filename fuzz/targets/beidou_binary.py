"""BeiDou 4.0 binary frames: ``parse_frame`` returns a value for any bytes, never raises.

Input: one flag byte, then the frame. Flag bit 0 rewrites the length field and the XOR
checksum to match, so mutants reach the content decoders ($FKXX, $ICXX, $TXXX).
"""

from __future__ import annotations

from drivers.beidou.sentences import (
    Parsed,
    encode_frame,
    parse_frame,
    xor,
)
from fuzz.seeds import vectors

NAME = "beidou_binary"
COVERS = ("drivers/beidou/sentences.py",)

BUILT_IN = [
    encode_frame("FKXX", 166166, b"\x00TXSQ"),
    encode_frame("FKXX", 166166, bytes([4]) + (25).to_bytes(4, "big")),
    encode_frame("ICXX", 166166, bytes([0, 0, 0, 11, 6]) + (60).to_bytes(2, "big") + bytes([3, 0, 0, 0])),
    encode_frame("TXXX", 1, bytes([0x46]) + (7).to_bytes(3, "big") + b"\x0c\x1e" + (24).to_bytes(2, "big")
                 + b"\xa4hi" + b"\x00"),
    encode_frame("ZJXX", 1, bytes(10)),
    encode_frame("ICJC", 0, b"\x00"),
]


def with_length_and_checksum(frame: bytes) -> bytes:
    body = bytearray(frame[:-1] if len(frame) > 7 else frame)
    if len(body) >= 7:
        body[5:7] = ((len(body) + 1) & 0xFFFF).to_bytes(2, "big")
    return bytes(body) + bytes([xor(body)])


def seeds() -> list[bytes]:
    frames = [bytes.fromhex(v["hex"]) for v in vectors("beidou.json").get("binary_4_0", [])]
    return [flag + frame for frame in frames + BUILT_IN for flag in (b"\x00", b"\x01")]


def fuzz_one(data: bytes) -> None:
    if not data:
        return
    frame = with_length_and_checksum(data[1:]) if data[0] & 1 else data[1:]
    assert isinstance(parse_frame(frame), Parsed)  # documented: never raises, always one of these
