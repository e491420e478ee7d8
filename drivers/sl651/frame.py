"""SL 651-2014 HEX/BCD framing (tables 20–23): header, length with the direction flag, end char, CRC.

``7E7E | centre, station (up) or station, centre (down) | password | function | direction+length |
STX (or SYN + 3-byte packet count/sequence in M3) | body | end char | CRC``. The length counts the bytes
between the start char and the end char (the M3 packet field included), at most 4095. The CRC is
CRC-16/MODBUS arithmetic over every byte before it, sent **high byte first** (checked on every public
vector). There is no byte stuffing: ``7E`` occurs inside frames, so the stream is split by the length
field and resynchronised on the next ``7E7E`` only after a frame fails its checks.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, replace

from drivers.modbus.frames import crc16
from drivers.sl651.errors import Sl651EncodeError, Sl651Error

START = b"\x7e\x7e"
STX, SYN = 0x02, 0x16
ETX, ETB = 0x03, 0x17
ENQ, EOT, ACK, NAK, ESC = 0x05, 0x04, 0x06, 0x15, 0x1B
END_NAMES = {ETX: "ETX", ETB: "ETB", ENQ: "ENQ", EOT: "EOT", ACK: "ACK", NAK: "NAK", ESC: "ESC"}
HEADER = 14  # 7E7E, 6 address bytes, password, function, direction+length, start char
MAX_BODY = 0xFFF
MAX_FRAME = HEADER + MAX_BODY + 3


class Direction(enum.StrEnum):
    UP = "up"  # station → centre: centre address first
    DOWN = "down"  # centre → station: station address first


ENDS = {Direction.UP: {ETX, ETB}, Direction.DOWN: {ENQ, ACK, NAK, EOT, ESC}}


@dataclass(frozen=True, slots=True)
class Frame:
    direction: Direction
    centre: int
    station: bytes  # 5 opaque bytes (6.2.3.2)
    password: int
    function: int
    body: bytes  # between the start char (and M3 packet field) and the end char
    end: int
    packets: tuple[int, int] | None = None  # M3 (SYN): (total, this packet's sequence)

    @property
    def end_name(self) -> str:
        return END_NAMES.get(self.end, f"{self.end:02X}")

    def station_hex(self) -> str:
        return self.station.hex().upper()


def crc(data: bytes) -> bytes:
    """CRC-16/MODBUS arithmetic, sent high byte first (Modbus RTU sends the low byte first)."""
    return crc16(data).to_bytes(2, "big")


def encode_frame(frame: Frame) -> bytes:
    if len(frame.station) != 5:
        raise Sl651EncodeError("a station address is 5 bytes")
    if not 0 <= frame.centre <= 0xFF or not 0 <= frame.password <= 0xFFFF or not 0 <= frame.function <= 0xFF:
        raise Sl651EncodeError("centre, password or function code out of range")
    if frame.end not in ENDS[frame.direction]:
        raise Sl651EncodeError(f"{frame.end_name} does not end a {frame.direction} frame")
    packet = b""
    if frame.packets is not None:
        total, seq = frame.packets
        if not (1 <= seq <= total <= 0xFFF):
            raise Sl651EncodeError(f"M3 packet {seq} of {total}")
        packet = (total << 12 | seq).to_bytes(3, "big")
    length = len(packet) + len(frame.body)
    if not 1 <= length <= MAX_BODY:
        raise Sl651EncodeError(f"body of {length} bytes (1…{MAX_BODY}); split it into M3 packets")
    address = (bytes([frame.centre]) + frame.station if frame.direction is Direction.UP
               else frame.station + bytes([frame.centre]))
    flag = 0x8000 if frame.direction is Direction.DOWN else 0
    head = (START + address + frame.password.to_bytes(2, "big") + bytes([frame.function])
            + (flag | length).to_bytes(2, "big") + bytes([SYN if packet else STX]))
    out = head + packet + frame.body + bytes([frame.end])
    return out + crc(out)


def frame_size(head: bytes) -> int | None:
    """Total bytes of the frame starting at ``head[0]`` (which must be 7E7E), None until 14 bytes are in."""
    if len(head) < HEADER:
        return None
    if head[:2] != START:
        raise Sl651Error("frame does not start with 7E7E")
    word = int.from_bytes(head[11:13], "big")
    if word >> 12 not in (0x0, 0x8):
        raise Sl651Error(f"direction flag {word >> 12:X} (0 up, 8 down)")
    length = word & 0xFFF
    if length == 0:
        raise Sl651Error("length 0")
    if head[13] not in (STX, SYN):
        raise Sl651Error(f"start char {head[13]:02X} (STX 02 or SYN 16)")
    if head[13] == SYN and length < 3:
        raise Sl651Error("M3 frame shorter than its packet field")
    return HEADER + length + 3


def decode_frame(data: bytes) -> Frame:
    """Exactly one frame; raises :class:`Sl651Error` for anything else."""
    size = frame_size(data)
    if size is None:
        raise Sl651Error(f"{len(data)} bytes is shorter than a header")
    if len(data) != size:
        raise Sl651Error(f"the length field says {size} bytes, got {len(data)}")
    if crc(data[:-2]) != data[-2:]:
        raise Sl651Error(f"CRC {data[-2:].hex().upper()}, computed {crc(data[:-2]).hex().upper()}")
    direction = Direction.DOWN if data[11] & 0x80 else Direction.UP
    end = data[-3]
    if end not in ENDS[direction]:
        raise Sl651Error(f"{END_NAMES.get(end, f'{end:02X}')} does not end a {direction} frame")
    if direction is Direction.UP:
        centre, station = data[2], data[3:8]
    else:
        station, centre = data[2:7], data[7]
    body = data[HEADER:-3]
    packets = None
    if data[13] == SYN:
        word = int.from_bytes(body[:3], "big")
        packets, body = (word >> 12, word & 0xFFF), body[3:]
        if not 1 <= packets[1] <= packets[0]:
            raise Sl651Error(f"M3 packet {packets[1]} of {packets[0]}")
    return Frame(direction, centre, bytes(station), int.from_bytes(data[8:10], "big"), data[10], bytes(body),
                 end, packets)


class FrameReader:
    """Splits a byte stream into frames by the length field; bounded; resynchronises after a bad frame.

    :meth:`feed` yields a :class:`Frame` or the :class:`Sl651Error` that made it drop bytes (it never
    raises). Garbage before ``7E7E`` is skipped silently up to the bound, then reported once.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> Iterator[Frame | Sl651Error]:
        self._buf += data
        while True:
            at = self._buf.find(START)
            if at < 0:
                keep = 1 if self._buf.endswith(START[:1]) else 0
                if len(self._buf) > MAX_FRAME:
                    yield Sl651Error(f"{len(self._buf) - keep} bytes without a frame start")
                del self._buf[:len(self._buf) - keep]
                return
            del self._buf[:at]
            try:
                size = frame_size(bytes(self._buf[:HEADER]))
            except Sl651Error as exc:
                del self._buf[:1]
                yield exc
                continue
            if size is None or len(self._buf) < size:
                return
            raw = bytes(self._buf[:size])
            try:
                frame = decode_frame(raw)
            except Sl651Error as exc:
                del self._buf[:1]  # the 7E7E was data, or the frame is damaged: look for the next start
                yield exc
                continue
            del self._buf[:size]
            yield frame

    @property
    def buffered(self) -> int:
        return len(self._buf)


