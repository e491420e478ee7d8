"""Compact binary codec for the satellite links (BeiDou RDSS, Iridium SBD).

A level-3 BeiDou card carries 77 data bytes per message and one message per service
interval, so nothing here is self-describing: points travel as small integer aliases
agreed in config, numbers as decimal mantissas (varint, zig-zag, delta to the previous
sample of the same point), times as deltas to a base time, journal seqs as deltas.
The byte layout is specified in docs/satellite.md; keep the two in step.

Everything is a pure function of its inputs. ``decode`` raises only
:class:`CompactDecodeError`, whatever bytes it is given (fuzzed in
tests/unit/test_compact_fuzz.py); encoders raise :class:`CompactEncodeError` for input
the format cannot carry (a point without an alias, a reading without a journal seq...).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from gateway.shared import FLOAT32_MAX, Quality, Reading, Value, float32_decimal

VERSION = 1  # every kind but READINGS is written as version 1 (and read under 1 or 2)
READINGS_VERSION = 2  # READINGS: shared time step, time code in the head byte (docs/satellite.md 1.2)
VERSIONS = (1, 2)  # what decode reads
BEIDOU_LEVEL3_BYTES = 77  # (628 bits - 8-bit 0xA4 mixed-mode marker) / 8, see protocols.md 1b
# Truncated HMAC-SHA256 that ends every ACK (docs/satellite.md 1.4): 96 bits, above RFC 2104's
# 80-bit floor, while an Ed25519 signature (64 bytes) would leave a 77-byte message room for one range.
ACK_MAC_BYTES = 12
_ACK_MAC_TAG = b"fieldgate/compact-ack/v1\x00"  # domain separation: this key signs nothing else

_U32 = 1 << 32
_U63 = 1 << 63
_MAX_VARINT_BYTES = 10  # enough for 64 bits; longer runs are hostile input


class CompactError(Exception):
    """Base of the codec's errors."""


class CompactDecodeError(CompactError):
    """The bytes are not a valid compact message (truncated, unknown kind, bad field...)."""


class CompactEncodeError(CompactError, ValueError):
    """The input cannot be carried by the compact format (or does not fit the size asked)."""


class MessageKind(enum.IntEnum):
    """Low nibble of the first byte."""

    ALARM = 1
    READINGS = 2
    ALARM_CANCEL = 3
    ACK = 4
    COMMAND = 5
    REPLY = 6


# Wire order of qualities: fixed here, independent of the enum's declaration order.
_QUALITIES: tuple[Quality, ...] = (
    Quality.GOOD,
    Quality.UNCERTAIN,
    Quality.COMM_FAIL,
    Quality.BAD_FRAME,
    Quality.DEVICE_ERROR,
    Quality.OUT_OF_RANGE,
    Quality.STALE,
)
_QUALITY_INDEX = {q: i for i, q in enumerate(_QUALITIES)}


class _Form(enum.IntEnum):
    """How a value is written (docs/satellite.md, "value forms")."""

    FALSE = 0
    TRUE = 1
    INT = 2
    DEC0 = 3  # float, mantissa * 10**0 ... DEC4: mantissa * 10**-4
    DEC1 = 4
    DEC2 = 5
    DEC3 = 6
    DEC4 = 7
    DELTA = 8  # zig-zag mantissa delta to the previous value of the same point, same form
    REPEAT = 9  # identical to the previous value of the same point; no bytes
    F64 = 10  # IEEE 754 binary64, big-endian
    STR = 11  # varint length + UTF-8
    F32 = 12  # IEEE 754 binary32, big-endian; the value is float32_decimal() of it (codes 32/33)


_ESCAPE = "escape"  # a code table entry: the next byte is quality index << 4 | form


@dataclass(frozen=True, slots=True)
class _CodeTable:
    """Value codes of one format version: code -> (form or None for "no value", quality) or the escape.

    A (form, quality) pair without a code of its own goes as the escape code and one more byte."""

    entries: tuple[tuple[_Form | None, Quality] | str | None, ...]  # None: reserved (decode error)
    escape_no_value: int | None = None  # the form nibble that says "no value" in the escape byte, if any
    by_pair: Mapping[tuple[_Form | None, Quality], int] = field(init=False)
    escape: int = field(init=False)

    def __post_init__(self) -> None:
        pairs = {e: i for i, e in enumerate(self.entries) if isinstance(e, tuple)}
        object.__setattr__(self, "by_pair", pairs)
        object.__setattr__(self, "escape", self.entries.index(_ESCAPE))

    def write(self, form: _Form | None, quality: Quality) -> bytes:
        code = self.by_pair.get((form, quality))
        if code is not None:
            return bytes([code])
        nibble = self.escape_no_value if form is None else int(form)
        if nibble is None:
            raise CompactEncodeError(f"no code for a missing value of quality {quality.value}")
        return bytes([self.escape, _QUALITY_INDEX[quality] << 4 | nibble])

    def read(self, r: _Reader, code: int) -> tuple[_Form | None, Quality]:
        entry = self.entries[code] if code < len(self.entries) else None
        if isinstance(entry, tuple):
            return entry
        if entry is None:
            raise CompactDecodeError(f"reserved value code {code}")
        b = r.byte()
        qi, f = b >> 4, b & 0x0F
        if qi < len(_QUALITIES) and f == self.escape_no_value:
            return None, _QUALITIES[qi]
        if qi >= len(_QUALITIES) or f >= len(_Form):
            raise CompactDecodeError(f"bad escape byte 0x{b:02x}")
        return _Form(f), _QUALITIES[qi]


