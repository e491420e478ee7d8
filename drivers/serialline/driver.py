"""The task that owns a serial line of text gauges.

Poll mode: devices are asked in turn (``request``), each reply line is decoded; no reply
within ``timeout`` is ``comm_fail``, a reply that cannot be used is ``bad_frame``. A device
that keeps failing is asked at a doubling interval (up to a minute) so it does not eat
the line. Stream mode: lines arrive on their own; each goes to the device whose ``prefix``
it starts with; a device silent for ``timeout`` reports ``comm_fail`` (again every timeout
while silent), never its last value.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from drivers.ports.serialport import SerialTransport
from drivers.ports.settings import SerialSettings
from drivers.ports.stream import PortLost
from drivers.serialline.config import LineDeviceConfig, SerialLineBus
from drivers.serialline.parse import LineError, decode_line
from gateway.contracts import stall_deadline
from gateway.shared import PointInfo, Progress, Quality, Reading, ReadingSink, Value, now

log = logging.getLogger("fieldgate.serialline")

BACKOFF_AFTER = 3  # failed polls in a row before a device is asked less often
BACKOFF_MAX = 60.0


@dataclass
class _Device:
    config: LineDeviceConfig
    next_due: float = 0.0
    last_line: float = 0.0  # stream mode: monotonic time of the last line for this device
    failures: int = 0
    polls: int = 0
    good_polls: int = 0
    mode = "online"  # the status page has always shown serial-line gauges as online; readings carry the quality

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def unit_id(self) -> None:
        return self.config.unit_id


class SerialLineDriver:
    writable = False  # gauges only talk: write_point and probe raise

    def __init__(self, config: SerialLineBus) -> None:
        self.config = config
        self.name = config.name
        self.devices = [_Device(d) for d in config.devices]
        self.garbage_lines = 0
        self.connected = False
        self._terminator = config.terminator.encode("latin-1")

    def points(self) -> list[PointInfo]:
        return [PointInfo(p.id, p.unit, p.report) for d in self.config.devices for p in d.points]

    def device(self, name: str) -> _Device:
        return next(d for d in self.devices if d.config.name == name)

    @property
    def stall_deadline(self) -> float:
        devices = self.config.devices
        return stall_deadline(max((d.poll_interval for d in devices), default=0.0),
                              sum(d.timeout * 4 for d in devices))

    async def write_point(self, point_id: str, value: float | bool | str, verify: bool = True) -> Value:
        raise LookupError(f"line {self.name} is a serial line: its points cannot be written")

    async def probe(self, unit_id: int, table: str, address: int, count: int = 1) -> list[int]:
        raise LookupError(f"line {self.name} is a serial line: it has no registers to probe")

    async def run(self, sink: ReadingSink, progress: Progress) -> None:
        cfg = self.config
        backoff = cfg.reconnect_min
        while True:
            port = SerialTransport(SerialSettings.of_bus(cfg))
            try:
                await port.open()
            except PortLost as exc:
                log.warning("line %s: %s; retrying in %.1fs", self.name, exc, backoff)
                await self._report_all(sink, Quality.COMM_FAIL)
                progress.beat()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, cfg.reconnect_max)
                continue
            backoff = cfg.reconnect_min
            self.connected = True
            try:
                if cfg.devices[0].mode == "poll":
                    await self._poll_forever(port, sink, progress)
                else:
                    await self._stream_forever(port, sink, progress)
            except PortLost as exc:
                log.warning("line %s: port lost: %s", self.name, exc)
                await self._report_all(sink, Quality.COMM_FAIL)
            finally:
                self.connected = False
                port.close()

    # --- lines -----------------------------------------------------------------------

    async def _next_line(self, port: SerialTransport, deadline: float) -> bytes | None:
        """The next complete line before ``deadline``, or None. Over-long lines are dropped as garbage."""
        while True:
            buf = port.peek()
            end = buf.find(self._terminator)
            if end >= 0:
                port.consume(end + len(self._terminator))
                if end > self.config.max_line:
                    self.garbage_lines += 1
                    continue
                return buf[:end]
            if len(buf) > self.config.max_line:
                port.discard_input()
                self.garbage_lines += 1
                log.debug("line %s: %d bytes without a line end dropped", self.name, len(buf))
            if not await port.wait_data(deadline):
                return None

    def _owner(self, line: bytes) -> _Device | None:
        text = line.decode("latin-1")
        for device in self.devices:
            if device.config.prefix is None or text.startswith(device.config.prefix):
                return device
        return None

    async def _deliver(self, device: _Device, line: bytes, sink: ReadingSink) -> bool:
        taken = now()
        try:
            readings = decode_line(device.config, line, taken)
        except LineError as exc:
            self.garbage_lines += 1
            log.warning("line %s device %s: %s: %r", self.name, device.config.name, exc, line[:80],
                        extra={"device": device.config.name})
            readings = [Reading(p.id, None, Quality.BAD_FRAME, taken, p.unit) for p in device.config.points]
        await sink(readings)
        return any(r.quality is Quality.GOOD for r in readings)

    async def _report(self, device: _Device, sink: ReadingSink, quality: Quality) -> None:
        taken = now()
        await sink([Reading(p.id, None, quality, taken, p.unit) for p in device.config.points])

    async def _report_all(self, sink: ReadingSink, quality: Quality) -> None:
        for device in self.devices:
            await self._report(device, sink, quality)

    # --- poll mode -------------------------------------------------------------------

    async def _poll_forever(self, port: SerialTransport, sink: ReadingSink, progress: Progress) -> None:
        for device in self.devices:
            device.next_due = time.monotonic()
        while True:
            device = min(self.devices, key=lambda d: (d.next_due, not any(p.priority for p in d.config.points)))
            delay = device.next_due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            ok = await self._poll(port, device, sink)
            interval = device.config.poll_interval
            device.failures = 0 if ok else device.failures + 1
            if device.failures >= BACKOFF_AFTER:
                interval = min(BACKOFF_MAX, interval * 2 ** (device.failures - BACKOFF_AFTER + 1))
            device.next_due = max(device.next_due + interval, time.monotonic()) if ok else time.monotonic() + interval
            progress.beat()

    async def _poll(self, port: SerialTransport, device: _Device, sink: ReadingSink) -> bool:
        cfg = device.config
        assert cfg.request is not None
        device.polls += 1
        port.discard_input()
        await port.send(cfg.request.encode("latin-1"))
        deadline = time.monotonic() + cfg.timeout + len(cfg.request) * port.char_time
        while True:
            line = await self._next_line(port, deadline)
            if line is None:
                if device.failures < BACKOFF_AFTER:
                    log.warning("line %s device %s: no reply within %.2fs", self.name, cfg.name, cfg.timeout,
                                extra={"device": cfg.name})
                await self._report(device, sink, Quality.COMM_FAIL)
                return False
            if not line.strip():
                continue  # blank line (a CR LF pair split as two terminators)
            if line.decode("latin-1").strip() == cfg.request.strip():
                continue  # our own request echoed (2-wire adapters with local echo)
            ok = await self._deliver(device, line, sink)
            device.good_polls += ok
            return ok

    # --- stream mode -----------------------------------------------------------------

    async def _stream_forever(self, port: SerialTransport, sink: ReadingSink, progress: Progress) -> None:
        start = time.monotonic()
        for device in self.devices:
            device.last_line = start
        while True:
            t = time.monotonic()
            for device in self.devices:
                if t - device.last_line >= device.config.timeout:
                    log.warning("line %s device %s: silent for %.1fs", self.name, device.config.name,
                                t - device.last_line, extra={"device": device.config.name})
                    await self._report(device, sink, Quality.COMM_FAIL)
                    device.last_line = t  # report again after another timeout of silence
            wake = min(d.last_line + d.config.timeout for d in self.devices)
            line = await self._next_line(port, wake)
            progress.beat()
            if line is None or not line.strip():
                continue
            owner = self._owner(line)
            if owner is None:
                self.garbage_lines += 1
                continue  # another sentence type from the same instrument, or noise
            owner.last_line = time.monotonic()
            owner.polls += 1
            owner.good_polls += await self._deliver(owner, line, sink)
