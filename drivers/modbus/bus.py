"""The one task that owns a Modbus bus: it alone talks on the port, one transaction at a time.

Every device on the bus has its own poll interval, timeout and retries. A device
that stops answering costs the others no more than its own timeout budget: after
``OFFLINE_AFTER`` failed polls in a row it is polled only at a backed-off probing
interval, and every poll that fails reports ``comm_fail`` for its points (never a
repeated stale value).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.framer import FramerType

from drivers.modbus.codec import Block, decode_point, plan_blocks
from drivers.modbus.config import DeviceConfig, ModbusRtuBus, ModbusTcpBus, PointConfig
from gateway.shared import PointInfo, Progress, Quality, Reading, ReadingSink, now

log = logging.getLogger("fieldgate.modbus")

OFFLINE_AFTER = 3  # consecutive failed polls before a device is treated as offline
PROBE_BACKOFF_MAX = 60.0  # longest interval between probes of an offline device, seconds


class DeviceFault(Exception):
    def __init__(self, quality: Quality, detail: str) -> None:
        super().__init__(detail)
        self.quality = quality


@dataclass
class DeviceState:
    config: DeviceConfig
    blocks: list[Block]
    next_due: float = 0.0
    failures: int = 0
    online: bool = True
    probe_interval: float = 0.0
    stats: dict[str, int] = field(default_factory=lambda: {"polls": 0, "errors": 0})

    def schedule_after(self, t: float, ok: bool) -> None:
        interval = self.config.poll_interval
        if ok:
            self.failures, self.online, self.probe_interval = 0, True, 0.0
        else:
            self.failures += 1
            if self.failures >= OFFLINE_AFTER:
                self.online = False
                self.probe_interval = min(
                    max(interval, self.probe_interval * 2 or interval), max(PROBE_BACKOFF_MAX, interval)
                )
                interval = self.probe_interval
        # Fixed-rate schedule while healthy, so a slow poll does not drift the cadence.
        self.next_due = max(self.next_due + interval, t) if ok else t + interval


class ModbusBus:
    """BusDriver for one TCP endpoint or one serial port."""

    def __init__(self, config: ModbusTcpBus | ModbusRtuBus) -> None:
        self.config = config
        self.name = config.name
        self.devices = [
            DeviceState(d, plan_blocks(d.points, d.max_block, d.max_gap)) for d in config.devices
        ]
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None

    def points(self) -> list[PointInfo]:
        return [PointInfo(p.id, p.unit, p.report) for d in self.config.devices for p in d.points]

    def _make_client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        # Retries and timeouts are ours (per device); pymodbus's own reconnect loop is off
        # (reconnect_delay=0) so that this task alone decides when to touch the port.
        timeout = max(d.timeout for d in self.config.devices)
        cfg = self.config
        if isinstance(cfg, ModbusTcpBus):
            framer = FramerType.SOCKET if cfg.framer == "socket" else FramerType.RTU
            return AsyncModbusTcpClient(
                cfg.host, port=cfg.port, framer=framer, timeout=timeout, retries=0, reconnect_delay=0
            )
        return AsyncModbusSerialClient(
            cfg.port,
            framer=FramerType.RTU if cfg.framer == "rtu" else FramerType.ASCII,
            baudrate=cfg.baudrate,
            parity=cfg.parity,
            stopbits=cfg.stopbits,
            bytesize=cfg.bytesize,
            timeout=timeout,
            retries=0,
            reconnect_delay=0,
        )

    async def run(self, sink: ReadingSink, progress: Progress) -> None:
        backoff = self.config.reconnect_min
        while True:
            client = self._make_client()
            self._client = client
            try:
                connected = await client.connect()
            except Exception as exc:  # a bad port name raises instead of returning False
                log.warning("bus %s: cannot open: %s", self.name, exc)
                connected = False
            if not connected:
                await self._report_all(sink, Quality.COMM_FAIL, "bus not connected")
                progress.beat()
                log.warning("bus %s: not connected, retrying in %.1fs", self.name, backoff)
                client.close()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.config.reconnect_max)
                continue
            log.info("bus %s: connected", self.name)
            backoff = self.config.reconnect_min
            try:
                await self._poll_forever(client, sink, progress)
            except ConnectionException as exc:
                log.warning("bus %s: connection lost: %s", self.name, exc)
                await self._report_all(sink, Quality.COMM_FAIL, "connection lost")
            finally:
                client.close()

    async def _poll_forever(
        self, client: AsyncModbusTcpClient | AsyncModbusSerialClient, sink: ReadingSink, progress: Progress
    ) -> None:
        for device in self.devices:
            device.next_due = time.monotonic()
        while True:
            device = min(self.devices, key=lambda d: d.next_due)
            delay = device.next_due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            ok = await self._poll_device(client, device, sink)
            device.schedule_after(time.monotonic(), ok)
            progress.beat()
            if not client.connected:
                raise ConnectionException("transport closed")

    async def _poll_device(
        self,
        client: AsyncModbusTcpClient | AsyncModbusSerialClient,
        device: DeviceState,
        sink: ReadingSink,
    ) -> bool:
        device.stats["polls"] += 1
        all_ok = True
        for block in device.blocks:
            try:
                words = await self._read_block(client, device.config, block)
            except DeviceFault as fault:
                all_ok = False
                device.stats["errors"] += 1
                if device.online or device.failures == 0:
                    log.warning(
                        "bus %s device %s unit %d %s@%d+%d: %s",
                        self.name, device.config.name, device.config.unit_id,
                        block.table, block.start, block.count, fault,
                        extra={"device": device.config.name},
                    )
                for point in block.points:
                    await sink(Reading(point.id, None, fault.quality, now(), point.unit))
                continue
            taken = now()
            for point in block.points:
                await sink(self._reading(point, block.slice_for(point, words), taken))
        return all_ok

    @staticmethod
    def _reading(point: PointConfig, words: list[int], taken: float) -> Reading:
        try:
            value = decode_point(point, words)
        except (ValueError, IndexError) as exc:
            log.warning("point %s: cannot decode %s: %s", point.id, words, exc, extra={"point": point.id})
            return Reading(point.id, None, Quality.BAD_FRAME, taken, point.unit)
        if not isinstance(value, bool) and (
            (point.valid_min is not None and value < point.valid_min)
            or (point.valid_max is not None and value > point.valid_max)
        ):
            return Reading(point.id, None, Quality.OUT_OF_RANGE, taken, point.unit)
        return Reading(point.id, value, Quality.GOOD, taken, point.unit)

    async def _read_block(
        self, client: AsyncModbusTcpClient | AsyncModbusSerialClient, device: DeviceConfig, block: Block
    ) -> list[int]:
        last: DeviceFault | None = None
        for _attempt in range(device.retries + 1):
            try:
                response = await asyncio.wait_for(
                    self._request(client, device.unit_id, block), timeout=device.timeout + 0.5
                )
            except (TimeoutError, ModbusIOException) as exc:
                last = DeviceFault(Quality.COMM_FAIL, f"no answer ({exc or 'timeout'})")
                continue
            except ConnectionException:
                raise
            except ModbusException as exc:
                last = DeviceFault(Quality.BAD_FRAME, f"bad reply: {exc}")
                continue
            if response.isError():
                code = getattr(response, "exception_code", "?")
                raise DeviceFault(Quality.DEVICE_ERROR, f"exception response code {code}")
            words = self._words(response, block)
            if words is None:
                last = DeviceFault(Quality.BAD_FRAME, "reply shorter than requested")
                continue
            return words
        assert last is not None
        raise last

    @staticmethod
    async def _request(client: AsyncModbusTcpClient | AsyncModbusSerialClient, unit: int, block: Block) -> Any:
        if block.table == "holding":
            return await client.read_holding_registers(block.start, count=block.count, device_id=unit)
        if block.table == "input":
            return await client.read_input_registers(block.start, count=block.count, device_id=unit)
        if block.table == "coil":
            return await client.read_coils(block.start, count=block.count, device_id=unit)
        return await client.read_discrete_inputs(block.start, count=block.count, device_id=unit)

    @staticmethod
    def _words(response: Any, block: Block) -> list[int] | None:
        if block.table in ("holding", "input"):
            registers = list(getattr(response, "registers", []) or [])
            return registers if len(registers) >= block.count else None
        bits = list(getattr(response, "bits", []) or [])
        return [int(b) for b in bits] if len(bits) >= block.count else None

    async def _report_all(self, sink: ReadingSink, quality: Quality, detail: str) -> None:
        taken = now()
        for device in self.devices:
            for point in device.config.points:
                await sink(Reading(point.id, None, quality, taken, point.unit, attrs={"detail": detail}))