_GOOD, _UNCERTAIN = Quality.GOOD, Quality.UNCERTAIN
_NO_VALUE: tuple[tuple[_Form | None, Quality], ...] = tuple((None, q) for q in _QUALITIES)
# Version 1 (6-bit codes): forms 0..11 as form * 2 + (0 GOOD, 1 UNCERTAIN), no value 24..30, escape 31,
# F32 32/33 (added after forms 0..11 had their codes; 34..63 reserved).
_CODES_V1 = _CodeTable((
    *((f, q) for f in list(_Form)[:12] for q in (_GOOD, _UNCERTAIN)), *_NO_VALUE, _ESCAPE,
    (_Form.F32, _GOOD), (_Form.F32, _UNCERTAIN)))
# Version 2 (4-bit codes: the head byte also carries a 3-bit time code): every form GOOD, no value with the
# bus's two failure qualities, escape (its form nibble 15 = no value, for any other quality).
_CODES_V2 = _CodeTable((*((f, _GOOD) for f in _Form), (None, Quality.COMM_FAIL), (None, Quality.BAD_FRAME),
                        _ESCAPE), escape_no_value=15)


class _TimeCode(enum.IntEnum):
    """Version 2 READINGS: bits 7..5 of a reading's head byte (docs/satellite.md 1.2). Codes 1..5: the
    previous reading of the same point in this message (else the previous reading) + code * step."""

    SAME = 0  # the previous reading's second (readings of one scan)
    EXPLICIT = 6  # a varint follows: svarint(delta) << 1 | delta counted in steps; delta from the previous reading
    HISTORICAL = 7  # the same, and the reading is historical


