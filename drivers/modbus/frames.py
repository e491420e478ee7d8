"""Modbus PDUs and the three ways of framing them on a byte stream (RTU, ASCII, TCP/MBAP).

Pure functions, no I/O: the master (drivers/modbus/master.py) feeds received bytes in,
the simulator uses the same code from the device side. Every malformed input becomes a
``FrameError``; nothing here trusts a length or a count it was sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

READ_FC = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}
FC_TABLE = {1: "coil", 2: "discrete", 3: "holding", 4: "input", 5: "coil", 6: "holding", 15: "coil", 16: "holding"}
MAX_BITS = 2000  # FC01/02 (Modbus Application Protocol 1.1b3, 6.1-6.2)
MAX_REGISTERS = 125  # FC03/04
MAX_WRITE_REGISTERS = 123  # FC16
MAX_WRITE_BITS = 1968  # FC15
EXCEPTION_NAMES = {
    1: "illegal function", 2: "illegal data address", 3: "illegal data value", 4: "server device failure",
    5: "acknowledge", 6: "server device busy", 8: "memory parity error", 10: "gateway path unavailable",
    11: "gateway target failed to respond",
}

FramerKind = Literal["rtu", "ascii", "socket"]


class FrameError(Exception):
    """Bytes that are not a usable reply (CRC/LRC, truncated, garbage, wrong unit or function)."""


class ExceptionReply(Exception):
    """The device answered with a Modbus exception response."""

    def __init__(self, function: int, code: int) -> None:
        name = EXCEPTION_NAMES.get(code, "unknown")
        super().__init__(f"exception {code} ({name}) to function {function}")
        self.function = function
        self.code = code


# --- checksums -------------------------------------------------------------------------


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    """CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF); sent low byte first."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


def lrc(data: bytes) -> int:
    """Modbus ASCII LRC: two's complement of the 8-bit sum."""
    return (-sum(data)) & 0xFF


# --- PDUs ------------------------------------------------------------------------------


def read_request(table: str, start: int, count: int) -> bytes:
    limit = MAX_REGISTERS if table in ("holding", "input") else MAX_BITS
    if not 1 <= count <= limit or not 0 <= start <= 0xFFFF or start + count > 0x10000:
        raise ValueError(f"cannot read {count} from {table} {start}")
    return bytes([READ_FC[table]]) + start.to_bytes(2, "big") + count.to_bytes(2, "big")


def write_request(table: str, address: int, values: list[int], multiple: bool) -> bytes:
    """FC05/06 for one value unless ``multiple``; FC15/16 otherwise."""
    if table == "coil":
        if len(values) == 1 and not multiple:
            return b"\x05" + address.to_bytes(2, "big") + (b"\xff\x00" if values[0] else b"\x00\x00")
        if not 1 <= len(values) <= MAX_WRITE_BITS:
            raise ValueError(f"cannot write {len(values)} coils")
        packed = pack_bits([bool(v) for v in values])
        return (b"\x0f" + address.to_bytes(2, "big") + len(values).to_bytes(2, "big")
                + bytes([len(packed)]) + packed)
    if table != "holding":
        raise ValueError(f"{table} is read-only")
    if len(values) == 1 and not multiple:
        return b"\x06" + address.to_bytes(2, "big") + (values[0] & 0xFFFF).to_bytes(2, "big")
    if not 1 <= len(values) <= MAX_WRITE_REGISTERS:
        raise ValueError(f"cannot write {len(values)} registers")
    body = b"".join((v & 0xFFFF).to_bytes(2, "big") for v in values)
    return b"\x10" + address.to_bytes(2, "big") + len(values).to_bytes(2, "big") + bytes([len(body)]) + body


