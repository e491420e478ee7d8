"""The BeiDou serial byte stream: ``StreamDecoder.feed`` never raises, keeps its buffer bounded,
and never waits for input that cannot come (after a run of line ends it is back in step).

Input: one byte choosing how the rest is cut into reads (1 byte at a time ... all at once). Inputs
over 1 KiB are read at least 64 bytes at a time: the decoder rescans its buffer for a line end on
every read, so a 4 KiB line read byte by byte costs quadratic time (bounded by the buffer limit,
a few milliseconds, but enough to starve the fuzzer).
"""

from __future__ import annotations

from drivers.beidou.sentences import (
    MAX_TEXT_LINE,
    Parsed,
    ParseError,
    StreamDecoder,
    Unsolicited,
    encode_frame,
    encode_text,
)
from fuzz.seeds import vectors

NAME = "beidou_stream"
COVERS = ("drivers/beidou/sentences.py",)
READ_SIZES = (1, 2, 3, 7, 16, 64, 512, 4096, 1 << 20)
FILLER = b"\r\n" * (MAX_TEXT_LINE // 2 + 1)  # longer than any frame or line the decoder may wait for
PROBE = encode_text("BDBSI", ["1"])

BUILT_IN = [
    b"\x00garbage" + encode_text("BDBSI", ["1"]) + encode_frame("FKXX", 5, b"\x00TXSQ") + encode_text("GNRMC", ["x"])
    + b"$BDFKI,TXA,Y" + encode_text("BDFKI", ["TXA", "Y", "Y", "0", "0000"]),
    encode_frame("TXXX", 1, bytes([0x46]) + (7).to_bytes(3, "big") + b"\x0c\x1e" + (24).to_bytes(2, "big")
                 + b"\xa4hi" + b"\x00") + encode_text("BDTXR", ["1", "0166166", "2", "", "A4CAFE"]),
    b"$TXXX\x00\x0b" + encode_text("BDICI", ["0166166", "1", "2", "3", "60", "3", "N"]),
]


def seeds() -> list[bytes]:
    data = vectors("beidou.json")
    text = b"".join(v["line"].encode() + b"\r\n" for key in ("text_2_1", "bds3") for v in data.get(key, []))
    frames = b"".join(bytes.fromhex(v["hex"]) for v in data.get("binary_4_0", []))
    return [bytes([i]) + stream for stream in [text + frames, *BUILT_IN] for i in (0, 3, 8)]


def fuzz_one(data: bytes) -> None:
    if not data:
        return
    step, stream = READ_SIZES[data[0] % len(READ_SIZES)], data[1:]
    if len(stream) > 1024:
        step = max(step, 64)
    decoder = StreamDecoder()
    for i in range(0, len(stream), step):
        for item in decoder.feed(stream[i : i + step]):
            assert isinstance(item, Parsed)
        assert decoder.buffered <= MAX_TEXT_LINE
    list(decoder.feed(FILLER))
    back = [item for item in decoder.feed(PROBE) if not isinstance(item, ParseError)]  # leftovers may be junk
    assert back == [Unsolicited("BDBSI")], "decoder out of step after the filler"
