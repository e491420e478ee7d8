"""One whole ``AT+SBDRB`` reply: ``{u16 length}{payload}{u16 checksum}``. ``parse_sbdrb`` returns the
payload or an AtParseError, never raises; ``sbdrb_size`` never asks for more than the buffer holds.

Input: one flag byte (bit 0: fix the length field; bit 1: fix the checksum, so mutants reach the
payload path; bits 2-7 unused), then the reply.
"""

from __future__ import annotations

from drivers.iridium.at import MAX_MT, AtParseError, ResponseBuffer, checksum, parse_sbdrb, sbdrb_size
from fuzz.seeds import vectors

NAME = "iridium_sbdrb"
COVERS = ("drivers/iridium/at.py",)
BUILT_IN = [b"\x00\x00\x00\x00", b"\x00\x05hello\x02\x14", b"\xff\xff", MAX_MT.to_bytes(2, "big") + bytes(MAX_MT + 2)]


def seeds() -> list[bytes]:
    replies = [bytes.fromhex(i["hex"]) for i in vectors("iridium.json").get("items", []) if "hex" in i]
    return [bytes([flag]) + r for r in replies + BUILT_IN for flag in (0, 1, 3)]


def fuzz_one(data: bytes) -> None:
    if not data:
        return
    flags, reply = data[0], bytearray(data[1:])
    if flags & 1 and len(reply) >= 4:
        reply[:2] = (len(reply) - 4).to_bytes(2, "big")
    if flags & 2 and len(reply) >= 4:
        reply[-2:] = checksum(bytes(reply[2:-2]))
    size = sbdrb_size(bytes(reply))
    assert size is None or isinstance(size, AtParseError) or size <= ResponseBuffer.LIMIT
    got = parse_sbdrb(bytes(reply))
    assert isinstance(got, AtParseError) or (len(got) <= MAX_MT and size == len(reply))
