"""Iridium SBD (9602/9603) AT codec: SBDWB checksum, +SBDIX, SBDRB, +CSQ, SBDRING.

Pure functions, no I/O. Parsers return :class:`AtParseError` values for bad modem output,
never raise. Facts and sources: shared/notes/protocols.md §1a (Iridium ISU AT Command
Reference §10.14, RockBLOCK reference pages).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

MAX_MO = 340  # 9602/9603 MO buffer
MAX_MT = 270
MAX_LINE = 512  # no response line is longer; more is garbage
RING = "SBDRING"


@dataclass(frozen=True, slots=True)
class AtParseError:
    reason: str
    raw: bytes


def checksum(payload: bytes) -> bytes:
    """Low 16 bits of the plain byte sum, high byte first (SBDWB and SBDRB)."""
    return (sum(payload) & 0xFFFF).to_bytes(2, "big")


def sbdwb_command(length: int) -> bytes:
    """``AT+SBDWB=<n>``: n is the payload length **without** the 2 checksum bytes."""
    if not 1 <= length <= MAX_MO:
        raise ValueError(f"SBD MO payload must be 1..{MAX_MO} bytes, got {length}")
    return b"AT+SBDWB=%d\r" % length


def sbdwb_body(payload: bytes) -> bytes:
    """What to stream after ``READY``: the payload then its checksum."""
    return payload + checksum(payload)


class WriteResult(enum.IntEnum):
    """The digit after an SBDWB transfer (RockBLOCK sbdwb reference)."""

    OK = 0
    TIMEOUT = 1  # fewer bytes than promised within 60 s; NOT followed by OK
    BAD_CHECKSUM = 2
    BAD_SIZE = 3


def parse_write_result(line: str) -> WriteResult | AtParseError:
    text = line.strip()
    if len(text) == 1 and text in "0123":
        return WriteResult(int(text))
    return AtParseError("not an SBDWB result digit", line.encode("utf-8", "replace")[:80])


MO_STATUS: dict[int, str] = {
    0: "ok",
    1: "ok, MT message too big for the buffer",
    2: "ok, location update not accepted",
    3: "ok (reserved)",
    4: "ok (reserved)",
    10: "call did not complete in the allowed time",
    11: "MO message queue at the gateway is full",
    12: "MO message has too many segments",
    13: "session did not complete",
    14: "invalid segment size",
    15: "access is denied",
    16: "transceiver locked (SBD service)",
    17: "gateway not responding (local session timeout)",
    18: "connection lost (RF drop)",
    19: "link failure (protocol error)",
    32: "no network service",
    35: "transceiver busy",
}


@dataclass(frozen=True, slots=True)
class SessionResult:
    """``+SBDIX: <MO status>, <MOMSN>, <MT status>, <MTMSN>, <MT length>, <MT queued>``."""

    mo_status: int
    momsn: int
    mt_status: int  # 0 none, 1 received, 2 mailbox check error
    mtmsn: int
    mt_length: int
    mt_queued: int

    @property
    def mo_ok(self) -> bool:
        return 0 <= self.mo_status <= 4

    @property
    def mt_received(self) -> bool:
        return self.mt_status == 1

    @property
    def reason(self) -> str:
        return MO_STATUS.get(self.mo_status, f"failure (status {self.mo_status})")


_SBDIX = re.compile(r"^\+SBDIXA?:\s*(\d{1,3}),\s*(\d{1,5}),\s*(\d),\s*(\d{1,5}),\s*(\d{1,3}),\s*(\d{1,3})$")


def parse_sbdix(line: str) -> SessionResult | AtParseError:
    m = _SBDIX.match(line.strip())
    if m is None:
        return AtParseError("not a +SBDIX result", line.encode("utf-8", "replace")[:80])
    mo, momsn, mt, mtmsn, mt_len, queued = (int(g) for g in m.groups())
    if momsn > 0xFFFF or mtmsn > 0xFFFF or mt > 2 or mt_len > MAX_MT:
        return AtParseError("+SBDIX field out of range", line.encode("utf-8", "replace")[:80])
    return SessionResult(mo, momsn, mt, mtmsn, mt_len, queued)


def sbdrb_size(head: bytes, announced: int | None = None) -> int | AtParseError | None:
    """Total bytes of an SBDRB reply once its 2-byte length is in, else None.

    A length no 9602/9603 sends (over MAX_MT), or other than the MT length the session
    ``announced``, is an AtParseError at once: the reader must never wait for bytes that will
    not come (FFFF asks for 65 539, more than the bounded ResponseBuffer can hold).
    """
    if len(head) < 2:
        return None
    length = int.from_bytes(head[:2], "big")
    if length > MAX_MT:
        return AtParseError(f"SBDRB length {length} exceeds {MAX_MT}", bytes(head[:2]))
    if announced is not None and length != announced:
        return AtParseError(f"SBDRB length {length}, the session announced {announced}", bytes(head[:2]))
    return 2 + length + 2


def parse_sbdrb(data: bytes) -> bytes | AtParseError:
    """``{u16 length}{payload}{u16 checksum}`` -> payload."""
    size = sbdrb_size(data)
    if isinstance(size, AtParseError):
        return size
    if size is None or len(data) != size:
        return AtParseError("SBDRB reply length does not match its length field", data[:80])
    length = size - 4
    payload = data[2 : 2 + length]
    if checksum(payload) != data[2 + length :]:
        return AtParseError("SBDRB checksum mismatch", data[:80])
    return payload


_CSQ = re.compile(r"^\+CSQF?:\s*([0-5])$")


def parse_csq(line: str) -> int | AtParseError:
    """Signal bars 0..5 from ``+CSQ:<n>`` or ``+CSQF:<n>``."""
    m = _CSQ.match(line.strip())
    if m is None:
        return AtParseError("not a +CSQ reply", line.encode("utf-8", "replace")[:80])
    return int(m.group(1))


_IMEI = re.compile(r"^(?:\+CGSN:\s*)?(\d{15})$")


def parse_imei(lines: list[str]) -> str | AtParseError:
    """The 15-digit IMEI from ``AT+CGSN``'s reply (bare, as the 9602/9603 answer, or ``+CGSN:`` prefixed)."""
    for line in lines:
        m = _IMEI.match(line.strip())
        if m is not None:
            return m.group(1)
    return AtParseError("no IMEI in the AT+CGSN reply", " ".join(lines).encode("utf-8", "replace")[:80])


