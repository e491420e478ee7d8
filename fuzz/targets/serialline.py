"""Serial line gauges: one received line turned into readings (drivers/serialline/parse.py).

``decode_line`` raises ``LineError`` (documented) for a line it cannot use, and otherwise gives one
reading per point, never a GOOD one without a finite value. Devices: the NMEA wind vane of
docs/fieldbus.md, a regex-parsed polled level gauge, a delimited gauge with int/str points.

Input: device byte (bit 7: fix the NMEA checksum), then the line without its terminator.
"""

from __future__ import annotations

import math

from drivers.serialline.config import LineDeviceConfig
from drivers.serialline.parse import LineError, decode_line, nmea_checksum
from gateway.shared import Quality

NAME = "serialline"
COVERS = ("drivers/serialline/parse.py",)
MAX_LEN = 4096  # max_line is at most 4096

DEVICES = [LineDeviceConfig.model_validate(d) for d in (
    {"name": "vane", "mode": "stream", "prefix": "$WIMWV", "checksum": "nmea", "delimiter": ",", "status_field": 5,
     "points": [{"id": "wind.dir", "field": 1, "unit": "deg", "valid_min": 0, "valid_max": 360},
                {"id": "wind.speed", "field": 3, "unit": "m/s"}]},
    {"name": "sonic", "request": "R\r", "pattern": r"^L=(?P<level>-?\d+) T=(?P<temp>\S+)(?: S=(?P<st>\w))?$",
     "status_field": "st", "status_ok": ["A", "B"],
     "points": [{"id": "lvl", "field": "level", "type": "int", "scale": 0.001, "unit": "m", "valid_max": 40},
                {"id": "t", "field": "temp", "scale": 1e10, "offset": -3}]},
    {"name": "logger", "mode": "stream", "delimiter": ";",
     "points": [{"id": "n", "field": 0, "type": "int"}, {"id": "label", "field": 1, "type": "str"},
                {"id": "v", "field": 2, "valid_min": -5, "valid_max": 5}]},
)]
SEED_LINES = [
    (0, b"$WIMWV,270.5,R,12.25,M,A*%02X"), (0, b"$WIMWV,400,R,,M,A*%02X"), (0, b"$WIMWV,270,R,3,M,V*%02X"),
    (1, b"L=12345 T=-3.5"), (1, b"L=12345 T=1e300 S=A"), (1, b"ERR 42"),
    (2, b"17;pump-on;4.25"), (2, b"-0;;nan"), (2, b"99999999999999999999;x;1e309"),
]


def fixed_checksum(line: bytes) -> bytes:
    star = line.rfind(b"*")
    body = line[1:star] if line[:1] in (b"$", b"!") and star > 0 else line.lstrip(b"$")
    return b"$" + body + b"*%02X" % nmea_checksum(body)


def seeds() -> list[bytes]:
    out = []
    for device, line in SEED_LINES:
        if b"%02X" in line:
            body = line[1 : line.index(b"*")]
            line = line % nmea_checksum(body)
        out += [bytes([device]) + line, bytes([device | 0x80]) + line]
    return out


def fuzz_one(data: bytes) -> None:
    if not data:
        return
    device, line = DEVICES[(data[0] & 0x7F) % len(DEVICES)], data[1:]
    if data[0] & 0x80 and device.checksum == "nmea":
        line = fixed_checksum(line)
    try:
        readings = decode_line(device, line, 0.0)
    except LineError:
        return
    assert [r.point for r in readings] == [p.id for p in device.points]
    for r in readings:
        if r.quality is Quality.GOOD and not isinstance(r.value, str):
            assert isinstance(r.value, int | float) and math.isfinite(r.value), r
