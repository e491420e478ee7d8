"""Element identifiers (SL 651-2014 Appendix C) and the codecs their data definitions select.

An element on the wire is ``guide byte | data-definition byte | data``. The definition byte's high five
bits give the data length in bytes, the low three bits the decimals (6.6.3.2, table 26). Values are BCD
with the decimal point dropped; a leading ``FF`` byte marks a negative number (``FF0`` when the digit
count is odd, which is the same bytes: the nibble after ``FF`` is a leading zero); all ``F`` is a
missing value (6.6.4.4 d). A few guides do not follow the length rule: ``F0F0`` observation time and
``F1F1`` station address (5 bytes each), ``F2F2`` manual data and ``F3F3`` picture (the rest of the
body), the hourly lists ``F4`` (12 × 1 byte HEX, 0.1 mm) and ``F5``…``FC`` (12 × 2 bytes HEX, 0.01 m).
``FF xx`` opens the user-defined space: the identifier is two bytes, then the definition byte.

The table is the standard's (checked against the PDF of the standard, table C.1); ``quick.SL651``-style
tables seen in the wild disagree in places (protocols.md §2).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Literal

from drivers.sl651.errors import Sl651EncodeError, Sl651Error


class Kind(enum.Enum):
    BCD = "bcd"  # N(D,d): decimal digits, FF = negative, all F = missing
    HEX = "hex"  # unsigned binary (45H station status and alarm bits)
    STEP = "step"  # 04H time-step code: d h m, one BCD byte each
    TIME = "time"  # F0H observation time YYMMDDhhmm
    ADDRESS = "address"  # F1H station address (5 opaque bytes)
    REST = "rest"  # F2H manual data, F3H picture, FDH flow batch: everything to the end of the body
    LIST = "list"  # F4H…FCH: 12 five-minute values in HEX, all-ones = invalid
    RAW = "raw"  # an identifier this table does not know: kept as bytes, by the definition's length


@dataclass(frozen=True, slots=True)
class ElementSpec:
    guide: int
    code: str  # the identifier's ASCII form (PJ, Z, VT…): what the receiver publishes as the point name
    name: str
    unit: str
    kind: Kind
    digits: int = 0  # N(D,d): D
    decimals: int = 0  # N(D,d): d; for LIST the power of ten of the unit (1 = 0.1, 2 = 0.01)
    width: int = 0  # LIST: bytes per step

    def definition(self, negative: bool = False) -> int:
        """The data-definition byte this table gives the element (one byte more for the FF sign)."""
        if self.kind is Kind.BCD:
            return ((self.digits + 1) // 2 + negative) << 3 | self.decimals
        fixed = {Kind.TIME: 0xF0, Kind.ADDRESS: 0xF1, Kind.STEP: 0x18, Kind.HEX: 0x20}
        if self.kind in fixed:
            return fixed[self.kind]
        if self.kind is Kind.LIST:
            return (12 * self.width) << 3
        return self.guide  # REST: F2F2, F3F3


# guide, ASCII code, digits, decimals, unit, name — table C.1 (N(D,d) columns)
_BCD_TABLE = """
01 AC 8 2 m2 section area
02 AI 3 1 degC air temperature
03 C 3 1 degC water temperature
05 DT 4 2 h.mm period length
06 ED 5 1 mm daily evaporation
07 EJ 5 1 mm current evaporation
08 FL 5 0 hPa air pressure
09 GH 5 2 m gate opening height
0A GN 3 0 - gate number
0B GS 1 0 - conveyance type
0C GT 3 0 - gates open
0D GTP 3 1 degC ground temperature
0E H 6 2 m groundwater depth
0F HW 5 2 m wave height
10 M10 4 1 % soil moisture 10 cm
11 M20 4 1 % soil moisture 20 cm
12 M30 4 1 % soil moisture 30 cm
13 M40 4 1 % soil moisture 40 cm
14 M50 4 1 % soil moisture 50 cm
15 M60 4 1 % soil moisture 60 cm
16 M80 4 1 % soil moisture 80 cm
17 M100 4 1 % soil moisture 100 cm
18 MST 4 1 % humidity
19 NS 2 0 - units running
1A P1 5 1 mm 1-h rainfall
1B P2 5 1 mm 2-h rainfall
1C P3 5 1 mm 3-h rainfall
1D P6 5 1 mm 6-h rainfall
1E P12 5 1 mm 12-h rainfall
1F PD 5 1 mm daily rainfall
20 PJ 5 1 mm current rainfall
21 PN01 5 1 mm 1-min rainfall
22 PN05 5 1 mm 5-min rainfall
23 PN10 5 1 mm 10-min rainfall
24 PN30 5 1 mm 30-min rainfall
25 PR 5 1 mm storm rainfall
26 PT 6 1 mm accumulated rainfall
27 Q 9 3 m3/s flow
28 Q1 9 3 m3/s intake flow 1
29 Q2 9 3 m3/s intake flow 2
2A Q3 9 3 m3/s intake flow 3
2B Q4 9 3 m3/s intake flow 4
2C Q5 9 3 m3/s intake flow 5
2D Q6 9 3 m3/s intake flow 6
2E Q7 9 3 m3/s intake flow 7
2F Q8 9 3 m3/s intake flow 8
30 QA 9 3 m3/s total outflow
31 QZ 9 3 m3/s gate group flow
32 SW 11 3 1e4t sediment discharge
33 UC 2 0 - wind direction
34 UE 2 0 - wind force
35 US 4 1 m/s wind speed
36 VA 5 3 m/s mean velocity
37 VJ 5 3 m/s current velocity
38 VT 4 2 V supply voltage
39 Z 7 3 m water level
3A ZB 7 3 m downstream level
3B ZU 7 3 m upstream level
3C Z1 7 3 m intake level 1
3D Z2 7 3 m intake level 2
3E Z3 7 3 m intake level 3
3F Z4 7 3 m intake level 4
40 Z5 7 3 m intake level 5
41 Z6 7 3 m intake level 6
42 Z7 7 3 m intake level 7
43 Z8 7 3 m intake level 8
44 SQ 9 3 kg/m3 sediment concentration
46 pH 4 2 - pH
47 DO 4 1 mg/L dissolved oxygen
48 COND 5 0 uS/cm conductivity
49 TURB 3 0 deg turbidity
4A CODMN 4 1 mg/L permanganate index
4B REDOX 5 1 mV redox potential
4C NH4N 6 2 mg/L ammonia nitrogen
4D TP 5 3 mg/L total phosphorus
4E TN 5 2 mg/L total nitrogen
4F TOC 4 2 mg/L total organic carbon
50 CU 7 4 mg/L copper
51 ZN 6 4 mg/L zinc
52 SE 7 5 mg/L selenium
53 AS 7 5 mg/L arsenic
54 THG 7 5 mg/L total mercury
55 CD 7 5 mg/L cadmium
56 PB 7 5 mg/L lead
57 CHLA 4 2 mg/L chlorophyll a
58 WP1 5 2 kPa water pressure 1
59 WP2 5 2 kPa water pressure 2
5A WP3 5 2 kPa water pressure 3
5B WP4 5 2 kPa water pressure 4
5C WP5 5 2 kPa water pressure 5
5D WP6 5 2 kPa water pressure 6
5E WP7 5 2 kPa water pressure 7
5F WP8 5 2 kPa water pressure 8
60 SYL1 11 3 m3 meter 1 remaining
61 SYL2 11 3 m3 meter 2 remaining
62 SYL3 11 3 m3 meter 3 remaining
63 SYL4 11 3 m3 meter 4 remaining
64 SYL5 11 3 m3 meter 5 remaining
65 SYL6 11 3 m3 meter 6 remaining
66 SYL7 11 3 m3 meter 7 remaining
67 SYL8 11 3 m3 meter 8 remaining
68 SBL1 10 2 m3/h meter 1 hourly volume
69 SBL2 10 2 m3/h meter 2 hourly volume
6A SBL3 10 2 m3/h meter 3 hourly volume
6B SBL4 10 2 m3/h meter 4 hourly volume
6C SBL5 10 2 m3/h meter 5 hourly volume
6D SBL6 10 2 m3/h meter 6 hourly volume
6E SBL7 10 2 m3/h meter 7 hourly volume
6F SBL8 10 2 m3/h meter 8 hourly volume
70 VTA 4 1 V phase A voltage
71 VTB 4 1 V phase B voltage
72 VTC 4 1 V phase C voltage
73 VIA 4 1 A phase A current
74 VIB 4 1 A phase B current
75 VIC 4 1 A phase C current
"""


def _table() -> dict[int, ElementSpec]:
    specs: dict[int, ElementSpec] = {}
    for line in _BCD_TABLE.strip().splitlines():
        hexguide, code, digits, decimals, unit, name = line.split(" ", 5)
        guide = int(hexguide, 16)
        specs[guide] = ElementSpec(guide, code, name, "" if unit == "-" else unit, Kind.BCD, int(digits), int(decimals))
    specs[0x04] = ElementSpec(0x04, "DRxnn", "time-step code", "", Kind.STEP)
    specs[0x45] = ElementSpec(0x45, "ZT", "station status and alarm bits", "", Kind.HEX)
    specs[0xF0] = ElementSpec(0xF0, "TT", "observation time", "", Kind.TIME)
    specs[0xF1] = ElementSpec(0xF1, "ST", "station address", "", Kind.ADDRESS)
    specs[0xF2] = ElementSpec(0xF2, "RGZS", "manual data", "", Kind.REST)
    specs[0xF3] = ElementSpec(0xF3, "PIC", "picture", "", Kind.REST)
    specs[0xF4] = ElementSpec(0xF4, "DRP", "5-min rainfall in the hour", "mm", Kind.LIST, decimals=1, width=1)
    for n, guide in enumerate(range(0xF5, 0xFD), start=1):
        specs[guide] = ElementSpec(guide, f"DRZ{n}", f"5-min relative level {n} in the hour", "m", Kind.LIST,
                                   decimals=2, width=2)
    specs[0xFD] = ElementSpec(0xFD, "DATA", "flow/velocity batch data", "", Kind.REST)
    return specs


SPECS: dict[int, ElementSpec] = _table()
BY_CODE: dict[str, ElementSpec] = {spec.code: spec for spec in SPECS.values()}
LIST_STEPS = 12  # F4H…FCH: one value per 5 minutes of the hour
RAW_IDENT = 0x100  # an identifier no table names: its data is kept as bytes


@dataclass(frozen=True, slots=True)
class TimeStep:
    """04H time-step code: one of days, hours, minutes is non-zero (all zero: the 1-hour lists follow)."""

    days: int
    hours: int
    minutes: int

    @property
    def seconds(self) -> int:
        return ((self.days * 24 + self.hours) * 60 + self.minutes) * 60


@dataclass(frozen=True, slots=True)
class Station:
    """F1F1 group: 5-byte address (opaque: hydrological or GB 2260 + number) and, in data reports, the class."""

    address: bytes
    station_class: int | None = None


Scalar = Decimal | None
Value = Scalar | int | bytes | datetime | TimeStep | Station | tuple[Scalar, ...]
Form = Literal["value", "series", "bare"]


@dataclass(frozen=True, slots=True)
class Element:
    """One element as sent. ``ident`` is the guide byte, or ``0xFFxx`` for a user-defined identifier.

    ``form``: ``value`` (one datum), ``series`` (31H/38H: one value per time step, to the end of the body),
    ``bare`` (an identifier without data, as in a 38H/3AH query).
    """

    ident: int
    definition: int
    value: Value
    form: Form = "value"

    @property
    def spec(self) -> ElementSpec | None:
        return SPECS.get(self.ident)

    @property
    def size(self) -> int:
        """Bytes of one datum by the definition byte."""
        return self.definition >> 3

    @property
    def decimals(self) -> int:
        return self.definition & 7


def ident_bytes(ident: int) -> bytes:
    return bytes([0xFF, ident & 0xFF]) if ident > 0xFF else bytes([ident])


# ------------------------------------------------------------------------------------------- BCD values


def decode_bcd(data: bytes, decimals: int) -> Scalar:
    if not data:
        raise Sl651Error("a decimal value of zero bytes")
    if data == b"\xff" * len(data):
        return None  # missing (6.6.4.4 d)
    negative = data[0] == 0xFF
    digits = (data[1:] if negative else data).hex()
    if not digits.isdigit():
        raise Sl651Error(f"not a BCD number: {data.hex().upper()}")
    return Decimal((int(negative), tuple(int(c) for c in digits), -decimals))


def encode_bcd(value: Scalar, size: int, decimals: int) -> bytes:
    if value is None:
        return b"\xff" * size
    # From the digit tuple, not by arithmetic: a definition allows 62 digits, the decimal context keeps 28.
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int):
        raise Sl651EncodeError(f"{value} is not a number")
    text = "".join(map(str, digits))
    shift = exponent + decimals
    if shift >= 0:
        text += "0" * shift
    elif text[shift:].strip("0"):
        raise Sl651EncodeError(f"{value} has more than {decimals} decimals")
    else:
        text = text[:shift]
    text = text.lstrip("0") or "0"
    room = 2 * (size - sign)
    if room <= 0 or len(text) > room:
        raise Sl651EncodeError(f"{value} does not fit {size} bytes with {decimals} decimals")
    return (b"\xff" if sign else b"") + bytes.fromhex(text.rjust(room, "0"))


def quantize(spec: ElementSpec, value: float | Decimal | None) -> tuple[int, Scalar]:
    """A measured value as this element's definition byte and Decimal (rounded half up to its decimals)."""
    if value is None:
        return spec.definition(), None
    try:
        number = Decimal(str(value)).quantize(Decimal(1).scaleb(-spec.decimals), rounding=ROUND_HALF_UP)
    except InvalidOperation as exc:
        raise Sl651EncodeError(f"{spec.code}: {value} is not a finite number") from exc
    if len(str(abs(number.scaleb(spec.decimals).to_integral_value()))) > spec.digits:
        raise Sl651EncodeError(f"{spec.code}: {value} has more than N({spec.digits},{spec.decimals}) digits")
    if number.is_zero():
        number = abs(number)  # a negative zero would cost the sign byte for nothing
    return spec.definition(number.is_signed()), number