class Reassembler:
    """M3: collects the packets of one multi-packet message per (station, function); bounded.

    ``add`` returns the whole message (one frame, body joined, ``packets`` None) once every packet
    from 1 to total arrived; ``missing`` lists what a NAK should ask for again.
    """

    def __init__(self, max_messages: int = 64, max_bytes: int = 4 << 20) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._parts: dict[tuple[bytes, int], dict[int, Frame]] = {}

    def add(self, frame: Frame) -> Frame | None:
        if frame.packets is None:
            return frame
        total, seq = frame.packets
        key = (frame.station, frame.function)
        parts = self._parts.setdefault(key, {})
        if any(p.packets is not None and p.packets[0] != total for p in parts.values()):
            parts.clear()  # a new message with another packet count: the old one is abandoned
        parts[seq] = frame
        self._bound(key)
        if key not in self._parts or len(parts) < total:
            return None
        del self._parts[key]
        body = b"".join(parts[n].body for n in range(1, total + 1))
        return replace(frame, body=body, packets=None, end=ETX)

    def missing(self, frame: Frame) -> list[int]:
        if frame.packets is None:
            return []
        parts = self._parts.get((frame.station, frame.function), {})
        return [n for n in range(1, frame.packets[0] + 1) if n not in parts]

    def _bound(self, key: tuple[bytes, int]) -> None:
        while len(self._parts) > self.max_messages:
            oldest = next(k for k in self._parts if k != key)
            del self._parts[oldest]
        held = sum(len(p.body) for parts in self._parts.values() for p in parts.values())
        while held > self.max_bytes and len(self._parts) > 1:
            oldest = next(k for k in self._parts if k != key)
            held -= sum(len(p.body) for p in self._parts.pop(oldest).values())
        if held > self.max_bytes:
            self._parts.pop(key, None)
