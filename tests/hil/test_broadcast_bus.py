"""A siren relay board sharing a polled RS-485 line with a gauge: one master (the bus task) on the line.

The line is a socat pty pair (or the bench's adapters); on the device end one pymodbus RTU server
answers for the gauge (unit 1) and the relay board (unit 2). The real `ModbusBus` polls both; the
siren's coil writes go through `CoilWriter.for_bus(bus)`, verified by the bus's read-back.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivers.broadcast.busboard import CoilWriter
from drivers.broadcast.config import SirenRelayConfig
from drivers.broadcast.factory import build_outputs
from drivers.modbus.bus import ModbusBus
from drivers.modbus.config import ModbusRtuBus
from gateway.alerts.audit import AuditLog
from gateway.alerts.config import BroadcastConfig
from gateway.alerts.model import Alert, Status
from gateway.alerts.signing import public_key_text, sign
from gateway.alerts.subsystem import BroadcastSubsystem
from gateway.shared import NullProgress, Quality, Reading
from sim.modbus import SimServer, SimUnit
from tests.hil.rig import RigFile, serial_pair

pytestmark = [pytest.mark.hil, pytest.mark.timeout(90)]
SIREN_COIL, AUTO_OFF_REG = 0, 5


def bus_config(port: str) -> ModbusRtuBus:
    return ModbusRtuBus.model_validate({
        "type": "modbus_rtu", "name": "line1", "port": port, "baud": 38400,
        "devices": [
            {"name": "radar", "unit_id": 1, "poll_interval": 0.2, "timeout": 0.3, "retries": 0,
             "points": [{"id": "dam.level", "address": 0, "type": "uint16", "scale": 0.01, "unit": "m"}]},
            {"name": "relays", "unit_id": 2, "poll_interval": 1.0, "timeout": 0.3, "retries": 1,
             "points": [{"id": "siren.coil", "table": "coil", "address": SIREN_COIL, "type": "bool"},
                        {"id": "siren.auto_off", "table": "holding", "address": AUTO_OFF_REG}]},
        ],
    })


def broadcast_config(tmp: Path, keys: dict[str, Ed25519PrivateKey], steps: list[list[float]]) -> BroadcastConfig:
    clip = tmp / "x.wav"
    clip.write_bytes(b"")
    return BroadcastConfig.model_validate({
        "sender": "reservoir-01",
        "outputs": {"siren": {"type": "modbus_relay_siren", "coil": SIREN_COIL, "max_activation": 30,
                              "board": {"transport": "bus", "bus": "line1", "unit_id": 2},
                              "board_auto_off": {"register_address": AUTO_OFF_REG, "time_unit": 1}}},
        "zones": {"dam": {"outputs": ["siren"]}},
        "clips": {"x": {"file": str(clip)}},
        "patterns": {"flood": {"steps": steps, "repeat": 40}, "drill": {"steps": [[1, 2]], "repeat": 2}},
        "status_patterns": {"actual": "flood", "exercise": "drill"},
        "announce": {"exercise": "x", "test": "x"},
        "all_clear_clip": "x",
        "rate_limit": {"min_interval": 0, "max_per_hour": 60},
        "operators": {name: public_key_text(key) for name, key in keys.items()},
        "audit_path": str(tmp / "audit.log"),
    })


class Line:
    def __init__(self, tmp: Path, server: SimServer, bus: ModbusBus, steps: list[list[float]]) -> None:
        self.server, self.bus = server, bus
        self.gauge, self.board = server.unit(1), server.unit(2)
        self.readings: list[Reading] = []
        self.faults: list[dict[str, Any]] = []
        self.keys = {name: Ed25519PrivateKey.generate() for name in ("zhang", "li")}
        self.config = broadcast_config(tmp, self.keys, steps)
        self.audit = AuditLog(self.config.audit_path)
        self.outputs = build_outputs(self.config.outputs, buses=[bus], bus_configs=[bus.config])
        self.subsystem = BroadcastSubsystem(self.config, self.audit, self.outputs, on_fault_alarm=self._fault)

    async def sink(self, block: Sequence[Reading]) -> None:
        if len(self.readings) < 10_000:
            self.readings.extend(block)

    async def _fault(self, record: dict[str, Any]) -> None:
        self.faults.append(record)

    async def sound(self, ident: str) -> list[Any]:
        now = dt.datetime.now(dt.UTC)
        alert = Alert(identifier=ident, sender="console", sent=now, status=Status.ACTUAL, event="洪水预警",
                      areas=("dam",), expires=now + dt.timedelta(hours=1))
        sigs = [sign(alert, name, key, now.timestamp()) for name, key in self.keys.items()]
        return await self.subsystem.handle(alert, origin="manual", signatures=sigs)


@contextlib.asynccontextmanager
async def line(tmp: Path, rig: RigFile, steps: list[list[float]]) -> AsyncIterator[Line]:
    with serial_pair(rig) as (gateway_end, device_end):
        server = SimServer([SimUnit(1), SimUnit(2)], serial_port=device_end, baud=38400, framer="rtu").start()
        server.unit(1).set_registers("holding", 0, [14950])
        bus = ModbusBus(bus_config(gateway_end))
        the_line = Line(tmp, server, bus, steps)
        task = asyncio.create_task(bus.run(the_line.sink, NullProgress()))
        try:
            await until(lambda: bus.connected and any(r.point == "dam.level" for r in the_line.readings), 10)
            yield the_line
        finally:
            await the_line.subsystem.close()
            the_line.audit.close()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            server.stop()


async def until(condition: Callable[[], bool], within: float, what: str = "condition") -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_siren_on_a_polled_line_switches_through_the_bus(tmp_path: Path, rig: RigFile) -> None:
    async def body() -> None:
        async with line(tmp_path, rig, [[0.6, 0.4]]) as ln:
            results = await ln.sound("bus-1")
            siren = next(r for r in results if r.action == "activate")
            assert siren.ok and siren.detail["readback"] is True and siren.detail["route"] == "bus", results
            assert ln.board.coil(SIREN_COIL)
            # The board's own auto-off timer was armed before the coil went on (ceil(limit / 1 s)).
            writes = [(table, address) for table, address, _ in ln.board.writes]
            assert writes.index(("holding", AUTO_OFF_REG)) < writes.index(("coil", SIREN_COIL))
            assert ln.board.tables["holding"][AUTO_OFF_REG] == 30  # ceil(min(30 s max, 40 x 1 s) / 1 s)
            before = len([r for r in ln.readings if r.point == "dam.level"])
            await until(lambda: ("coil", SIREN_COIL, [0]) in ln.board.writes, 5, "the cadence's OFF edge")
            await until(lambda: ("coil", SIREN_COIL, [1]) in ln.board.writes[-3:], 5, "the next ON edge")
            # The gauge kept being polled, good, while the siren sang on the same line.
            level = [r for r in ln.readings if r.point == "dam.level"][before:]
            assert level and all(r.quality is Quality.GOOD for r in level)
            cancel = await ln.subsystem.cancel("bus-1")
            assert any(r.output == "siren" and r.action == "deactivate" and r.ok for r in cancel), cancel
            assert not ln.board.coil(SIREN_COIL)
            assert ln.faults == []
    asyncio.run(body())


def test_stuck_relay_on_the_bus_is_a_readback_fault(tmp_path: Path, rig: RigFile) -> None:
    async def body() -> None:
        async with line(tmp_path, rig, [[0.6, 0.4]]) as ln:
            ln.board.stuck_coils = True
            results = await ln.sound("bus-stuck")
            siren = next(r for r in results if r.action == "activate")
            assert not siren.ok and siren.fault == "readback_mismatch", results
            assert [f["fault"] for f in ln.faults] == ["readback_mismatch"]
            assert not ln.board.coil(SIREN_COIL)
    asyncio.run(body())


def test_readback_failures_mid_cadence_report_once_then_recovery(tmp_path: Path, rig: RigFile) -> None:
    async def body() -> None:
        async with line(tmp_path, rig, [[0.3, 0.3]]) as ln:
            results = await ln.sound("bus-flaky")
            assert next(r for r in results if r.action == "activate").ok
            ln.board.stuck_coils = True  # several edges in a row now fail their read-back
            await until(lambda: ln.outputs["siren"].status()["failed_edges"] >= 3, 10, "three failed edges")
            ln.board.stuck_coils = False
            await until(lambda: any(f["type"] == "broadcast_fault_cleared" for f in ln.faults), 10, "recovery")
            await asyncio.sleep(0.1)
            kinds = [(f["type"], f.get("action"), f.get("fault")) for f in ln.faults]
            assert kinds == [("broadcast_fault", "cadence", "readback_mismatch"),
                             ("broadcast_fault_cleared", "cadence", None)], kinds
            cleared = ln.faults[1]
            assert cleared["alert_id"] == "bus-flaky" and cleared["detail"]["failed_edges"] >= 3
            await ln.subsystem.cancel("bus-flaky")
    asyncio.run(body())


def test_blocked_loop_delays_the_bus_off_until_it_resumes(tmp_path: Path, rig: RigFile) -> None:
    """The documented limit of the bus route: the backstop's OFF waits for the loop, then goes out."""
    import time

    from drivers.broadcast.siren import SirenRelay
    from gateway.alerts.contract import Activation, Cadence

    async def body() -> None:
        async with line(tmp_path, rig, [[0.6, 0.4]]) as ln:
            cfg = ln.config.outputs["siren"].model_copy(update={"max_activation": 0.5})
            assert isinstance(cfg, SirenRelayConfig)
            siren = SirenRelay("s2", cfg, {ln.bus.name: CoilWriter.for_bus(ln.bus)})
            result = await siren.activate(Activation("x", "Actual", ("dam",),
                                                     cadence=Cadence("long", ((5.0, 1.0),), 3)))
            assert result.ok and ln.board.coil(SIREN_COIL)
            assert ln.board.tables["holding"][AUTO_OFF_REG] == 1  # the board's own timer: ceil(0.5 s / 1 s)
            time.sleep(1.5)  # noqa: ASYNC251 - block the loop past the limit: the bus cannot serve the OFF
            assert ln.board.coil(SIREN_COIL), "an OFF reached the board without the event loop?"
            await until(lambda: not ln.board.coil(SIREN_COIL), 5, "the queued OFF once the loop runs again")
            assert siren.status()["forced_off"] == 1
            await siren.close()
    asyncio.run(body())
