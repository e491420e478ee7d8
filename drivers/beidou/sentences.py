"""BeiDou RDSS short-message codec: 2.1 text, BDS-3 text and 4.0 binary framing.

Table-driven: each module->host sentence name maps to a builder that turns its fields into
a typed value. Nothing here raises on bad bytes from the module: :meth:`StreamDecoder.feed`
and :func:`parse_text` return :class:`ParseError` values (fuzzed in tests/unit). Field
layouts and their sources: docs/satellite.md §2 and shared/notes/protocols.md §1b.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import reduce

MAX_TEXT_LINE = 4096  # a BDS-3 regional message (14,000 bits) is 3,500 hex characters
MAX_FRAME = 2048  # 4.0 binary frames are far smaller; longer length fields are garbage
MIXED_MARKER = 0xA4  # first byte of a mixed-mode (混发) payload


class Dialect(enum.StrEnum):
    V21 = "2.1"  # NMEA-style text: $CCICA/$BDICI, $CCTXA/$BDFKI/$BDTXR
    BDS3 = "bds3"  # BeiDou-3 text: $CCICR/$BDICP, $CCTCQ/$BDFKI/$BDTCI
    V40 = "4.0"  # binary: $ICJC/$ICXX, $TXSQ/$FKXX/$TXXX


class Encoding(enum.StrEnum):
    CODE = "code"  # payload as hex text (2.1 type 1, BDS-3 type 2)
    MIXED = "mixed"  # 0xA4 marker + payload (2.1 type 2, BDS-3 type 3)


class Outcome(enum.Enum):
    ACCEPTED = "accepted"  # the module transmitted (not an end-to-end ack)
    WAIT = "wait"  # service interval not reached: resend after wait_s
    REFUSED = "refused"


# --------------------------------------------------------------------------- parsed values


@dataclass(frozen=True, slots=True)
class ParseError:
    reason: str
    raw: bytes


@dataclass(frozen=True, slots=True)
class CardInfo:
    dialect: Dialect
    user_id: int  # 0 = no card
    interval_s: int  # service frequency (服务频度)
    level: int  # communication level (通信等级); 0 = unknown
    encrypted: bool

    @property
    def present(self) -> bool:
        return self.user_id != 0


@dataclass(frozen=True, slots=True)
class Feedback:
    dialect: Dialect
    command: str  # TXA, TCQ, TXSQ, DWA ...
    outcome: Outcome
    wait_s: int
    reason: str


@dataclass(frozen=True, slots=True)
class Incoming:
    """A message received over the air ($BDTXR / $BDTCI / $TXXX)."""

    dialect: Dialect
    sender: int
    payload: bytes
    encoding: str  # "code", "mixed", "chinese" (GB2312 bytes), or the raw type code


@dataclass(frozen=True, slots=True)
class Unsolicited:
    """A periodic sentence the link ignores ($BDBSI, $BDPWI, $GNRMC...)."""

    name: str


@dataclass(frozen=True, slots=True)
class Unknown:
    """A well-formed sentence or frame this codec has no builder for."""

    name: str
    fields: tuple[str, ...]


Parsed = CardInfo | Feedback | Incoming | Unsolicited | Unknown | ParseError


class _FieldError(Exception):
    pass


# --------------------------------------------------------------------------- helpers


def xor(data: bytes) -> int:
    return reduce(lambda a, b: a ^ b, data, 0)


# Ids, levels and senders have a handful of digits. A longer run is garbage, and int() refuses
# text past 4 300 digits with ValueError (CPython's int_max_str_digits), which must not escape.
MAX_DIGITS = 18


def _digits(text: str, what: str) -> str:
    if not text.isdigit() or not text.isascii():
        raise _FieldError(f"{what} is not a number: {text[:40]!r}")
    return text


def _int(text: str, what: str) -> int:
    if len(_digits(text, what)) > MAX_DIGITS:
        raise _FieldError(f"{what} has {len(text)} digits, more than {MAX_DIGITS}")
    return int(text)


MAX_WAIT_S = 3600  # no card waits or serves slower than this; a larger figure is taken as this


def _seconds(text: str, what: str) -> int:
    """A wait or service interval from the module, capped: a garbled figure must not park the link for years."""
    significant = _digits(text, what).lstrip("0")
    if len(significant) > len(str(MAX_WAIT_S)):  # any number of digits: larger than the cap
        return MAX_WAIT_S
    return min(int(significant or "0"), MAX_WAIT_S)


def _hex(text: str, what: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise _FieldError(f"{what} is not hex: {text[:40]!r}") from None


def _mmss(text: str) -> int:
    if len(text) != 4:
        raise _FieldError(f"wait time is not mmss: {text!r}")
    return _int(text[:2], "minutes") * 60 + _int(text[2:], "seconds")


def _payload(content: str, encoding: str) -> bytes:
    if encoding == "chinese":
        return content.encode("gb18030", errors="replace")
    raw = _hex(content, "content")
    if encoding == "mixed" and raw[:1] == bytes([MIXED_MARKER]):
        return raw[1:]
    return raw


def _need(fields: Sequence[str], n: int, name: str) -> None:
    if len(fields) < n:
        raise _FieldError(f"{name} needs {n} fields, got {len(fields)}")


# --------------------------------------------------------------------------- text builders


def _bdici(f: Sequence[str]) -> CardInfo:
    # user id, serial, broadcast id, user type, service frequency s, level, E|N, subordinates
    _need(f, 7, "BDICI")
    user, interval, level = _int(f[0], "user id"), _seconds(f[4], "frequency"), _int(f[5], "level")
    return CardInfo(Dialect.V21, user, interval, level, f[6] == "E")


def _bdicp(f: Sequence[str]) -> CardInfo:
    # Only the card id (1st), frequency (14th) and level (15th, 0 = level 5) are known
    # from public drivers (code search); the rest of the 23 fields is not relied upon.
    _need(f, 15, "BDICP")
    level = _int(f[14], "level")
    return CardInfo(Dialect.BDS3, _int(f[0], "user id"), _seconds(f[13], "frequency"), level or 5, False)


_BDS3_REASONS = {
    "0": "ok",
    "1": "frequency not reached",
    "2": "suppressed",
    "3": "silent",
    "4": "power",
    "5": "no card",
    "6": "no permission",
}


def _looks_like_time(text: str) -> bool:
    """hhmmss or hhmmss.ss: how a BDS-3 $BDFKI begins (a 2.1 one begins with a command name)."""
    whole, _, frac = text.partition(".")
    return len(whole) == 6 and whole.isdigit() and whole.isascii() and (not frac or frac.isdigit())


def _bdfki(f: Sequence[str], dialect: Dialect | None) -> Feedback:
    """By dialect, never by field count: BDS-3 modules add fields (a sixth one seen in the field) and
    a 2.1 one may too. Without a dialect (before the probe) the first field tells: a time is BDS-3."""
    if dialect is None:
        dialect = Dialect.BDS3 if f and _looks_like_time(f[0]) else Dialect.V21
    try:
        return _bdfki_bds3(f) if dialect is Dialect.BDS3 else _bdfki_v21(f)
    except _FieldError as exc:
        raise _FieldError(f"read as the {dialect} dialect: {exc}") from None


def _bdfki_bds3(f: Sequence[str]) -> Feedback:
    # hhmmss, TCQ, Y|N, reason, remaining[, further fields: not relied upon]
    _need(f, 5, "BDFKI")
    reason = _BDS3_REASONS.get(f[3], f"reason {f[3]}")
    wait = _seconds(f[4], "remaining") if f[4] else 0
    if f[2] == "Y" and f[3] in ("0", ""):
        return Feedback(Dialect.BDS3, f[1], Outcome.ACCEPTED, wait, "ok")
    outcome = Outcome.WAIT if f[3] == "1" else Outcome.REFUSED
    return Feedback(Dialect.BDS3, f[1], outcome, wait, reason)


def _bdfki_v21(f: Sequence[str]) -> Feedback:
    # command, executed Y|N, frequency ok Y|N, suppression 0|1, wait mmss
    _need(f, 5, "BDFKI")
    wait = _mmss(f[4])
    if (f[1], f[2], f[3]) == ("Y", "Y", "0"):
        return Feedback(Dialect.V21, f[0], Outcome.ACCEPTED, wait, "ok")
    if f[2] == "N":
        return Feedback(Dialect.V21, f[0], Outcome.WAIT, wait, "frequency not reached")
    reason = "suppressed" if f[3] == "1" else "not executed"
    return Feedback(Dialect.V21, f[0], Outcome.REFUSED, wait, reason)


_TXR_TYPES = {"0": "chinese", "1": "code", "2": "mixed"}
_TCQ_TYPES = {"1": "chinese", "2": "code", "3": "mixed"}


def _bdtxr(f: Sequence[str]) -> Incoming:
    # category, sender, type 0|1|2, time (queries only), content
    _need(f, 5, "BDTXR")
    encoding = _TXR_TYPES.get(f[2], f[2])
    return Incoming(Dialect.V21, _int(f[1], "sender"), _payload(",".join(f[4:]), encoding), encoding)


def _bdtci(f: Sequence[str]) -> Incoming:
    # sender, receiver, frequency point, hhmmss, type, (flag), content
    _need(f, 7, "BDTCI")
    encoding = _TCQ_TYPES.get(f[4], f[4])
    return Incoming(Dialect.BDS3, _int(f[0], "sender"), _payload(",".join(f[6:]), encoding), encoding)


# Sentences whose layout depends on the dialect get it (None: not known yet, e.g. while probing).
_TEXT_TABLE: dict[str, Callable[[Sequence[str], Dialect | None], Parsed]] = {
    "ICI": lambda f, _d: _bdici(f),
    "ICP": lambda f, _d: _bdicp(f),
    "FKI": _bdfki,
    "TXR": lambda f, _d: _bdtxr(f),
    "TCI": lambda f, _d: _bdtci(f),
}
# Periodic status the link does not act on (beam power, PWI beams, positions, time).
_IGNORED = frozenset({"BSI", "PWI", "RMC", "GGA", "GSA", "GSV", "GLL", "ZDA", "VTG", "TXT", "ZTI", "SNR"})
_TEXT_HEAD = re.compile(rb"^\$([A-Z]{2})([A-Z]{3})(?:,|\*)")


def parse_text(line: bytes, dialect: Dialect | None = None) -> Parsed:
    """One text sentence (``$....*hh``, CR LF optional), read as ``dialect`` speaks it (None: as the
    sentence itself suggests). Never raises."""
    raw = line.rstrip(b"\r\n")
    head = _TEXT_HEAD.match(raw)
    star = raw.rfind(b"*")
    if head is None or star < 0 or len(raw) - star != 3:
        return ParseError("not a $TTSSS,...*hh sentence", raw[:80])
    try:
        wanted = int(raw[star + 1 :], 16)
    except ValueError:
        return ParseError("checksum is not hex", raw[:80])
    body = raw[1:star]
    if xor(body) != wanted:
        return ParseError(f"checksum {xor(body):02X} != {wanted:02X}", raw[:80])
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        text = body.decode("gb18030", errors="replace")  # 汉字 content in $BDTXR
    talker, name = head.group(1).decode(), head.group(2).decode()
    fields = tuple(text.split(",")[1:])
    if name in _IGNORED:
        return Unsolicited(talker + name)
    builder = _TEXT_TABLE.get(name) if talker != "CC" else None
    if builder is None:
        return Unknown(talker + name, fields)
    try:
        return builder(fields, dialect)
    except _FieldError as exc:
        return ParseError(f"{talker}{name}: {exc}", raw[:80])


def encode_text(name: str, fields: Sequence[str]) -> bytes:
    """``$<name>,<f1>,...*HH\\r\\n``; ``name`` includes the talker, e.g. ``CCTXA``."""
    body = ",".join([name, *fields]).encode("ascii")
    return b"$" + body + b"*%02X\r\n" % xor(body)


# --------------------------------------------------------------------------- 4.0 binary frames


def encode_frame(command: str, address: int, content: bytes) -> bytes:
    """``$CMD`` | u16 total length | u24 user address | content | XOR of all previous bytes."""
    head = b"$" + command.encode("ascii")
    length = len(head) + 2 + 3 + len(content) + 1
    if len(head) != 5 or not 0 <= address < 1 << 24 or length > MAX_FRAME:
        raise ValueError(f"bad 4.0 frame: {command!r}, address {address}, {len(content)} bytes")
    frame = head + length.to_bytes(2, "big") + address.to_bytes(3, "big") + content
    return frame + bytes([xor(frame)])


_FKXX_FLAGS = {
    0: "ok",
    1: "failed",
    2: "signal not locked",
    3: "power low",
    4: "frequency not reached",
    5: "encryption error",
    6: "CRC error",
}


def _fkxx(content: bytes) -> Feedback:
    # flag (1) + additional info (4). For "frequency not reached" the additional info is
    # taken as the seconds still to wait (unverified; the link also enforces the card interval).
    if len(content) < 1:
        raise _FieldError("FKXX without flag")
    flag, extra = content[0], content[1:5]
    reason = _FKXX_FLAGS.get(flag, f"flag {flag}")
    if flag == 0:
        return Feedback(Dialect.V40, extra.decode("ascii", "replace"), Outcome.ACCEPTED, 0, reason)
    wait = int.from_bytes(extra, "big") if flag == 4 and len(extra) == 4 else 0
    outcome = Outcome.WAIT if flag == 4 else Outcome.REFUSED
    return Feedback(Dialect.V40, "TXSQ", outcome, min(wait, MAX_WAIT_S), reason)


def _icxx(address: int, content: bytes) -> CardInfo:
    # frame no (1), broadcast id (3), user features (1), service frequency s (2), level (1),
    # encryption flag (1), subordinate users (2)
    if len(content) < 9:
        raise _FieldError(f"ICXX content too short ({len(content)})")
    interval = int.from_bytes(content[5:7], "big")
    return CardInfo(Dialect.V40, address, interval, content[7] & 0x0F, content[8] != 0)


def _txxx(content: bytes) -> Incoming:
    # category (1), sender (3), time hh mm (2), length in bits (2), payload, CRC flag (1)
    if len(content) < 9:
        raise _FieldError(f"TXXX content too short ({len(content)})")
    sender = int.from_bytes(content[1:4], "big") & 0x1FFFFF
    nbytes = (int.from_bytes(content[6:8], "big") + 7) // 8
    payload = content[8 : 8 + nbytes]
    if len(payload) != nbytes:
        raise _FieldError(f"TXXX declares {nbytes} bytes, carries {len(payload)}")
    if payload[:1] == bytes([MIXED_MARKER]):
        return Incoming(Dialect.V40, sender, payload[1:], "mixed")
    return Incoming(Dialect.V40, sender, payload, "code")


_BINARY_NAMES = frozenset(
    {b"TXSQ", b"TXXX", b"FKXX", b"ICJC", b"ICXX", b"XTZJ", b"ZJXX"}
    | {b"DWSQ", b"DWXX", b"SJSC", b"SJXX", b"GLJC"}
)
_MIN_FRAME = 11  # $CMD + len + address + checksum


def parse_frame(frame: bytes) -> Parsed:
    """One complete 4.0 binary frame. Never raises."""
    if len(frame) < _MIN_FRAME or frame[1:5] not in _BINARY_NAMES:
        return ParseError("not a 4.0 frame", frame[:80])
    if int.from_bytes(frame[5:7], "big") != len(frame):
        return ParseError("length field does not match", frame[:80])
    if xor(frame[:-1]) != frame[-1]:
        return ParseError(f"checksum {xor(frame[:-1]):02X} != {frame[-1]:02X}", frame[:80])
    name = frame[1:5].decode("ascii")
    address = int.from_bytes(frame[7:10], "big") & 0x1FFFFF
    content = frame[10:-1]
    try:
        if name == "FKXX":
            return _fkxx(content)
        if name == "ICXX":
            return _icxx(address, content)
        if name == "TXXX":
            return _txxx(content)
    except _FieldError as exc:
        return ParseError(f"{name}: {exc}", frame[:80])
    if name in ("ZJXX", "DWXX", "SJXX"):
        return Unsolicited(name)
    return Unknown(name, (str(address), content.hex()))


# --------------------------------------------------------------------------- host -> module


def card_query(dialect: Dialect) -> bytes:
    if dialect is Dialect.V21:
        return encode_text("CCICA", ["0", "00"])
    if dialect is Dialect.BDS3:
        return encode_text("CCICR", ["0", "00"])
    return encode_frame("ICJC", 0, b"\x00")


# The 4.0 ``$TXSQ`` information category byte. Public frames disagree and modules differ: a user card's
# plain (code) message to another card is published with 0x46, a command receiver's with 0x42 (both in
# the cnblogs chen1880 11422145 capture), and code in the wild sends 0x46 for code and mixed alike. So
# it is a per-link setting (``info_category``) whose default is 0x46. The text dialects have no such
# byte: 2.1 ``$CCTXA`` sends "1" (normal, not express), BDS-3 ``$CCTCQ`` has no category at all.
DEFAULT_TXSQ_CATEGORY = 0x46
DEFAULT_CATEGORY: dict[Dialect, int | None] = {
    Dialect.V40: DEFAULT_TXSQ_CATEGORY, Dialect.V21: None, Dialect.BDS3: None}


def send_command(
    dialect: Dialect, own: int, dest: int, payload: bytes, encoding: Encoding, *, freq_point: int = 2,
    category: int | None = None,
) -> bytes:
    """The send sentence/frame for ``payload`` in ``dialect``; ``category`` is the 4.0 information
    category byte (None: the dialect's default, :data:`DEFAULT_CATEGORY`; ignored by the text dialects)."""
    data = (bytes([MIXED_MARKER]) + payload) if encoding is Encoding.MIXED else payload
    if dialect is Dialect.V21:
        kind = "2" if encoding is Encoding.MIXED else "1"
        return encode_text("CCTXA", [f"{dest:07d}", "1", kind, data.hex().upper()])
    if dialect is Dialect.BDS3:
        kind = "3" if encoding is Encoding.MIXED else "2"
        # dest, frequency point, inbound ack 1 = none, type, content, repeat 0 = once
        return encode_text("CCTCQ", [f"{dest:07d}", str(freq_point), "1", kind, data.hex().upper(), "0"])
    category = DEFAULT_TXSQ_CATEGORY if category is None else category
    if not 0 <= category <= 0xFF:
        raise ValueError(f"information category {category} is not a byte")
    bits = (8 * len(data)).to_bytes(2, "big")
    content = bytes([category]) + dest.to_bytes(3, "big") + bits + b"\x00" + data  # ack flag 0
    return encode_frame("TXSQ", own, content)


# --------------------------------------------------------------------------- stream


class StreamDecoder:
    """Splits the serial byte stream into sentences and frames; buffer bounded by MAX_TEXT_LINE.

    Text and binary are told apart by what follows ``$``: a known 4-letter binary command
    name and a plausible length field make a frame, anything else is read up to LF.
    """

    def __init__(self, dialect: Dialect | None = None) -> None:
        self._buf = bytearray()
        self.dialect = dialect  # the module's, once probed: sentences are read as it speaks them

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> Iterator[Parsed]:
        self._buf += data
        while True:
            item = self._next()
            if item is None:
                break
            yield item
        if len(self._buf) > MAX_TEXT_LINE:  # a line that never ends: drop it, say so
            dropped = bytes(self._buf[:80])
            self._buf.clear()
            yield ParseError("line longer than the limit", dropped)

    def _next(self) -> Parsed | None:
        buf = self._buf
        start = buf.find(b"$")
        if start < 0:  # keep junk until the next '$' so one run of noise is one error
            return None
        if start > 0:
            junk = bytes(buf[:start]).strip(b"\r\n\x00 ")
            del buf[:start]
            if junk:
                return ParseError("bytes outside any sentence", junk[:80])
        if len(buf) < 5:
            return None
        if bytes(buf[1:5]) in _BINARY_NAMES:
            if len(buf) < 7:
                return None
            length = int.from_bytes(buf[5:7], "big")
            if _MIN_FRAME <= length <= MAX_FRAME:
                if len(buf) < length:
                    return None
                frame = bytes(buf[:length])
                if xor(frame[:-1]) == frame[-1]:
                    del buf[:length]
                    return parse_frame(frame)  # may still be a ParseError for its content
            bad = bytes(buf[:40])
            del buf[:1]  # not a frame after all: resync on the next '$'
            return ParseError("bad 4.0 frame", bad)
        end = buf.find(b"\n")
        nxt = buf.find(b"$", 1)
        if 0 < nxt < (end if end >= 0 else len(buf)):  # a new sentence began before LF
            line = bytes(buf[:nxt])
            del buf[:nxt]
            return ParseError("sentence cut short", line[:80])
        if end < 0:
            return None
        line = bytes(buf[: end + 1])
        del buf[: end + 1]
        if len(line) > MAX_TEXT_LINE:  # the same verdict however the line was split into reads
            return ParseError("line longer than the limit", line[:80])
        return parse_text(line, self.dialect)
