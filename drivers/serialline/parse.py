"""Turn one received text line into readings, or say precisely why it cannot be used."""

from __future__ import annotations

import math
import re

from drivers.serialline.config import LineDeviceConfig, LinePointConfig
from gateway.shared import Quality, Reading


class LineError(Exception):
    """The line is garbage for this device (checksum, no match, missing field)."""


def nmea_checksum(body: bytes) -> int:
    """XOR of every byte between '$' (or '!') and '*' (NMEA 0183)."""
    value = 0
    for byte in body:
        value ^= byte
    return value


def strip_nmea(line: str) -> str:
    """Check and remove the '*hh' of an NMEA sentence; returns the sentence without it."""
    star = line.rfind("*")
    if line[:1] not in ("$", "!") or star < 0 or len(line) - star != 3:
        raise LineError("no NMEA *hh checksum")
    try:
        sent = int(line[star + 1 :], 16)
    except ValueError:
        raise LineError(f"checksum '{line[star + 1:]}' is not hex") from None
    computed = nmea_checksum(line[1:star].encode("ascii"))
    if computed != sent:
        raise LineError(f"checksum {sent:02X}, computed {computed:02X}")
    return line[:star]


def fields_of(device: LineDeviceConfig, line: str) -> dict[str | int, str]:
    if device.checksum == "nmea":
        line = strip_nmea(line)
    if device.pattern is not None:
        match = re.search(device.pattern, line)
        if match is None:
            raise LineError("line does not match the pattern")
        return {k: v for k, v in match.groupdict().items() if v is not None}
    assert device.delimiter is not None
    return dict(enumerate(line.split(device.delimiter)))


def decode_line(device: LineDeviceConfig, raw: bytes, taken: float) -> list[Reading]:
    """Readings for every point of ``device`` from ``raw`` (without the terminator); LineError if unusable."""
    try:
        line = raw.decode("ascii").rstrip("\r")
    except UnicodeDecodeError:
        raise LineError("non-ASCII bytes in the line") from None
    if not line.isprintable():
        raise LineError("control characters in the line")
    fields = fields_of(device, line)
    if device.status_field is not None and fields.get(device.status_field) not in device.status_ok:
        status = fields.get(device.status_field)
        return [Reading(p.id, None, Quality.DEVICE_ERROR, taken, p.unit, attrs={"status": status})
                for p in device.points]
    return [_point(p, fields.get(p.field), taken) for p in device.points]


def _point(point: LinePointConfig, text: str | None, taken: float) -> Reading:
    if text is None:
        return Reading(point.id, None, Quality.BAD_FRAME, taken, point.unit)
    text = text.strip()
    if text == "":  # NMEA: an empty field means the instrument has no value now
        return Reading(point.id, None, Quality.DEVICE_ERROR, taken, point.unit)
    if point.type == "str":
        return Reading(point.id, text, Quality.GOOD, taken, point.unit)
    try:
        number: float = int(text) if point.type == "int" else float(text)
    except ValueError:
        return Reading(point.id, None, Quality.BAD_FRAME, taken, point.unit)
    try:
        # int() takes any number of digits; past float range the scaling (or later JSON) overflows.
        value = number if point.scale == 1.0 and point.offset == 0.0 else number * point.scale + point.offset
        finite = math.isfinite(value)
    except OverflowError:
        finite = False
    if not finite:
        return Reading(point.id, None, Quality.BAD_FRAME, taken, point.unit)
    if (point.valid_min is not None and value < point.valid_min) or (
        point.valid_max is not None and value > point.valid_max
    ):
        return Reading(point.id, None, Quality.OUT_OF_RANGE, taken, point.unit)
    return Reading(point.id, value, Quality.GOOD, taken, point.unit)
