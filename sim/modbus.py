"""Simulated Modbus field devices: a real pymodbus server (TCP or serial) with units we control.

Used by `make demo`, the virtual rig and the benchmarks. The register contents
live here (``SimUnit``); pymodbus's own data blocks are refreshed from them on every
request through the device ``action`` hook, which is also where faults are injected
(a slow unit sleeps, a stuck relay ignores coil writes, an error unit answers with an
exception code). A unit that is not in the server does not answer at all.

Run standalone: ``python -m sim.modbus CONFIG [--bus NAME] [--animate]``
serves every device of a site config's TCP bus with values that drift like a storm.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simutils import SimUtils

from drivers.modbus.codec import encode_point
from drivers.modbus.config import PointConfig
from sim.support import free_port

log = logging.getLogger("fieldgate.sim.modbus")

TABLES = ("coil", "discrete", "holding", "input")
_FC_TABLE = {1: "coil", 5: "coil", 15: "coil", 2: "discrete", 3: "holding", 6: "holding", 16: "holding",
             22: "holding", 23: "holding", 4: "input"}


@dataclass
class SimUnit:
    """One simulated device: four tables of values, plus fault switches."""

    unit_id: int
    size: int = 1024
    delay: float = 0.0  # seconds before answering (a slow unit)
    stuck_coils: bool = False  # coil writes are acknowledged but do not take (a stuck relay)
    exception: int | None = None  # answer every request with this Modbus exception code
    tables: dict[str, list[int]] = field(default_factory=dict)
    writes: list[tuple[str, int, list[int]]] = field(default_factory=list)
    requests: int = 0

    def __post_init__(self) -> None:
        for table in TABLES:
            self.tables.setdefault(table, [0] * self.size)

    def set_registers(self, table: str, address: int, values: list[int]) -> None:
        self.tables[table][address : address + len(values)] = [int(v) & 0xFFFF for v in values]

    def set_point(self, point: PointConfig, value: float | bool) -> None:
        """Hold ``value`` (engineering units) for ``point``, encoded as the point's type and order."""
        if point.table in ("coil", "discrete") or point.type == "bool":
            self.tables[point.table][point.address] = int(bool(value))
        else:
            self.set_registers(point.table, point.address, encode_point(point, float(value)))

    def coil(self, address: int) -> bool:
        return bool(self.tables["coil"][address])

    async def action(self, function_code: int, start_address: int, address: int, count: int,
                     registers: list[int], set_values: list[int] | list[bool] | None) -> ExcCodes | None:
        self.requests += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.exception is not None:
            return ExcCodes(self.exception)
        table = _FC_TABLE.get(function_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        if set_values is not None:
            values = [int(v) for v in set_values]
            self.writes.append((table, address, values))
            if not (table == "coil" and self.stuck_coils):
                self.tables[table][address : address + len(values)] = values
        # pymodbus keeps its own copy of the block; refresh it from ours before it answers.
        ours = self.tables[table]
        if table in ("coil", "discrete"):
            packed = SimUtils.bitsToRegisters([bool(b) for b in ours])
            registers[: len(packed)] = packed
        else:
            registers[: len(ours)] = ours
        return None

    def sim_device(self) -> SimDevice:
        blocks = (
            [SimData(0, count=self.size, values=False, datatype=DataType.BITS)],
            [SimData(0, count=self.size, values=False, datatype=DataType.BITS)],
            [SimData(0, count=self.size, values=0, datatype=DataType.REGISTERS)],
            [SimData(0, count=self.size, values=0, datatype=DataType.REGISTERS)],
        )
        return SimDevice(self.unit_id, simdata=blocks, action=self.action)


class SimServer:
    """A pymodbus server for several units, run in its own thread with its own event loop.

    Tests and the demo drive it from synchronous code; values are plain lists, which the
    server thread only reads at request time.
    """

    def __init__(self, units: list[SimUnit], *, host: str = "127.0.0.1", port: int = 0,
                 serial_port: str | None = None, baud: int = 9600, framer: str = "socket") -> None:
        self.units = {u.unit_id: u for u in units}
        self.host, self.port = host, port
        self.serial_port, self.baud = serial_port, baud
        self.framer = FramerType(framer)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: ModbusTcpServer | ModbusSerialServer | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._stopped: asyncio.Event | None = None

    def unit(self, unit_id: int) -> SimUnit:
        return self.units[unit_id]

    def start(self) -> SimServer:
        self._thread = threading.Thread(target=self._run, name="modbus-sim", daemon=True)
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("simulator did not start within 10 s")
        if self._error is not None:
            raise RuntimeError(f"simulator failed to start: {self._error}")
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start() or logged; the thread must not die silently
            self._error = exc
            self._started.set()
            log.error("simulator stopped: %s", exc)
        finally:
            loop.close()

    async def _serve(self) -> None:
        devices = [u.sim_device() for u in self.units.values()]
        if self.serial_port:
            self._server = ModbusSerialServer(devices, framer=self.framer, port=self.serial_port,
                                              baudrate=self.baud)
        else:
            if self.port == 0:
                self.port = free_port(self.host)
            self._server = ModbusTcpServer(devices, framer=self.framer, address=(self.host, self.port))
        self._stopped = asyncio.Event()
        await self._server.serve_forever(background=True)  # returns once listening
        self._started.set()
        await self._stopped.wait()
        await self._server.shutdown()  # type: ignore[no-untyped-call]

    def stop(self) -> None:
        loop, server = self._loop, self._server
        stopped = getattr(self, "_stopped", None)
        if loop is not None and server is not None and stopped is not None and loop.is_running():
            loop.call_soon_threadsafe(stopped.set)
        if self._thread is not None:
            self._thread.join(timeout=5)


def _animate(units: dict[int, tuple[SimUnit, list[PointConfig]]], started: float) -> None:
    """Values that look like a reservoir in a storm: level rises slowly, rain comes in bursts."""
    t = time.monotonic() - started
    for unit, points in units.values():
        for point in points:
            base = (point.valid_min or 0.0) + ((point.valid_max or 100.0) - (point.valid_min or 0.0)) * 0.4
            span = ((point.valid_max or 100.0) - (point.valid_min or 0.0)) * 0.05
            if point.table == "coil" or (point.table == "holding" and "auto_off" in point.id):
                continue  # written by the gateway (a relay, its auto-off timer): the simulator only keeps them
            if point.table == "discrete" or point.type == "bool":
                value: float = float(int(t / 30) % 2)
            elif "total" in point.id:
                value = round(t * 0.05, 1)
            elif "raw_mm" in point.id:
                value = 1000 * (base / 2 + span * math.sin(t / 60) + 0.002 * t)
            else:
                value = base + span * math.sin(t / 60) + 0.002 * t
            unit.set_point(point, value)


def main(argv: list[str] | None = None) -> int:
    from gateway.config import ConfigError, load_site

    parser = argparse.ArgumentParser(description="Serve a site config's Modbus TCP devices, simulated")
    parser.add_argument("config")
    parser.add_argument("--bus", help="bus name (default: the first modbus_tcp bus)")
    parser.add_argument("--animate", action="store_true", help="make values change over time")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s sim: %(message)s")
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    try:
        site = load_site(args.config)
    except ConfigError as exc:
        print("\n".join(exc.lines))
        return 1
    buses = [b for b in site.buses if b.type == "modbus_tcp" and (args.bus in (None, b.name))]
    if not buses:
        print("no matching modbus_tcp bus in the config")
        return 1
    bus: Any = buses[0]
    units = {d.unit_id: (SimUnit(d.unit_id), list(d.points)) for d in bus.devices}
    started = time.monotonic()
    _animate(units, started)
    server = SimServer([u for u, _ in units.values()], host=bus.host, port=bus.port).start()
    log.info("simulating %d devices on %s:%d", len(units), bus.host, server.port)
    try:
        while True:
            time.sleep(0.5)
            if args.animate:
                _animate(units, started)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