_MAX_STEPS = 5
# Time codes 1..5: (steps, seconds) after the previous reading of the same point. Codes for a step ± 1 s (a
# poll answered across a second boundary) were measured and not taken: 18.3 instead of 18.8 readings a message
# by exception with the poll phase steady (the scheduler keeps it), 17.1 instead of 16.4 with every poll on a
# second boundary (bench/RESULTS.md, issue 17).
_STEP_CODES: dict[int, tuple[int, int]] = {k: (k, 0) for k in range(1, _MAX_STEPS + 1)}
_CODE_OF_STEP = {v: k for k, v in _STEP_CODES.items()}


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where a READINGS head byte keeps what, per version."""

    version: int
    codes: _CodeTable
    next_seq: int  # flag bit: seq = previous + 1
    code_mask: int
    time_shift: int  # v1: bit 7 is SAME_TIME; v2: bits 7..5 are a _TimeCode


_LAYOUTS = {1: _Layout(1, _CODES_V1, 0x40, 0x3F, 7), 2: _Layout(2, _CODES_V2, 0x10, 0x0F, 5)}
_V1_SAME_TIME = 0x80


# --------------------------------------------------------------------------- data


@dataclass(frozen=True, slots=True)
class AliasTable:
    """Point aliases agreed in config between the gateway and the platform (alias -> point id)."""

    by_alias: Mapping[int, str]
    by_point: Mapping[str, int] = field(init=False)

    def __post_init__(self) -> None:
        by_point: dict[str, int] = {}
        for alias, point in self.by_alias.items():
            if not 0 <= alias < _U32:
                raise ValueError(f"point alias {alias} out of range 0..2**32-1")
            if point in by_point:
                raise ValueError(f"point {point!r} has two aliases ({by_point[point]} and {alias})")
            by_point[point] = alias
        object.__setattr__(self, "by_point", by_point)

    def point(self, alias: int) -> str:
        """The point id; an alias the table lacks decodes as ``"@<alias>"`` rather than losing data."""
        return self.by_alias.get(alias, f"@{alias}")


@dataclass(frozen=True, slots=True)
class CompactAlarm:
    """An alarm (or the cancel of one) as the satellite path carries it.

    ``rule`` is the alarm rule's alias (0 = unspecified), ``level`` its severity 0..255,
    ``value``/``quality`` the reading that raised or cleared it, ``time`` whole UTC
    seconds, ``seq`` its journal seq. ``ref_seq`` (cancels only) is the seq of the alarm
    being cancelled, if known. ``text`` is optional and is shortened to fit.
    """

    seq: int
    time: int
    point: str
    rule: int
    level: int
    value: Value
    quality: Quality = Quality.GOOD
    text: str = ""
    ref_seq: int | None = None


@dataclass(frozen=True, slots=True)
class CompactReply:
    """A gateway's answer to a satellite COMMAND (gateway -> platform).

    ``command_id`` is the header seq of the COMMAND it answers (not a journal seq),
    ``issuer`` the issuer number as the command named it (None: unreadable), both echoed
    unauthenticated for correlation. ``body`` is ``Reply.compact_body()``: status, reason,
    optional result; ``gateway.commands.reply.decode_compact_reply`` reads it.
    """

    command_id: int
    issuer: int | None
    body: bytes


@dataclass(frozen=True, slots=True)
class CompactMessage:
    """A decoded message. ``seqs`` are the journal seqs it carries: dedup by (gateway, seq).

    A REPLY carries no journal seq (``seqs`` is empty): its header seq is a command id,
    in ``reply.command_id``, and must never enter the (gateway, seq) dedup.
    """

    kind: MessageKind
    gateway: int
    base_time: int
    seqs: tuple[int, ...]
    readings: tuple[Reading, ...] = ()
    alarm: CompactAlarm | None = None
    acked: tuple[tuple[int, int], ...] = ()  # inclusive seq ranges (ACK)
    ack_mac: bytes = b""  # ACK: its MAC, unchecked by decode (ack_authentic checks it)
    command: bytes = b""  # opaque signed envelope (COMMAND); verified by the command plane
    reply: CompactReply | None = None  # REPLY
    version: int = VERSION  # the header's version nibble (READINGS: 1 from gateways not yet updated, else 2)


@dataclass(frozen=True, slots=True)
class PackedReadings:
    payload: bytes
    seqs: tuple[int, ...]  # seqs carried by payload, in order
    unencodable: tuple[int, ...]  # seqs skipped because the format cannot carry them (no alias...)


# --------------------------------------------------------------------------- primitives


def _zigzag(n: int) -> int:
    return 2 * n if n >= 0 else -2 * n - 1


def _unzigzag(z: int) -> int:
    return z >> 1 if not z & 1 else -((z + 1) >> 1)


def _put_varint(out: bytearray, n: int) -> None:
    if not 0 <= n < 1 << 64:
        raise CompactEncodeError(f"varint out of range: {n}")
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _varint_len(n: int) -> int:
    return max(1, (n.bit_length() + 6) // 7)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    @property
    def at_end(self) -> bool:
        return self._pos >= len(self._data)

    def byte(self) -> int:
        if self._pos >= len(self._data):
            raise CompactDecodeError(f"truncated at byte {self._pos}")
        b = self._data[self._pos]
        self._pos += 1
        return b

    def take(self, n: int) -> bytes:
        if n > len(self._data) - self._pos:
            raise CompactDecodeError(f"truncated: need {n} bytes at {self._pos}")
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def rest(self) -> bytes:
        chunk = self._data[self._pos :]
        self._pos = len(self._data)
        return chunk

    def varint(self) -> int:
        n = 0
        for i in range(_MAX_VARINT_BYTES):
            b = self.byte()
            n |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                if n >= 1 << 64:
                    raise CompactDecodeError("varint exceeds 64 bits")
                return n
        raise CompactDecodeError("varint longer than 10 bytes")

    def svarint(self) -> int:
        return _unzigzag(self.varint())


# --------------------------------------------------------------------------- values


@dataclass(slots=True)
class _Prev:
    """Per-point memory for DELTA/REPEAT, identical on both sides."""

    value: Value = None
    form: _Form | None = None  # INT or DECk of the last numeric value, else None
    mantissa: int = 0


def _same_value(a: Value, b: Value) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and isinstance(b, float):
        return struct.pack(">d", a) == struct.pack(">d", b)  # -0.0 vs 0.0, NaN payloads
    return a == b


def _decimal_value(form: _Form, mantissa: int) -> float:
    k = form - _Form.DEC0
    return float(mantissa) if k == 0 else mantissa / 10**k


def _as_decimal(v: float, min_k: int) -> tuple[_Form, int] | None:
    """Smallest exponent k >= min_k with mantissa / 10**k == v exactly, within int64."""
    if not math.isfinite(v) or abs(v) >= _U63 or (v == 0.0 and math.copysign(1.0, v) < 0):
        return None
    for k in range(min_k, 5):
        form = _Form(_Form.DEC0 + k)
        m = round(v * 10**k)
        if -_U63 <= m < _U63 and _decimal_value(form, m) == v:
            return form, m
    return None


def _is_float32_decimal(v: float) -> bool:
    """True if F32 carries ``v`` exactly: it is the shortest decimal of its own float32 (what the Modbus
    decoder gives for a float32 register), or an infinity. A double with more digits than a float32
    holds (131.27000427246094) is not: F32 would give back 131.27, a different value. Nor is NaN: F64
    keeps its payload bits."""
    if math.isinf(v):
        return True
    if math.isnan(v) or abs(v) > FLOAT32_MAX:
        return False
    back = float32_decimal(v)
    return back == v and math.copysign(1.0, back) == math.copysign(1.0, v)


def _write_value(value: Value, prev: _Prev) -> tuple[_Form, bytes]:
    """Choose the form for ``value`` and return it with its bytes; update ``prev``."""
    body = bytearray()
    numeric: tuple[_Form, int] | None = None
    if prev.value is not None and _same_value(value, prev.value):
        form = _Form.REPEAT
        numeric = (prev.form, prev.mantissa) if prev.form is not None else None
    elif isinstance(value, bool):
        form = _Form.TRUE if value else _Form.FALSE
    elif isinstance(value, int):
        if not -_U63 <= value < _U63:
            raise CompactEncodeError(f"integer {value} outside int64")
        numeric = (_Form.INT, value)
        form = _Form.INT
        if prev.form is _Form.INT:
            form = _Form.DELTA
    elif isinstance(value, float):
        dec = None
        if prev.form is not None and prev.form is not _Form.INT:
            same = _as_decimal(value, prev.form - _Form.DEC0)
            if same is not None and same[0] is prev.form:
                dec = same
        if dec is not None:
            numeric, form = dec, _Form.DELTA
        else:
            dec = _as_decimal(value, 0)
            if dec is not None:
                numeric, form = dec, dec[0]
            elif _is_float32_decimal(value):  # e.g. a float32 gauge's 0.1234567: 4 bytes, not 8
                form = _Form.F32
                body += struct.pack(">f", value)
            else:
                form = _Form.F64
                body += struct.pack(">d", value)
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        form = _Form.STR
        _put_varint(body, len(raw))
        body += raw
    else:
        raise CompactEncodeError(f"cannot encode value of type {type(value).__name__}")
    if numeric is not None and form is not _Form.REPEAT:
        nform, mantissa = numeric
        if form is _Form.DELTA:
            delta = _zigzag(mantissa - prev.mantissa)
            if _varint_len(delta) >= _varint_len(_zigzag(mantissa)):
                form = nform  # absolute is no longer than the delta
                _put_varint(body, _zigzag(mantissa))
            else:
                _put_varint(body, delta)
        else:
            _put_varint(body, _zigzag(mantissa))
    prev.value = value
    prev.form, prev.mantissa = numeric if numeric is not None else (None, 0)
    return form, bytes(body)


def _read_value(r: _Reader, form: _Form, prev: _Prev) -> Value:
    value: Value
    numeric: tuple[_Form, int] | None = None
    if form is _Form.REPEAT:
        if prev.value is None:
            raise CompactDecodeError("REPEAT without a previous value")
        value = prev.value
        numeric = (prev.form, prev.mantissa) if prev.form is not None else None
    elif form in (_Form.FALSE, _Form.TRUE):
        value = form is _Form.TRUE
    elif form is _Form.INT or _Form.DEC0 <= form <= _Form.DEC4:
        numeric = (form, r.svarint())
    elif form is _Form.DELTA:
        if prev.form is None:
            raise CompactDecodeError("DELTA without a previous number")
        numeric = (prev.form, prev.mantissa + r.svarint())
    elif form is _Form.F64:
        value = struct.unpack(">d", r.take(8))[0]
    elif form is _Form.F32:
        value = float32_decimal(struct.unpack(">f", r.take(4))[0])
    else:  # STR
        try:
            value = r.take(r.varint()).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CompactDecodeError(f"string is not UTF-8: {exc}") from None
    if numeric is not None:
        nform, mantissa = numeric
        if not -_U63 <= mantissa < _U63:
            raise CompactDecodeError("number outside int64")
        value = mantissa if nform is _Form.INT else _decimal_value(nform, mantissa)
    prev.value = value
    prev.form, prev.mantissa = numeric if numeric is not None else (None, 0)
    return value


# --------------------------------------------------------------------------- header


def _header(kind: MessageKind, gateway: int, base_time: int, seq: int, version: int = VERSION) -> bytearray:
    if not 0 <= gateway < _U32:
        raise CompactEncodeError(f"gateway id {gateway} out of range 0..2**32-1")
    if not 0 <= base_time < _U32:
        raise CompactEncodeError(f"time {base_time} out of range for a u32 epoch")
    if not 0 <= seq < _U63:
        raise CompactEncodeError(f"seq {seq} out of range")
    out = bytearray([version << 4 | kind])
    _put_varint(out, gateway)
    out += base_time.to_bytes(4, "big")
    _put_varint(out, seq)
    return out


def _whole_seconds(t: float) -> int:
    if not math.isfinite(t) or not 0 <= t < _U32:
        raise CompactEncodeError(f"time {t} not representable as a u32 epoch")
    return math.floor(t)


# --------------------------------------------------------------------------- readings


def _reading_seq(r: Reading) -> int:
    if r.seq is None or not 0 <= r.seq < _U63:
        raise CompactEncodeError(f"reading of {r.point} has no valid journal seq ({r.seq})")
    return r.seq


class _ReadingsWriter:
    """Appends readings one at a time so pack_readings can stop at the byte budget."""

    def __init__(self, aliases: AliasTable, base_time: int, base_seq: int, version: int, step: int) -> None:
        self.aliases = aliases
        self.layout = _LAYOUTS[version]
        self.step = step
        self.body = bytearray()
        self.count = 0
        self._time = base_time
        self._seq = base_seq - 1
        self._prev: dict[int, _Prev] = {}
        self._times: dict[int, int] = {}  # alias -> second of its last reading here (version 2's STEP codes)

    def encoded(self, r: Reading) -> tuple[bytes, _Prev, int, int]:
        """Bytes for ``r`` and the state after it (not committed)."""
        alias = self.aliases.by_point.get(r.point)
        if alias is None:
            raise CompactEncodeError(f"point {r.point!r} has no compact alias")
        seq, t = _reading_seq(r), _whole_seconds(r.source_time)
        old = self._prev.get(alias, _Prev())
        prev = _Prev(old.value, old.form, old.mantissa)
        out = bytearray()
        _put_varint(out, alias)
        tail = bytearray()
        flags = self._time_flags(t - self._time, t - self._times.get(alias, self._time), r.historical, tail)
        if seq == self._seq + 1:
            flags |= self.layout.next_seq
        else:
            _put_varint(tail, _zigzag(seq - self._seq))
        form: _Form | None = None
        value_bytes = b""
        if r.value is not None:
            form, value_bytes = _write_value(r.value, prev)
        else:
            prev = old
        code = self.layout.codes.write(form, r.quality)
        out.append(flags | code[0])
        out += code[1:] + tail + value_bytes
        return bytes(out), prev, t, seq

    def _time_flags(self, delta: int, own_delta: int, historical: bool, tail: bytearray) -> int:
        """Head bits for a time ``delta`` s after the previous reading and ``own_delta`` s after the previous
        reading of the same point (or the previous reading); a varint appended to ``tail`` if needed."""
        if self.layout.version == 1:
            if delta == 0 and not historical:
                return _V1_SAME_TIME
            _put_varint(tail, _zigzag(delta) << 1 | historical)
            return 0
        steps, rest = divmod(own_delta, self.step)
        step_code = _CODE_OF_STEP.get((steps, rest))
        if delta == 0 and not historical:
            code = int(_TimeCode.SAME)
        elif not historical and step_code is not None:
            code = step_code
        else:
            code = _TimeCode.HISTORICAL if historical else _TimeCode.EXPLICIT
            in_steps = self.step > 1 and delta % self.step == 0
            _put_varint(tail, _zigzag(delta // self.step if in_steps else delta) << 1 | in_steps)
        return code << self.layout.time_shift

    def add(self, r: Reading) -> bytes:
        raw, prev, t, seq = self.encoded(r)
        alias = self.aliases.by_point[r.point]
        self._prev[alias] = prev
        self._times[alias] = t
        self._time, self._seq = t, seq
        self.body += raw
        self.count += 1
        return raw

    def message(self, gateway: int, base_time: int, base_seq: int) -> bytes:
        out = _header(MessageKind.READINGS, gateway, base_time, base_seq, self.layout.version)
        if self.layout.version >= 2:
            _put_varint(out, self.step)
        _put_varint(out, self.count)
        return bytes(out + self.body)


def _readings_base(readings: Sequence[Reading]) -> tuple[int, int]:
    first = readings[0]
    return _whole_seconds(first.source_time), _reading_seq(first)


def _step_candidates(readings: Sequence[Reading]) -> list[int]:
    """Time steps worth trying for these readings: the most frequent gaps between readings of one point."""
    gaps: dict[int, int] = {}
    last: dict[str, int] = {}
    for r in readings:
        try:
            t = _whole_seconds(r.source_time)
        except CompactEncodeError:
            continue
        gap = t - last.get(r.point, t)
        if 0 < gap < _STEP_MAX:
            gaps[gap] = gaps.get(gap, 0) + 1
        last[r.point] = t
    ranked = sorted(gaps, key=lambda g: (-gaps[g], g))[:_STEP_TRIES]
    return ranked or [1]


_STEP_MAX = 1 << 14  # a step fits two varint bytes
_STEP_TRIES = 4  # pack_readings tries this many steps and keeps the one that carries most


def encode_readings(readings: Sequence[Reading], *, gateway: int, aliases: AliasTable, step: int | None = None,
                    version: int = READINGS_VERSION) -> bytes:
    """All ``readings`` in one READINGS message (no size limit; see pack_readings). ``step`` (version 2): the
    time step in seconds (None: the most frequent gap between readings); ``version`` 1 writes the old layout."""
    if not readings:
        raise CompactEncodeError("no readings to encode")
    if version not in _LAYOUTS:
        raise CompactEncodeError(f"no READINGS version {version}")
    step = _step_candidates(readings)[0] if step is None else step
    if not 1 <= step < _STEP_MAX:
        raise CompactEncodeError(f"time step {step} out of range 1..{_STEP_MAX - 1}")
    base_time, base_seq = _readings_base(readings)
    w = _ReadingsWriter(aliases, base_time, base_seq, version, step)
    for r in readings:
        w.add(r)
    return w.message(gateway, base_time, base_seq)


def pack_readings(
    readings: Iterable[Reading], *, gateway: int, aliases: AliasTable, max_bytes: int,
    version: int = READINGS_VERSION,
) -> PackedReadings:
    """Pack readings, in the order given, until the next one would exceed ``max_bytes``.

    Readings the format cannot carry (point without alias, no seq, odd value) are
    skipped and reported in ``unencodable`` so the caller can route them elsewhere.
    An empty ``payload`` means not even one reading fitted. Version 2 tries the few most
    frequent gaps between the readings as the message's time step and keeps the best.
    """
    if version not in _LAYOUTS:
        raise CompactEncodeError(f"no READINGS version {version}")
    ahead: list[Reading] = []
    source = iter(readings)
    carriable = 0
    for r in source:  # each reading takes >= 2 bytes: no more than max_bytes of them can fit
        ahead.append(r)
        carriable += r.point in aliases.by_point and r.seq is not None
        if carriable >= max_bytes:
            break
    steps = _step_candidates(ahead) if version >= 2 else [1]
    return max((_pack(ahead, gateway, aliases, max_bytes, version, step) for step in steps),
               key=lambda p: (len(p.seqs), -len(p.payload)))


def _pack(readings: Sequence[Reading], gateway: int, aliases: AliasTable, max_bytes: int, version: int,
          step: int) -> PackedReadings:
    w: _ReadingsWriter | None = None
    base_time = base_seq = 0
    seqs: list[int] = []
    skipped: list[int] = []
    for r in readings:
        try:
            if w is None:
                base_time, base_seq = _readings_base([r])
                w = _ReadingsWriter(aliases, base_time, base_seq, version, step)
            raw = w.encoded(r)[0]
        except CompactEncodeError:
            if r.seq is not None:
                skipped.append(r.seq)
            if w is not None and w.count == 0:
                w = None  # the base was taken from a reading we cannot carry
            continue
        if len(w.message(gateway, base_time, base_seq)) + _varint_len(w.count + 1) - _varint_len(w.count) \
                + len(raw) > max_bytes:
            break
        w.add(r)
        seqs.append(_reading_seq(r))
    if w is None or w.count == 0:
        return PackedReadings(b"", (), tuple(skipped))
    return PackedReadings(w.message(gateway, base_time, base_seq), tuple(seqs), tuple(skipped))


def _decode_readings(r: _Reader, version: int, base_time: int, base_seq: int,
                     aliases: AliasTable) -> list[Reading]:
    layout = _LAYOUTS[version]
    step = r.varint() if version >= 2 else 1
    if not 1 <= step < _STEP_MAX:
        raise CompactDecodeError(f"time step {step} out of range")
    count = r.varint()
    out: list[Reading] = []
    t, seq = base_time, base_seq - 1
    prevs: dict[int, _Prev] = {}
    times: dict[int, int] = {}
    for _ in range(count):
        if r.at_end:  # each reading takes >= 2 bytes: a huge count cannot make us loop long
            raise CompactDecodeError(f"truncated: {len(out)} of {count} readings")
        alias = r.varint()
        head = r.byte()
        form, quality = layout.codes.read(r, head & layout.code_mask)
        t, historical = _read_time(r, layout, head, step, t, times.get(alias, t))
        times[alias] = t
        seq = seq + 1 if head & layout.next_seq else seq + _unzigzag(r.varint())
        if not 0 <= t < _U32 or not 0 <= seq < _U63:
            raise CompactDecodeError("time or seq out of range")
        value: Value = None
        if form is not None:
            value = _read_value(r, form, prevs.setdefault(alias, _Prev()))
        out.append(
            Reading(
                point=aliases.point(alias),
                value=value,
                quality=quality,
                source_time=float(t),
                seq=seq,
                historical=historical,
            )
        )
    return out


def _read_time(r: _Reader, layout: _Layout, head: int, step: int, prev: int, own_prev: int) -> tuple[int, bool]:
    """(second, historical) of a reading from its head byte and what follows it; ``prev`` is the previous
    reading's second, ``own_prev`` that of the previous reading of the same point (else ``prev``)."""
    if layout.version == 1:
        if head & _V1_SAME_TIME:
            return prev, False
        tv = r.varint()
        return prev + _unzigzag(tv >> 1), bool(tv & 1)
    code = head >> layout.time_shift
    if code == _TimeCode.SAME:
        return prev, False
    if code in _STEP_CODES:
        steps, seconds = _STEP_CODES[code]
        return own_prev + steps * step + seconds, False
    tv = r.varint()
    delta = _unzigzag(tv >> 1)
    return prev + (delta * step if tv & 1 else delta), code == _TimeCode.HISTORICAL


