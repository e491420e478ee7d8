"""A whole SL 651 message (frame + body), its observations, confirmations, and its JSON form.

``decode`` / ``encode`` are exact inverses on every frame they accept (tests/unit/test_sl651_codec.py).
``observations`` turns a data report into one value per element and time: the ``F0F0`` observation time
applies to the elements after it; the hourly lists (F4H–FCH) and the 31H/38H series give one value per
step from the group's time (the first step's time, 6.6.2.8 d), 5 minutes or the 04H step code apart.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from drivers.sl651.body import Body, decode_body, encode_body, function_spec
from drivers.sl651.elements import Element, Kind, Station, TimeStep
from drivers.sl651.frame import EOT, NAK, Direction, Frame, decode_frame, encode_frame

LIST_STEP = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Message:
    frame: Frame
    body: Body | None  # None for an M3 packet other than a whole message (its body is a fragment)

    @property
    def direction(self) -> Direction:
        return self.frame.direction


def decode(data: bytes) -> Message:
    """One frame, body decoded unless it is one packet of a longer M3 message. Raises only Sl651Error."""
    return decode_message(decode_frame(data))


def decode_message(frame: Frame) -> Message:
    if frame.packets is not None and frame.packets[0] > 1:
        return Message(frame, None)
    return Message(frame, decode_body(frame.function, frame.direction, frame.body))


def encode(message: Message) -> bytes:
    frame = message.frame
    if message.body is not None:
        frame = replace(frame, body=encode_body(frame.function, frame.direction, message.body))
    return encode_frame(frame)


def confirmation(up: Frame, serial: int, sent: datetime, end: int = EOT, nak_packet: int | None = None) -> bytes:
    """The centre's confirmation of an uplink frame: station first, same function, the uplink's serial.

    M3: the packet field repeats the total; the sequence is the last packet's (EOT/ESC) or the one a NAK asks
    for again (table 23 note a).
    """
    packets = None
    if up.packets is not None:
        packets = (up.packets[0], nak_packet if end == NAK and nak_packet else up.packets[0])
    frame = Frame(Direction.DOWN, up.centre, up.station, up.password, up.function, b"", end, packets)
    return encode(Message(frame, Body(serial, sent)))


@dataclass(frozen=True, slots=True)
class Observation:
    station: str  # the 5 address bytes as upper-case hex
    station_class: int | None
    function: int
    serial: int
    sent: datetime
    observed: datetime | None
    code: str  # table C.1 ASCII identifier (PJ, Z, VT…), or the hex identifier when the table has none
    value: Decimal | int | None  # None: the station sent "missing" (all F)
    unit: str
    step: int | None = None  # index within an hourly list or a uniform-interval series


def observations(message: Message) -> list[Observation]:
    body = message.body
    if body is None or message.direction is not Direction.UP:
        return []
    station, cls = message.frame.station_hex(), None
    observed: datetime | None = None
    step: TimeStep | None = None
    out: list[Observation] = []

    def add(element: Element, value: Decimal | int | None, at: datetime | None, index: int | None) -> None:
        spec = element.spec
        code = spec.code if spec is not None else f"{element.ident:02X}"
        out.append(Observation(station, cls, message.frame.function, body.serial, body.sent, at, code, value,
                               spec.unit if spec is not None else "", index))

    for element in body.elements:
        value = element.value
        kind = element.spec.kind if element.spec is not None else Kind.RAW
        if isinstance(value, Station):
            station, cls = value.address.hex().upper(), value.station_class
        elif kind is Kind.TIME and isinstance(value, datetime):
            observed = value
        elif isinstance(value, TimeStep):
            step = value
        elif element.form == "series" and isinstance(value, tuple):
            pace = timedelta(seconds=step.seconds) if step is not None else None
            for i, v in enumerate(value):
                at = observed + i * pace if observed is not None and pace is not None else None
                if v is None or isinstance(v, Decimal):
                    add(element, v, at, i)
        elif kind is Kind.LIST and isinstance(value, tuple):
            for i, v in enumerate(value):
                add(element, v, observed + i * LIST_STEP if observed is not None else None, i)
        elif kind in (Kind.BCD, Kind.HEX) and element.form == "value" and isinstance(value, Decimal | int | None):
            add(element, value, observed, None)
    return out


# --------------------------------------------------------------------------------------------- JSON


def number(value: Decimal | int | None) -> float | int | None:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and value.as_tuple().exponent == 0 else float(value)
    return value


def _value_json(element: Element) -> Any:
    value = element.value
    if isinstance(value, datetime):
        return value.isoformat(timespec="minutes")
    if isinstance(value, Station):
        out: dict[str, Any] = {"address": value.address.hex().upper()}
        if value.station_class is not None:
            out["class"] = f"{value.station_class:02X}"
            if 0x20 < value.station_class < 0x7F:
                out["class_letter"] = chr(value.station_class)
        return out
    if isinstance(value, TimeStep):
        return {"days": value.days, "hours": value.hours, "minutes": value.minutes}
    if isinstance(value, tuple):
        return [number(v) if not isinstance(v, bytes) else v.hex().upper() for v in value]
    if isinstance(value, bytes):
        return value.hex().upper()
    return number(value)


def to_json(message: Message) -> dict[str, Any]:
    frame = message.frame
    out: dict[str, Any] = {
        "direction": frame.direction.value, "centre": frame.centre, "station": frame.station_hex(),
        "password": f"{frame.password:04X}", "function": f"{frame.function:02X}",
        "function_name": function_spec(frame.function).name, "end": frame.end_name, "crc_ok": True,
    }
    if frame.packets is not None:
        out["packet"] = {"total": frame.packets[0], "sequence": frame.packets[1]}
    body = message.body
    if body is None:
        out["fragment"] = frame.body.hex().upper()
        return out
    out["serial"] = body.serial
    out["sent"] = body.sent.isoformat(timespec="seconds")
    if body.period is not None:
        out["period"] = [t.isoformat(timespec="hours") for t in body.period]
    if body.rest:
        out["rest"] = body.rest.hex().upper()
    elements = []
    for element in body.elements:
        spec = element.spec
        item: dict[str, Any] = {"id": f"{element.ident:02X}", "definition": f"{element.definition:02X}"}
        if spec is not None:
            item.update(code=spec.code, name=spec.name)
            if spec.unit:
                item["unit"] = spec.unit
        if element.form != "value":
            item["form"] = element.form
        if element.form != "bare":
            item["value"] = _value_json(element)
        elements.append(item)
    out["elements"] = elements
    return out