# ------------------------------------------------------------------------------------------- other kinds


def decode_time(data: bytes, what: str = "observation time") -> datetime:
    """YYMMDDhhmm[ss] BCD (year 20YY)."""
    text = data.hex()
    if not text.isdigit():
        raise Sl651Error(f"{what}: not BCD: {data.hex().upper()}")
    parts = [int(text[i:i + 2]) for i in range(0, len(text), 2)]
    parts += [0] * (6 - len(parts))
    try:
        return datetime(2000 + parts[0], parts[1], parts[2], parts[3], parts[4], parts[5])
    except ValueError as exc:
        raise Sl651Error(f"{what}: {text} is not a date ({exc})") from exc


def encode_time(value: datetime, seconds: bool = False) -> bytes:
    if not 2000 <= value.year <= 2099:
        raise Sl651EncodeError(f"{value.year} cannot be sent as YY")
    return bytes.fromhex(value.strftime("%y%m%d%H%M%S" if seconds else "%y%m%d%H%M"))


def decode_step(data: bytes) -> TimeStep:
    text = data.hex()
    if len(data) != 3 or not text.isdigit():
        raise Sl651Error(f"time-step code: not 3 BCD bytes: {data.hex().upper()}")
    return TimeStep(int(text[0:2]), int(text[2:4]), int(text[4:6]))