# --------------------------------------------------------------------------- alarms


def _utf8_prefix(text: str, limit: int) -> bytes:
    raw = text.encode("utf-8")[: max(0, limit)]
    return raw.decode("utf-8", errors="ignore").encode("utf-8")  # never cut a character in two


def _encode_alarm(
    kind: MessageKind, alarm: CompactAlarm, gateway: int, aliases: AliasTable, max_bytes: int
) -> bytes:
    alias = aliases.by_point.get(alarm.point)
    if alias is None:
        raise CompactEncodeError(f"point {alarm.point!r} has no compact alias")
    if not 0 <= alarm.rule < _U32 or not 0 <= alarm.level <= 255:
        raise CompactEncodeError("alarm rule must be 0..2**32-1 and level 0..255")
    out = _header(kind, gateway, alarm.time, alarm.seq)
    _put_varint(out, alias)
    _put_varint(out, alarm.rule)
    out.append(alarm.level)
    if kind is MessageKind.ALARM_CANCEL:
        ref = alarm.ref_seq
        if ref is not None and not 0 <= ref <= alarm.seq:
            raise CompactEncodeError("ref_seq must precede the cancel's own seq")
        _put_varint(out, 0 if ref is None else alarm.seq - ref + 1)
    form: _Form | None = None
    value_bytes = b""
    if alarm.value is not None:
        form, value_bytes = _write_value(alarm.value, _Prev())
    out += _CODES_V1.write(form, alarm.quality) + value_bytes
    if len(out) > max_bytes:
        raise CompactEncodeError(f"alarm takes {len(out)} bytes, more than {max_bytes}")
    return bytes(out + _utf8_prefix(alarm.text, max_bytes - len(out)))