def pack_bits(bits: list[bool]) -> bytes:
    out = bytearray((len(bits) + 7) // 8)
    for i, bit in enumerate(bits):
        if bit:
            out[i // 8] |= 1 << (i % 8)
    return bytes(out)


def unpack_bits(data: bytes, count: int) -> list[int]:
    return [(data[i // 8] >> (i % 8)) & 1 for i in range(count)]


def response_pdu_length(head: bytes) -> int | None:
    """Length of a response PDU from its first bytes, None if more are needed to tell."""
    if not head:
        return None
    function = head[0]
    if function & 0x80:
        return 2
    if function in (1, 2, 3, 4):
        return None if len(head) < 2 else 2 + head[1]
    if function in (5, 6, 15, 16):
        return 5
    raise FrameError(f"garbage: function code {function} in a reply")


def request_pdu_length(head: bytes) -> int | None:
    """Length of a request PDU from its first bytes (device side: simulator, noise relay)."""
    if not head:
        return None
    function = head[0]
    if function in (1, 2, 3, 4, 5, 6):
        return 5
    if function in (15, 16):
        return None if len(head) < 6 else 6 + head[5]
    raise FrameError(f"unsupported function code {function}")


def parse_response(request: bytes, response: bytes) -> list[int]:
    """Registers (or bits, one int each) a read returned; [] for a correct write echo."""
    function = request[0]
    if not response:
        raise FrameError("empty reply")
    if response[0] == function | 0x80:
        raise ExceptionReply(function, response[1] if len(response) > 1 else 0)
    if response[0] != function:
        raise FrameError(f"reply to function {response[0]}, asked {function}")
    count = int.from_bytes(request[3:5], "big")
    if function in (1, 2):
        need = (count + 7) // 8
        if len(response) != 2 + need or response[1] != need:
            raise FrameError(f"bit reply of {len(response) - 2} bytes, expected {need}")
        return unpack_bits(response[2:], count)
    if function in (3, 4):
        if len(response) != 2 + 2 * count or response[1] != 2 * count:
            raise FrameError(f"register reply of {len(response) - 2} bytes, expected {2 * count}")
        return [int.from_bytes(response[i : i + 2], "big") for i in range(2, len(response), 2)]
    # Writes: FC05/06 echo the request; FC15/16 echo address and quantity.
    if response[:5] != request[:5]:
        raise FrameError("write echo does not match the request")
    return []


# --- framing ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Frame:
    unit: int
    pdu: bytes
    consumed: int  # bytes of the buffer this frame occupied
    tid: int = 0


def encode(kind: FramerKind, unit: int, pdu: bytes, tid: int = 0) -> bytes:
    if kind == "rtu":
        body = bytes([unit]) + pdu
        return body + crc16(body).to_bytes(2, "little")
    if kind == "ascii":
        body = bytes([unit]) + pdu
        return b":" + (body + bytes([lrc(body)])).hex().upper().encode() + b"\r\n"
    return tid.to_bytes(2, "big") + b"\x00\x00" + (len(pdu) + 1).to_bytes(2, "big") + bytes([unit]) + pdu


def decode(kind: FramerKind, buf: bytes, *, request: bool = False) -> Frame | None:
    """One frame from the start of ``buf``; None if incomplete; FrameError if it cannot be one."""
    pdu_length = request_pdu_length if request else response_pdu_length
    if kind == "rtu":
        if len(buf) < 2:
            return None
        n = pdu_length(buf[1:])
        if n is None or len(buf) < 1 + n + 2:
            return None
        body = buf[: 1 + n]
        if crc16(body).to_bytes(2, "little") != buf[1 + n : 3 + n]:
            raise FrameError("CRC error")
        return Frame(buf[0], body[1:], 3 + n)
    if kind == "ascii":
        if not buf:
            return None
        if buf[:1] != b":":
            raise FrameError("garbage before ':'")
        end = buf.find(b"\n")
        if end < 0:
            if len(buf) > 513:
                raise FrameError("ASCII frame longer than 513 characters")
            return None
        text = buf[1:end].rstrip(b"\r")
        try:
            raw = bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise FrameError("non-hex characters in an ASCII frame") from None
        if len(raw) < 3 or lrc(raw[:-1]) != raw[-1]:
            raise FrameError("LRC error")
        return Frame(raw[0], raw[1:-1], end + 1)
    if len(buf) < 7:
        return None
    length = int.from_bytes(buf[4:6], "big")
    if buf[2:4] != b"\x00\x00" or not 2 <= length <= 254:
        raise FrameError("not a Modbus TCP header")
    if len(buf) < 6 + length:
        return None
    return Frame(buf[6], bytes(buf[7 : 6 + length]), 6 + length, int.from_bytes(buf[0:2], "big"))
