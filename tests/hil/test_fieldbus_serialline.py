"""Serial line gauges on a pty pair: a polled gauge that sometimes answers garbage or not at all,
and a free-running NMEA wind sensor that sends a bad checksum, noise, and then falls silent."""

from __future__ import annotations

import asyncio
import select
import threading
from collections.abc import Callable, Sequence

import pytest
import serial

from drivers.serialline.config import SerialLineBus
from drivers.serialline.driver import SerialLineDriver
from drivers.serialline.parse import nmea_checksum
from gateway.shared import NullProgress, Quality, Reading
from tests.hil.rig import RigFile, serial_pair
from tests.hil.test_fieldbus import wait_async

pytestmark = pytest.mark.hil


class Gauge(threading.Thread):
    """Device end of the line: answers each request with the next scripted reply (None = silence)."""

    def __init__(self, port: str, replies: list[bytes | None]) -> None:
        super().__init__(daemon=True)
        self.port = serial.Serial(port, timeout=0)
        self.replies = replies
        self.requests = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            ready, _, _ = select.select([self.port.fileno()], [], [], 0.05)
            if not ready or b"R\r" not in self.port.read(256):
                continue
            reply = self.replies[self.requests % len(self.replies)]
            self.requests += 1
            if reply is not None:
                self.port.write(reply)


async def collect(driver: SerialLineDriver, until: Callable[[list[Reading]], bool],
                  between: Callable[[], None] | None = None) -> list[Reading]:
    readings: list[Reading] = []

    async def sink(block: Sequence[Reading]) -> None:
        readings.extend(block)

    task = asyncio.create_task(driver.run(sink, NullProgress()))
    try:
        await wait_async(lambda: until(readings), "the expected readings")
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return readings


def test_polled_gauge_garbage_and_timeouts(rig: RigFile) -> None:
    replies: list[bytes | None] = [b"L=12345 T=-3.5\r\n", b"\x00\xff garbage\r\n", None, b"L=99 T=nan5\r\n",
                                   b"L=12000 T=4.0\r\n"]
    config = SerialLineBus.model_validate({"type": "serial_line", "name": "sonic", "port": "",
                                           "devices": [{"name": "sonic", "request": "R\r", "poll_interval": 0.05,
                                                        "timeout": 0.2,
                                                        "pattern": r"^L=(?P<level>\d+) T=(?P<temp>-?\d+\.\d)$",
                                                        "points": [{"id": "lvl", "field": "level", "type": "int",
                                                                    "scale": 0.001}, {"id": "t", "field": "temp"}]}]})
    with serial_pair(rig) as (gateway_end, device_end):
        gauge = Gauge(device_end, replies)
        gauge.start()
        driver = SerialLineDriver(config.model_copy(update={"port": gateway_end}))
        try:
            readings = asyncio.run(collect(driver, lambda rs: len([r for r in rs if r.point == "lvl"]) >= 10))
        finally:
            gauge.stop.set()
            gauge.join(2)
    levels = [r for r in readings if r.point == "lvl"]
    qualities = [r.quality for r in levels[:5]]
    assert qualities == [Quality.GOOD, Quality.BAD_FRAME, Quality.COMM_FAIL, Quality.BAD_FRAME, Quality.GOOD]
    assert [r.value for r in levels[:5]] == [pytest.approx(12.345), None, None, None, pytest.approx(12.0)]


def test_nmea_stream_bad_checksum_noise_then_silence(rig: RigFile) -> None:
    def mwv(direction: float) -> bytes:
        body = f"WIMWV,{direction:.1f},R,5.0,M,A"
        return f"${body}*{nmea_checksum(body.encode()):02X}\r\n".encode()

    config = SerialLineBus.model_validate({"type": "serial_line", "name": "wind", "port": "", "devices": [{
        "name": "vane", "mode": "stream", "timeout": 0.5, "prefix": "$WIMWV", "checksum": "nmea",
        "delimiter": ",", "status_field": 5, "points": [{"id": "wind.dir", "field": 1}]}]})
    with serial_pair(rig) as (gateway_end, device_end):
        device = serial.Serial(device_end, timeout=0)
        driver = SerialLineDriver(config.model_copy(update={"port": gateway_end}))
        script = [mwv(90.0), mwv(91.0)[:-6] + b"00\r\n", b"\x13\x37 line noise\r\n", b"$GPZDA,ignored*00\r\n",
                  b"x" * 400 + b"\r\n", mwv(92.0)]

        async def scenario() -> list[Reading]:
            readings: list[Reading] = []

            async def sink(block: Sequence[Reading]) -> None:
                readings.extend(block)

            task = asyncio.create_task(driver.run(sink, NullProgress()))
            try:
                await wait_async(lambda: driver.connected, "port open")
                for line in script:
                    device.write(line)
                    await asyncio.sleep(0.05)
                # then the sensor falls silent: comm_fail, never 92.0 repeated
                await wait_async(lambda: readings[-1:] != [] and readings[-1].quality is Quality.COMM_FAIL,
                                 "comm_fail after silence")
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            return readings

        try:
            readings = asyncio.run(scenario())
        finally:
            device.close()
    got = [(r.value, r.quality) for r in readings]
    assert got[:4] == [(90.0, Quality.GOOD), (None, Quality.BAD_FRAME), (92.0, Quality.GOOD),
                       (None, Quality.COMM_FAIL)], got
    assert driver.garbage_lines >= 3  # bad checksum, the foreign sentence, the over-long line
