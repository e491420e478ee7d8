"""Line-protocol gauges: NMEA checksums, regex and delimiter fields, garbage → quality flags."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

import pytest
import serial
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from drivers.serialline.config import LineDeviceConfig, SerialLineBus
from drivers.serialline.driver import SerialLineDriver
from drivers.serialline.parse import LineError, decode_line, nmea_checksum, strip_nmea
from gateway.shared import NullProgress, Quality, Reading

# The GGA/RMC example pair reproduced in many NMEA 0183 tutorials, with their published checksums.
GGA = "$GPGGA,092750.000,5321.6802,N,00630.3372,W,1,8,1.03,61.7,M,55.2,M,,*76"
RMC = "$GPRMC,092750.000,A,5321.6802,N,00630.3372,W,0.02,31.66,280511,,,A*43"


def wind(**extra: Any) -> LineDeviceConfig:
    data: dict[str, Any] = {
        "name": "vane", "mode": "stream", "prefix": "$WIMWV", "checksum": "nmea", "delimiter": ",",
        "status_field": 5,
        "points": [{"id": "wind.dir", "field": 1, "unit": "deg", "valid_min": 0, "valid_max": 360},
                   {"id": "wind.speed", "field": 3, "unit": "m/s", "valid_min": 0, "valid_max": 75}],
    }
    data.update(extra)
    return LineDeviceConfig.model_validate(data)


def mwv(direction: str, speed: str, status: str = "A") -> bytes:
    body = f"WIMWV,{direction},R,{speed},M,{status}"
    return f"${body}*{nmea_checksum(body.encode()):02X}\r".encode()


def test_published_nmea_checksums() -> None:
    assert strip_nmea(GGA).endswith("55.2,M,,")
    assert strip_nmea(RMC).startswith("$GPRMC")
    with pytest.raises(LineError, match="checksum 77, computed 76"):
        strip_nmea(GGA[:-2] + "77")
    with pytest.raises(LineError, match="no NMEA"):
        strip_nmea(GGA[:-3])


def test_delimited_nmea_sentence() -> None:
    readings = decode_line(wind(), mwv("270.5", "12.25"), 1.0)
    assert [(r.point, r.value, r.quality) for r in readings] == [
        ("wind.dir", 270.5, Quality.GOOD), ("wind.speed", 12.25, Quality.GOOD)]


def test_status_void_range_empty_and_text() -> None:
    assert {r.quality for r in decode_line(wind(), mwv("270", "3", status="V"), 1.0)} == {Quality.DEVICE_ERROR}
    out = decode_line(wind(), mwv("400", ""), 1.0)
    assert [r.quality for r in out] == [Quality.OUT_OF_RANGE, Quality.DEVICE_ERROR]
    assert all(r.value is None for r in out)
    assert decode_line(wind(), mwv("abc", "1"), 1.0)[0].quality is Quality.BAD_FRAME


def test_regex_fields_with_scale() -> None:
    device = LineDeviceConfig.model_validate({
        "name": "sonic", "request": "R\r", "pattern": r"^L=(?P<level>-?\d+) T=(?P<temp>-?\d+\.\d)$",
        "points": [{"id": "lvl", "field": "level", "type": "int", "scale": 0.001, "unit": "m"},
                   {"id": "t", "field": "temp"}],
    })
    lvl, temp = decode_line(device, b"L=12345 T=-3.5", 0.0)
    assert lvl.value == pytest.approx(12.345) and temp.value == -3.5
    with pytest.raises(LineError, match="does not match"):
        decode_line(device, b"ERR 42", 0.0)


def test_huge_numbers_are_bad_frames_not_crashes_or_infinities() -> None:
    """Before: a 400-digit integer times a scale raised OverflowError out of decode_line (the line task
    died), and a float that overflowed only after scaling came out GOOD as inf."""
    device = LineDeviceConfig.model_validate({
        "name": "sonic", "request": "R\r", "pattern": r"^L=(?P<level>-?\d+) T=(?P<temp>\S+)$",
        "points": [{"id": "lvl", "field": "level", "type": "int", "scale": 0.001},
                   {"id": "t", "field": "temp", "scale": 1e10}],
    })
    lvl, temp = decode_line(device, b"L=" + b"9" * 400 + b" T=1e300", 0.0)
    assert (lvl.quality, lvl.value) == (Quality.BAD_FRAME, None)
    assert (temp.quality, temp.value) == (Quality.BAD_FRAME, None)


@given(st.binary(max_size=120))
def test_garbage_never_crashes_and_never_yields_a_wrong_good_value(raw: bytes) -> None:
    try:
        readings = decode_line(wind(), raw, 0.0)
    except LineError:
        return
    # Anything accepted passed the checksum: it must be a well-formed MWV sentence.
    assert raw.startswith(b"$WIMWV") or not any(r.good for r in readings)


@pytest.mark.parametrize(("change", "message"), [
    ({"pattern": "(?P<x>", "delimiter": None}, "not a valid regular expression"),
    ({"delimiter": None}, "exactly one of pattern"),
    ({"mode": "poll"}, "needs request"),
    ({"points": [{"id": "a", "field": "name"}]}, "0-based index"),
])
def test_config_mistakes(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        wind(**change)


def test_line_cannot_mix_poll_and_stream() -> None:
    with pytest.raises(ValidationError, match="do not mix"):
        SerialLineBus.model_validate({"type": "serial_line", "name": "l", "port": "/dev/null", "devices": [
            wind().model_dump(), {**wind().model_dump(), "name": "b", "mode": "poll", "request": "?"}]})


def test_a_line_drives_its_rs485_transceiver_as_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: `rs485:` of a serial_line bus was accepted and documented, but the driver opened the port
    without it: on a half-duplex adapter that needs the kernel to switch direction, nothing was received."""
    device, ours = os.openpty()
    asked: list[serial.rs485.RS485Settings | None] = []
    # A pty has no RS-485 mode: record what the kernel would be asked instead of asking it.
    monkeypatch.setattr(serial.Serial, "_set_rs485_mode", lambda _self, settings: asked.append(settings))
    bus = SerialLineBus.model_validate({
        "type": "serial_line", "name": "l", "port": os.ttyname(ours), "devices": [wind().model_dump()],
        "rs485": {"rts_level_for_tx": False, "rts_level_for_rx": True, "delay_before_tx": "5ms"},
    })
    readings: asyncio.Queue[Sequence[Reading]] = asyncio.Queue()

    async def body() -> None:
        driver = SerialLineDriver(bus)
        task = asyncio.create_task(driver.run(readings.put, NullProgress()))
        try:
            async with asyncio.timeout(10):
                while not driver.connected:  # noqa: ASYNC110 - the driver sets a flag, no event to await
                    await asyncio.sleep(0.01)
                os.write(device, mwv("270", "3") + b"\n")
                while (await readings.get())[0].quality is not Quality.GOOD:  # the port is open and read
                    pass
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    try:
        asyncio.run(body())
    finally:
        os.close(device)
        os.close(ours)
    assert len(asked) == 1 and asked[0] is not None
    assert (asked[0].rts_level_for_tx, asked[0].rts_level_for_rx, asked[0].delay_before_tx) == (False, True, 0.005)
