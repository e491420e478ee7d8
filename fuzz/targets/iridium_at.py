"""Iridium SBD modem output as the link reads it: lines (+SBDIX, +CSQ, write results, SBDRING) and
SBDRB binary runs taken from the bounded ResponseBuffer. Parsers return AtParseError values and
never raise; the buffer stays bounded; an SBDRB length is never one the buffer cannot hold.

Input: one byte choosing the read size and whether an SBDRB reply is expected (and its announced
length), then the bytes. Inputs over 512 bytes are read at least 16 bytes at a time (speed only).
"""

from __future__ import annotations

from drivers.iridium.at import (
    AtParseError,
    ResponseBuffer,
    SessionResult,
    WriteResult,
    is_ring,
    parse_csq,
    parse_imei,
    parse_sbdix,
    parse_sbdrb,
    parse_write_result,
    sbdrb_size,
    sbdwb_body,
)
from fuzz.seeds import vectors

NAME = "iridium_at"
COVERS = ("drivers/iridium/at.py",)
MAX_LEN = 2048  # well past the buffer's limit; longer inputs only slow the run
READ_SIZES = (1, 2, 5, 16, 64, 512, 1 << 20)

BUILT_IN = [
    b"\r\nSBDRING\r\n+SBDIX: 0, 1, 1, 1, 5, 0\r\n\r\nOK\r\n",
    b"\r\n+CSQF:4\r\n\r\nOK\r\n\r\nREADY\r\n0\r\n\r\nOK\r\n",
    b"\r\n+SBDIX: 32, 5, 2, 0, 0, 0\r\n\r\nOK\r\n\r\nERROR\r\n1\r\n",
    b"\x00\x05" + sbdwb_body(b"he\r\no") + b"\r\nOK\r\n",
]


def seeds() -> list[bytes]:
    items = vectors("iridium.json").get("items", [])
    lines = b"".join(line.encode() + b"\r\n" for i in items for line in i.get("exchange", [i.get("line", "")])
                     if not line.startswith("<"))
    binary = [bytes.fromhex(i["hex"]) + b"\r\nOK\r\n" for i in items if "hex" in i]
    return [bytes([flag]) + data for data in [lines, *binary, *BUILT_IN] for flag in (0, 0x85, 0x13)]


def _line(text: str) -> None:
    assert isinstance(parse_sbdix(text), SessionResult | AtParseError)
    assert isinstance(parse_csq(text), int | AtParseError)
    assert isinstance(parse_imei(text.splitlines()), str | AtParseError)
    assert isinstance(parse_write_result(text), WriteResult | AtParseError)
    is_ring(text)


def fuzz_one(data: bytes) -> None:
    if not data:
        return
    step, binary, stream = READ_SIZES[data[0] % len(READ_SIZES)], bool(data[0] & 0x80), data[1:]
    if len(stream) > 512:
        step = max(step, 16)
    buf = ResponseBuffer()
    head: bytes | None = None
    for i in range(0, len(stream), step):
        buf.feed(stream[i : i + step])
        assert len(buf) <= ResponseBuffer.LIMIT
        if binary:  # the link's _read_sbdrb: skip line ends, a 2-byte length, then that many bytes
            buf.skip_blank()
            head = head or buf.take(2)
            size = None if head is None else sbdrb_size(head, data[0] & 0x7F)
            if head is not None and isinstance(size, int):
                assert size <= ResponseBuffer.LIMIT, "SBDRB length the buffer can never hold"
                rest = buf.take(size - 2)
                if rest is not None:
                    assert isinstance(parse_sbdrb(head + rest), bytes | AtParseError)
                    binary = False
            elif size is not None:
                binary = False
        while (line := buf.next_line()) is not None:
            _line(line)
