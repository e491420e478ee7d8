"""BeiDou 2.1 / BDS-3 text sentences: ``parse_text`` returns a value for any bytes, never raises.

Input: one flag byte, then the line. Flag bit 0 rewrites the ``*hh`` checksum to the correct
one, so mutants get past the checksum to the field builders.
"""

from __future__ import annotations

from drivers.beidou.sentences import (
    Parsed,
    encode_text,
    parse_text,
    xor,
)
from fuzz.seeds import vectors

NAME = "beidou_text"
COVERS = ("drivers/beidou/sentences.py",)

BUILT_IN = [
    encode_text("BDFKI", ["TXA", "Y", "Y", "0", "0040"]),
    encode_text("BDFKI", ["TXA", "N", "N", "0", "0125"]),
    encode_text("BDFKI", ["101500", "TCQ", "N", "1", "37"]),
    encode_text("BDICI", ["0166166", "02097151", "0000011", "6", "40", "3", "N", "000"]),
    encode_text("BDICP", ["4238473", "0", "0", "3", "0", "N", "2", "N", "1", "0", "0", "3", "1", "60", "2",
                          "0", "0", "0", "0", "21", "0", "0", "0"]),
    encode_text("BDTXR", ["1", "0166166", "2", "", "A4CAFE"]),
    encode_text("BDTXR", ["1", "0166166", "0", "", "C4E3BAC3"]),
    encode_text("BDTCI", ["04207733", "4207733", "2", "070222", "3", "0", "A40102FF"]),
    encode_text("BDPWI", ["081836.00", "1", "1", "4", "40", "41", "42", "0"]),
    encode_text("CCTXA", ["0247718", "1", "2", "A4CAFE"]),
]


def with_checksum(line: bytes) -> bytes:
    raw = line.rstrip(b"\r\n")
    star = raw.rfind(b"*")
    body = raw[1:star] if raw[:1] == b"$" and star > 0 else raw.lstrip(b"$")
    return b"$" + body + b"*%02X\r\n" % xor(body)


def seeds() -> list[bytes]:
    data = vectors("beidou.json")
    lines = [v["line"].encode() + b"\r\n" for key in ("text_2_1", "bds3") for v in data.get(key, [])]
    return [flag + line for line in lines + BUILT_IN for flag in (b"\x00", b"\x01")]


def fuzz_one(data: bytes) -> None:
    if not data:
        return
    line = with_checksum(data[1:]) if data[0] & 1 else data[1:]
    assert isinstance(parse_text(line), Parsed)  # documented: never raises, always one of these