def encode_alarm(alarm: CompactAlarm, *, gateway: int, aliases: AliasTable, max_bytes: int = 77) -> bytes:
    """One ALARM message of at most ``max_bytes``; ``alarm.text`` is shortened to fit."""
    return _encode_alarm(MessageKind.ALARM, alarm, gateway, aliases, max_bytes)


def encode_alarm_cancel(
    alarm: CompactAlarm, *, gateway: int, aliases: AliasTable, max_bytes: int = 77
) -> bytes:
    """One ALARM_CANCEL message; ``alarm.ref_seq`` names the alarm it clears, if known."""
    return _encode_alarm(MessageKind.ALARM_CANCEL, alarm, gateway, aliases, max_bytes)


def _decode_alarm(r: _Reader, kind: MessageKind, time: int, seq: int, aliases: AliasTable) -> CompactAlarm:
    alias = r.varint()
    rule = r.varint()
    level = r.byte()
    ref_seq: int | None = None
    if kind is MessageKind.ALARM_CANCEL:
        ref = r.varint()
        if ref > seq + 1:
            raise CompactDecodeError("cancel refers to a seq below zero")
        ref_seq = None if ref == 0 else seq - ref + 1
    form, quality = _CODES_V1.read(r, r.byte())
    if rule >= _U32:
        raise CompactDecodeError("rule alias out of range")
    value = None if form is None else _read_value(r, form, _Prev())
    try:
        text = r.rest().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CompactDecodeError(f"alarm text is not UTF-8: {exc}") from None
    return CompactAlarm(seq, time, aliases.point(alias), rule, level, value, quality, text, ref_seq)