def encode_step(step: TimeStep) -> bytes:
    if not all(0 <= n <= 99 for n in (step.days, step.hours, step.minutes)):
        raise Sl651EncodeError(f"time-step code out of range: {step}")
    return bytes.fromhex(f"{step.days:02d}{step.hours:02d}{step.minutes:02d}")


def decode_list(spec: ElementSpec, data: bytes) -> tuple[Scalar, ...]:
    if len(data) % spec.width or not data:
        raise Sl651Error(f"{spec.code}: {len(data)} bytes is not a whole number of {spec.width}-byte steps")
    invalid = (1 << (8 * spec.width)) - 1
    raw = (int.from_bytes(data[i:i + spec.width], "big") for i in range(0, len(data), spec.width))
    return tuple(None if n == invalid else Decimal(n).scaleb(-spec.decimals) for n in raw)


def encode_list(spec: ElementSpec, values: tuple[Scalar, ...]) -> bytes:
    invalid = (1 << (8 * spec.width)) - 1
    out = bytearray()
    for value in values:
        n = invalid if value is None else value.scaleb(spec.decimals)
        if n != invalid and (not isinstance(n, Decimal) or n != n.to_integral_value() or not 0 <= n < invalid):
            raise Sl651EncodeError(f"{spec.code}: {value} is not a step value")
        out += int(n).to_bytes(spec.width, "big")
    return bytes(out)