def is_ring(line: str) -> bool:
    return line.strip() == RING


class ResponseBuffer:
    """Bytes from the modem, taken out either as lines (CR and/or LF) or as exact binary runs.

    SBDRB replies are binary and may contain CR/LF bytes, so the reader decides which
    to take next. The buffer is bounded: past MAX_LINE + MAX_MT bytes the oldest are dropped.
    """

    LIMIT = MAX_LINE + MAX_MT + 4

    def __init__(self) -> None:
        self._buf = bytearray()
        self.dropped = 0
        # Whether bytes are new to the reader is told by numbers, not by an event cleared before a wait
        # (drivers/ports/stream.py Transport.wait_data has the same contract): feeds so far, and the
        # feeds the reader had when it last looked (next_line, skip_blank, take) or was told.
        self.arrivals = 0
        self.told = 0

    @property
    def unseen(self) -> bool:
        """Bytes came since the reader last looked."""
        return self.arrivals != self.told

    def __len__(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        self._buf += data
        self.arrivals += 1
        excess = len(self._buf) - self.LIMIT
        if excess > 0:
            del self._buf[:excess]
            self.dropped += excess

    def next_line(self) -> str | None:
        """The next non-blank line, or None if no complete line is buffered."""
        self.told = self.arrivals
        while True:
            ends = [i for i in (self._buf.find(b"\r"), self._buf.find(b"\n")) if i >= 0]
            if not ends:
                return None
            cut = min(ends)
            raw = bytes(self._buf[:cut])
            del self._buf[: cut + 1]
            text = raw.decode("ascii", errors="replace").strip()
            if text:
                return text

    def skip_blank(self) -> None:
        """Drop leading CR/LF (a binary reply follows the command's line end)."""
        self.told = self.arrivals
        while self._buf and self._buf[0] in (0x0D, 0x0A):
            del self._buf[:1]

    def take(self, n: int) -> bytes | None:
        """Exactly ``n`` bytes, or None if fewer are buffered."""
        self.told = self.arrivals
        if len(self._buf) < n:
            return None
        chunk = bytes(self._buf[:n])
        del self._buf[:n]
        return chunk