# --------------------------------------------------------------------------- ack, command


def ack_mac(key: bytes, *, gateway: int, time: int, ranges: Sequence[tuple[int, int]]) -> bytes:
    """The MAC an ACK carries: HMAC-SHA256 under the gateway's ACK key over the domain tag and the
    fields the gateway acts on, in fixed-size big-endian form (so the varint spelling is irrelevant):
    gateway u32, time u32, range count u32, then each range as lo u64, hi u64; first 12 bytes."""
    if not 0 <= gateway < _U32 or not 0 <= time < _U32 or not all(0 <= lo <= hi < _U63 for lo, hi in ranges):
        raise CompactEncodeError("ack fields out of range")
    signed = bytearray(_ACK_MAC_TAG)
    signed += struct.pack(">III", gateway, time, len(ranges))
    for lo, hi in ranges:
        signed += struct.pack(">QQ", lo, hi)
    return hmac.new(key, bytes(signed), hashlib.sha256).digest()[:ACK_MAC_BYTES]


def encode_ack(ranges: Sequence[tuple[int, int]], *, gateway: int, time: int, key: bytes) -> bytes:
    """Platform -> gateway: the inclusive seq ranges received (sorted, disjoint), then the MAC under
    the gateway's ACK ``key`` (the secret the platform shares with that gateway alone)."""
    if not ranges:
        raise CompactEncodeError("an ack needs at least one range")
    out = _header(MessageKind.ACK, gateway, time, ranges[0][0])
    _put_varint(out, len(ranges))
    end = ranges[0][0] - 1
    for lo, hi in ranges:
        if lo <= end or hi < lo or hi >= _U63:
            raise CompactEncodeError(f"ack ranges must be sorted and disjoint: {ranges}")
        _put_varint(out, lo - end - 1)
        _put_varint(out, hi - lo)
        end = hi
    return bytes(out + ack_mac(key, gateway=gateway, time=time, ranges=ranges))


