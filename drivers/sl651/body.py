"""Message bodies by function code and direction (SL 651-2014 6.6.4, Appendix B), table-driven.

Every body opens with the 2-byte serial and the 6-byte BCD send time. What follows depends on the
function and the direction, described by a :class:`Layout`:

* data reports (30H–34H, 36H–38H, 3AH up): ``F1F1`` address **plus the station class byte**, then
  ``F0F0`` observation times and elements;
* 31H and the 38H answer: after the ``04 18`` time-step code comes one identifier and then one value
  per time step to the end of the body (``series``); a missing step is all ``F``;
* the 38H query: start and end hours (``YYMMDDHH`` twice), the step code, then identifiers without data;
* parameter functions (40H–43H) use Appendix D identifiers, which collide with the element table: kept raw;
* functions whose bodies are not element groups (44H, 45H, 47H–49H, 4BH–50H, E0H–FFH) keep the bytes
  after the send time as they are (``rest``).

Decoding then re-encoding gives back the same bytes (the tests hold every public vector to that).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from drivers.sl651.elements import (
    RAW_IDENT,
    SPECS,
    Element,
    Kind,
    Station,
    decode_datum,
    decode_time,
    encode_datum,
    encode_time,
    ident_bytes,
)
from drivers.sl651.errors import Sl651EncodeError, Sl651Error
from drivers.sl651.frame import Direction


@dataclass(frozen=True, slots=True)
class Layout:
    station_class: bool = False  # the F1F1 address is followed by the station class byte (Appendix A)
    series: bool = False  # after the 04H step code: one identifier, then one value per step to the end
    period: bool = False  # start and end hour (YYMMDDHH, 4 bytes BCD each) after the send time
    bare: bool = False  # identifiers without data (queries name what they want)
    parameters: bool = False  # Appendix D parameter identifiers: kept raw, not looked up in table C.1
    opaque: bool = False  # not element groups: everything after the send time kept as bytes


PLAIN = Layout()
REPORT = Layout(station_class=True)
SERIES = Layout(station_class=True, series=True)
OPAQUE = Layout(opaque=True)


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    code: int
    name: str
    up: Layout = PLAIN
    down: Layout = PLAIN


_FUNCTIONS = [
    FunctionSpec(0x2F, "keep-alive"),
    FunctionSpec(0x30, "test report", REPORT),
    FunctionSpec(0x31, "uniform-interval report", SERIES),
    FunctionSpec(0x32, "timed report", REPORT),
    FunctionSpec(0x33, "added report", REPORT),
    FunctionSpec(0x34, "hourly report", REPORT),
    FunctionSpec(0x35, "manual data report"),
    FunctionSpec(0x36, "picture report", REPORT),
    FunctionSpec(0x37, "query current data", REPORT),
    FunctionSpec(0x38, "query period data", SERIES, Layout(period=True, bare=True)),
    FunctionSpec(0x39, "query manual data"),
    FunctionSpec(0x3A, "query given elements", REPORT, Layout(bare=True)),
    FunctionSpec(0x40, "write basic configuration", Layout(parameters=True), Layout(parameters=True)),
    FunctionSpec(0x41, "read basic configuration", Layout(parameters=True), Layout(parameters=True, bare=True)),
    FunctionSpec(0x42, "write runtime parameters", Layout(parameters=True), Layout(parameters=True)),
    FunctionSpec(0x43, "read runtime parameters", Layout(parameters=True), Layout(parameters=True, bare=True)),
    FunctionSpec(0x44, "query pump data", OPAQUE, OPAQUE),
    FunctionSpec(0x45, "query software version", OPAQUE, OPAQUE),
    FunctionSpec(0x46, "query status and alarms"),
    FunctionSpec(0x47, "initialise storage", OPAQUE, OPAQUE),
    FunctionSpec(0x48, "factory reset", OPAQUE, OPAQUE),
    FunctionSpec(0x49, "change password", OPAQUE, OPAQUE),
    FunctionSpec(0x4A, "set clock"),
    FunctionSpec(0x4B, "set IC card state", OPAQUE, OPAQUE),
    FunctionSpec(0x4C, "pump control", OPAQUE, OPAQUE),
    FunctionSpec(0x4D, "valve control", OPAQUE, OPAQUE),
    FunctionSpec(0x4E, "gate control", OPAQUE, OPAQUE),
    FunctionSpec(0x4F, "water volume set-point", OPAQUE, OPAQUE),
    FunctionSpec(0x50, "query event log", OPAQUE, OPAQUE),
    FunctionSpec(0x51, "query clock"),
]
FUNCTIONS: dict[int, FunctionSpec] = {spec.code: spec for spec in _FUNCTIONS}
DATA_REPORTS = frozenset({0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36})  # station-initiated, confirmed by the centre


def function_spec(code: int) -> FunctionSpec:
    """Known codes from the table; reserved and user-defined ones (E0H–FFH) keep their body opaque."""
    return FUNCTIONS.get(code) or FunctionSpec(code, "user-defined" if code >= 0xE0 else "reserved", OPAQUE, OPAQUE)


def layout_of(function: int, direction: Direction) -> Layout:
    spec = function_spec(function)
    return spec.up if direction is Direction.UP else spec.down


@dataclass(frozen=True, slots=True)
class Body:
    serial: int
    sent: datetime
    elements: tuple[Element, ...] = ()
    period: tuple[datetime, datetime] | None = None  # 38H query: start and end hour
    rest: bytes = b""  # opaque layouts: the bytes after the send time


# --------------------------------------------------------------------------------------------- decoding


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise Sl651Error(f"{what}: needs {n} bytes at offset {self.pos}, body has {len(self.data)}")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


def decode_body(function: int, direction: Direction, data: bytes) -> Body:
    layout = layout_of(function, direction)
    cur = _Cursor(data)
    serial = int.from_bytes(cur.take(2, "serial"), "big")
    sent = decode_time(cur.take(6, "send time"), "send time")
    if layout.opaque:
        return Body(serial, sent, rest=bytes(cur.take(cur.left, "rest")))
    period = None
    if layout.period:
        start = decode_time(cur.take(4, "start hour"), "start hour")
        period = (start, decode_time(cur.take(4, "end hour"), "end hour"))
    elements: list[Element] = []
    while cur.left:
        elements.append(_element(cur, layout, elements))
    return Body(serial, sent, tuple(elements), period)


def _element(cur: _Cursor, layout: Layout, before: list[Element]) -> Element:
    guide = cur.take(1, "identifier")[0]
    ident = 0xFF00 | cur.take(1, "user identifier")[0] if guide == 0xFF else guide
    definition = cur.take(1, "data definition")[0]
    spec = None if layout.parameters else SPECS.get(ident)
    kind = spec.kind if spec is not None else Kind.RAW
    if kind is Kind.TIME:
        return Element(ident, definition, decode_time(cur.take(5, "observation time")))
    if kind is Kind.ADDRESS:
        address = bytes(cur.take(5, "station address"))
        cls = cur.take(1, "station class")[0] if layout.station_class else None
        return Element(ident, definition, Station(address, cls))
    if kind is Kind.REST:
        return Element(ident, definition, bytes(cur.take(cur.left, "data")))
    if layout.bare and kind is not Kind.STEP:
        return Element(ident, definition, None, form="bare")
    size = definition >> 3
    if layout.series and before and before[-1].ident == 0x04 and kind is not Kind.STEP:
        # 31H / 38H answer: one identifier, then its value at each time step to the end (6.6.4.4 b–d)
        if size == 0 or cur.left % size or not cur.left:
            raise Sl651Error(f"identifier {ident:02X}: {cur.left} bytes is not a whole number of {size}-byte steps")
        steps = [decode_datum(spec if kind is Kind.BCD else None, definition, cur.take(size, "step"))
                 for _ in range(cur.left // size)]
        return Element(ident, definition, tuple(steps), form="series")  # type: ignore[arg-type]
    return Element(ident, definition, decode_datum(spec, definition, cur.take(size, f"identifier {ident:02X}")))


# --------------------------------------------------------------------------------------------- encoding


def encode_body(function: int, direction: Direction, body: Body) -> bytes:
    layout = layout_of(function, direction)
    if not 0 <= body.serial <= 0xFFFF:
        raise Sl651EncodeError(f"serial {body.serial} out of 0…65535")
    out = bytearray(body.serial.to_bytes(2, "big") + encode_time(body.sent, seconds=True))
    if layout.opaque:
        return bytes(out + body.rest)
    if layout.period:
        if body.period is None:
            raise Sl651EncodeError("a period query needs its start and end hour")
        out += bytes.fromhex(body.period[0].strftime("%y%m%d%H") + body.period[1].strftime("%y%m%d%H"))
    for element in body.elements:
        out += encode_element(element, layout)
    return bytes(out)


def encode_element(element: Element, layout: Layout = REPORT) -> bytes:
    head = ident_bytes(element.ident) + bytes([element.definition])
    value = element.value
    spec = None if layout.parameters else element.spec
    kind = spec.kind if spec is not None else Kind.RAW
    if kind is Kind.TIME and isinstance(value, datetime):
        return head + encode_time(value)
    if kind is Kind.ADDRESS and isinstance(value, Station):
        if len(value.address) != 5:
            raise Sl651EncodeError("a station address is 5 bytes")
        cls = b"" if value.station_class is None else bytes([value.station_class])
        return head + value.address + cls
    if element.form == "bare":
        return head
    # Parameter identifiers (Appendix D) share numbers with table C.1 but are not its elements: raw bytes.
    probe = Element(RAW_IDENT, element.definition, value) if layout.parameters else element
    if element.form == "series" and isinstance(value, tuple):
        return head + b"".join(encode_datum(probe, step) for step in value)
    return head + encode_datum(probe, value)