def decode_datum(spec: ElementSpec | None, definition: int, data: bytes) -> Value:
    """One datum of an element whose length is given by its definition byte (not TIME/ADDRESS/REST)."""
    kind = spec.kind if spec is not None else Kind.RAW
    if kind is Kind.BCD:
        return decode_bcd(data, definition & 7)
    if kind is Kind.HEX:
        return int.from_bytes(data, "big")
    if kind is Kind.STEP:
        return decode_step(data)
    if kind is Kind.LIST:
        assert spec is not None
        return decode_list(spec, data)
    return bytes(data)


def encode_datum(element: Element, value: Value) -> bytes:
    spec = element.spec
    kind = spec.kind if spec is not None else Kind.RAW
    size = element.size
    if kind is Kind.BCD and (value is None or isinstance(value, Decimal)):
        return encode_bcd(value, size, element.decimals)
    if kind is Kind.HEX and isinstance(value, int):
        if not 0 <= value < 1 << (8 * size):
            raise Sl651EncodeError(f"{value} does not fit {size} bytes")
        return value.to_bytes(size, "big")
    if kind is Kind.STEP and isinstance(value, TimeStep):
        return encode_step(value)
    if kind is Kind.LIST and isinstance(value, tuple) and spec is not None:
        return encode_list(spec, value)
    if kind in (Kind.RAW, Kind.REST) and isinstance(value, bytes):
        return value
    raise Sl651EncodeError(f"identifier {element.ident:02X}: {value!r} is not a {kind.value} value")


def measured(ident: int, value: float | Decimal | None) -> Element:
    """An element for a measured value, with the definition byte the table gives it (gateway side)."""
    spec = SPECS.get(ident)
    if spec is None or spec.kind is not Kind.BCD:
        raise Sl651EncodeError(f"identifier {ident:02X} is not a decimal element of table C.1")
    definition, number = quantize(spec, value)
    return Element(ident, definition, number)