def ack_authentic(message: CompactMessage, key: bytes) -> bool:
    """True if ``message`` is an ACK whose MAC was made with ``key`` over exactly its fields."""
    if message.kind is not MessageKind.ACK or len(message.ack_mac) != ACK_MAC_BYTES:
        return False
    try:
        expected = ack_mac(key, gateway=message.gateway, time=message.base_time, ranges=message.acked)
    except CompactEncodeError:  # fields no genuine ACK can have (a message built by hand)
        return False
    return hmac.compare_digest(expected, message.ack_mac)


def _decode_ack(r: _Reader, first: int) -> tuple[tuple[int, int], ...]:
    count = r.varint()
    ranges: list[tuple[int, int]] = []
    end = first - 1
    for _ in range(count):
        if r.at_end:
            raise CompactDecodeError("truncated ack")
        lo = end + 1 + r.varint()
        hi = lo + r.varint()
        if hi >= _U63:
            raise CompactDecodeError("ack seq out of range")
        ranges.append((lo, hi))
        end = hi
    if not ranges:
        raise CompactDecodeError("ack without ranges")
    return tuple(ranges)


def encode_command(envelope: bytes, *, gateway: int, time: int, command_id: int) -> bytes:
    """Platform -> gateway: an opaque (signed) command envelope; the command plane verifies it."""
    return bytes(_header(MessageKind.COMMAND, gateway, time, command_id) + envelope)


def command_issuer(message: CompactMessage) -> int | None:
    """The issuer number a COMMAND body names (its second field, docs/commands.md), read without
    verifying anything: for echoing in the REPLY. None when it cannot be read."""
    if message.kind is not MessageKind.COMMAND:
        return None
    r = _Reader(message.command)
    try:
        r.byte()  # head: command code, nonce length
        issuer = r.varint()
    except CompactDecodeError:
        return None
    return issuer if issuer < _U32 else None


# --------------------------------------------------------------------------- reply

_REPLY_MIN_BODY = 2  # status byte, reason byte


def _reply_prefix(gateway: int, time: int, command_id: int, issuer: int | None) -> bytearray:
    if issuer is not None and not 0 <= issuer < _U32:
        raise CompactEncodeError(f"issuer number {issuer} out of range 0..2**32-1")
    out = _header(MessageKind.REPLY, gateway, time, command_id)
    _put_varint(out, 0 if issuer is None else issuer + 1)
    return out


def reply_overhead(*, gateway: int, command_id: int, issuer: int | None) -> int:
    """Bytes a REPLY takes before its body: ``max_bytes - reply_overhead(...)`` is the body's room."""
    return len(_reply_prefix(gateway, 0, command_id, issuer))


def encode_reply(body: bytes, *, gateway: int, time: int, command_id: int, issuer: int | None,
                 max_bytes: int | None = None) -> bytes:
    """Gateway -> platform: the answer to the COMMAND with header seq ``command_id``.

    ``body`` is ``Reply.compact_body(room)`` (at least status and reason); ``time`` the whole
    UTC second the reply was made; ``issuer`` the number the command named (None: unknown).
    """
    if len(body) < _REPLY_MIN_BODY:
        raise CompactEncodeError("a reply body needs at least the status and reason bytes")
    out = bytes(_reply_prefix(gateway, time, command_id, issuer) + body)
    if max_bytes is not None and len(out) > max_bytes:
        raise CompactEncodeError(f"reply takes {len(out)} bytes, more than {max_bytes}")
    return out


def _decode_reply(r: _Reader, command_id: int) -> CompactReply:
    issuer = r.varint()
    if issuer > _U32:
        raise CompactDecodeError("issuer number out of range")
    body = r.rest()
    if len(body) < _REPLY_MIN_BODY:
        raise CompactDecodeError("reply without status and reason")
    return CompactReply(command_id, None if issuer == 0 else issuer - 1, body)


# --------------------------------------------------------------------------- decode


def decode(data: bytes, aliases: AliasTable | Mapping[int, str] | None = None) -> CompactMessage:
    """Parse one message. Raises :class:`CompactDecodeError` and nothing else on bad input."""
    if not isinstance(aliases, AliasTable):
        aliases = AliasTable(aliases or {})
    try:
        return _decode(bytes(data), aliases)
    except CompactDecodeError:
        raise
    except (ValueError, OverflowError, struct.error, IndexError) as exc:
        raise CompactDecodeError(f"malformed message: {exc}") from None


def _decode(data: bytes, aliases: AliasTable) -> CompactMessage:
    r = _Reader(data)
    first = r.byte()
    version = first >> 4
    if version not in VERSIONS:
        raise CompactDecodeError(f"unsupported version {version} (this decoder reads versions "
                                 f"{', '.join(map(str, VERSIONS))}: update it)")
    try:
        kind = MessageKind(first & 0x0F)
    except ValueError:
        raise CompactDecodeError(f"unknown message kind {first & 0x0F}") from None
    gateway = r.varint()
    base_time = int.from_bytes(r.take(4), "big")
    seq = r.varint()
    if gateway >= _U32 or seq >= _U63:
        raise CompactDecodeError("gateway id or seq out of range")
    if kind is MessageKind.READINGS:
        readings = tuple(_decode_readings(r, version, base_time, seq, aliases))
        _expect_end(r)
        return CompactMessage(kind, gateway, base_time, tuple(x.seq or 0 for x in readings), readings,
                              version=version)
    if kind in (MessageKind.ALARM, MessageKind.ALARM_CANCEL):
        alarm = _decode_alarm(r, kind, base_time, seq, aliases)
        return CompactMessage(kind, gateway, base_time, (seq,), alarm=alarm, version=version)
    if kind is MessageKind.ACK:
        acked = _decode_ack(r, seq)
        mac = r.rest()
        if len(mac) != ACK_MAC_BYTES:  # none: the layout before ACKs were authenticated
            raise CompactDecodeError(
                f"an ack ends with its {ACK_MAC_BYTES}-byte MAC; {len(mac)} bytes follow the ranges")
        return CompactMessage(kind, gateway, base_time, (), acked=acked, ack_mac=mac, version=version)
    if kind is MessageKind.REPLY:
        return CompactMessage(kind, gateway, base_time, (), reply=_decode_reply(r, seq), version=version)
    return CompactMessage(kind, gateway, base_time, (seq,), command=r.rest(), version=version)


def _expect_end(r: _Reader) -> None:
    if not r.at_end:
        raise CompactDecodeError("trailing bytes after the last field")
