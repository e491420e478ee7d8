"""The Modbus bus scheduler on a virtual RS-485 line: 8 units on one pty pair (one dead, one slow),
frame noise through a relay, the port vanishing and coming back, writes with read-back.

Acceptance figures are counted (polls done against polls the configured rate allows over
the same run), never wall-clock thresholds.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from drivers.modbus.bus import DeviceMode, ModbusBus, WriteError
from drivers.modbus.config import ModbusRtuBus
from gateway.shared import NullProgress, Quality, Reading
from sim.modbus import SimUnit
from sim.rs485 import LineSimulator, NoiseRelay
from sim.support import wait_for
from tests.hil.rig import RigFile

pytestmark = pytest.mark.hil

HEALTHY = (1, 2, 3, 4, 5, 6)
DEAD, SLOW = 7, 8
INTERVAL = 0.5


class PtyPair:
    """A socat pty pair at fixed link paths that can be pulled and plugged back (USB adapter unplugged)."""

    def __init__(self, directory: Path, name: str) -> None:
        self.gateway = directory / f"{name}-gw"
        self.device = directory / f"{name}-dev"
        self.proc: subprocess.Popen[bytes] | None = None

    def plug(self) -> PtyPair:
        self.proc = subprocess.Popen(
            ["socat", f"pty,raw,echo=0,link={self.gateway}", f"pty,raw,echo=0,link={self.device}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.gateway.exists() and self.device.exists(), 10, "socat pty pair")
        return self

    def pull(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(5)
            self.proc = None
        wait_for(lambda: not self.gateway.exists(), 10, "pty links removed")


@contextmanager
def pty_pairs(count: int) -> Iterator[list[PtyPair]]:
    if shutil.which("socat") is None:
        pytest.skip("socat is not installed")
    tmp = Path(tempfile.mkdtemp(prefix="fg-fieldbus-"))
    pairs = [PtyPair(tmp, f"line{i}").plug() for i in range(count)]
    try:
        yield pairs
    finally:
        for pair in pairs:
            if pair.proc is not None:
                pair.pull()
        shutil.rmtree(tmp, ignore_errors=True)


def expected(unit: int, address: int) -> int:
    return unit * 100 + address


def line_config(port: str, units: tuple[int, ...] = (*HEALTHY, DEAD, SLOW), extra_points: bool = False,
                retries: int = 1, **overrides: Any) -> ModbusRtuBus:
    devices = []
    for unit in units:
        points: list[dict[str, Any]] = [
            {"id": f"u{unit}.r0", "address": 0}, {"id": f"u{unit}.r5", "address": 5},
            {"id": f"u{unit}.c2", "table": "coil", "address": 2, "type": "bool"}]
        if extra_points:
            points.append({"id": f"u{unit}.sp", "address": 10, "type": "float32", "byte_order": "CDAB",
                           "valid_max": 100})
        devices.append({
            "name": f"u{unit}", "unit_id": unit, "poll_interval": INTERVAL,
            "timeout": 0.25 if unit == SLOW else 0.15, "retries": retries, "points": points,
        })
    data: dict[str, Any] = {"type": "modbus_rtu", "name": "line", "port": port, "baud": 19200,
                            "reconnect_min": 0.1, "reconnect_max": 0.5, "devices": devices}
    data.update(overrides)
    return ModbusRtuBus.model_validate(data)


def sim_units() -> list[SimUnit]:
    units = []
    for unit_id in (*HEALTHY, SLOW):  # DEAD is not on the line: it never answers
        unit = SimUnit(unit_id, size=64, delay=0.06 if unit_id == SLOW else 0.0)
        unit.set_registers("holding", 0, [expected(unit_id, a) for a in range(16)])
        unit.tables["coil"][2] = 1
        units.append(unit)
    return units


async def run_bus(bus: ModbusBus, until: Callable[[], bool], limit: float,
                  during: Callable[[], Awaitable[None]] | None = None) -> list[Reading]:
    """Run the bus task until ``until()`` holds (bounded by ``limit`` seconds); returns every reading."""
    readings: list[Reading] = []

    async def sink(block: Sequence[Reading]) -> None:
        readings.extend(block)

    task = asyncio.create_task(bus.run(sink, NullProgress()))
    try:
        if during is not None:
            await during()
        deadline = time.monotonic() + limit
        while not until() and time.monotonic() < deadline:
            assert not task.done(), f"bus task ended: {task.exception()}"
            await asyncio.sleep(0.05)
        assert until(), "the bus did not reach the expected state in time"
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return readings


def run_until_polled(bus: ModbusBus, cycles: int) -> tuple[list[Reading], int]:
    """Run the bus until unit 1 has been polled ``cycles`` times: its readings, and the polls its rate allowed."""
    started = time.monotonic()
    readings = asyncio.run(run_bus(bus, lambda: bus.device("u1").polls >= cycles, 60))
    return readings, int((time.monotonic() - started) / INTERVAL) + 1


def assert_no_wrong_value(readings: list[Reading]) -> None:
    for r in readings:
        if r.quality is Quality.GOOD:
            unit, register = r.point.split(".")
            want: object = True if register == "c2" else expected(int(unit[1:]), int(register[1:]))
            assert r.value == want, f"wrong value published: {r}"
        else:
            assert r.value is None, r


def test_dead_and_slow_units_leave_healthy_units_their_rate(rig: RigFile) -> None:
    with pty_pairs(1) as (pair,):
        sim = LineSimulator(str(pair.device), sim_units()).start()
        bus = ModbusBus(line_config(str(pair.gateway)))
        try:
            readings, allowed = run_until_polled(bus, 16)
        finally:
            sim.stop()
    for unit in HEALTHY:
        state = bus.device(f"u{unit}")
        assert state.good_polls >= 0.9 * allowed, (unit, state.good_polls, allowed)
    slow = bus.device(f"u{SLOW}")
    assert slow.mode is DeviceMode.ONLINE and slow.good_polls >= 0.9 * allowed
    dead = bus.device(f"u{DEAD}")
    assert dead.mode is DeviceMode.OFFLINE and dead.good_polls == 0
    # Back-off: the dead unit was asked far less often than the healthy ones.
    assert dead.requests < bus.device("u1").requests / 2
    dead_points = [r for r in readings if r.point.startswith(f"u{DEAD}.")]
    assert dead_points and all(r.quality is Quality.COMM_FAIL and r.value is None for r in dead_points)
    assert_no_wrong_value(readings)


def test_five_percent_noise_never_publishes_a_wrong_value(rig: RigFile) -> None:
    if not rig.virtual:
        pytest.skip("the noise relay needs the virtual rig")
    with pty_pairs(2) as (to_gateway, to_devices):
        # gateway ⇄ pty pair 1 ⇄ relay (damages 5% of frames) ⇄ pty pair 2 ⇄ units
        relay = NoiseRelay(str(to_gateway.device), str(to_devices.gateway), rate=0.05, seed=7).start()
        sim = LineSimulator(str(to_devices.device), sim_units()).start()
        # No retries: a damaged frame must surface as a quality flag rather than be hidden by a good retry.
        bus = ModbusBus(line_config(str(to_gateway.gateway), units=HEALTHY, retries=0))
        try:
            readings = asyncio.run(run_bus(bus, lambda: relay.stats.damaged >= 25, 90))
        finally:
            sim.stop()
            relay.stop()
    assert_no_wrong_value(readings)
    flagged = [r for r in readings if r.quality in (Quality.BAD_FRAME, Quality.COMM_FAIL)]
    assert flagged, "damaged frames must show up as quality flags"
    assert bus.master is not None and bus.master.stats.bad_frames > 0
    good = [r for r in readings if r.quality is Quality.GOOD]
    assert len(good) > 0.8 * len(readings)


def test_thirty_percent_noise_leaves_a_live_unit_its_rate_and_a_dead_one_backed_off(rig: RigFile) -> None:
    # Issue 14: under 30 % frame damage (both ways) a live unit's garbled replies took it offline and its
    # failed probes doubled the interval, so it went seconds unasked. Counted, not timed: the polls the
    # gateway made of unit 1 against those its rate allows over the run.
    if not rig.virtual:
        pytest.skip("the noise relay needs the virtual rig")
    with pty_pairs(2) as (to_gateway, to_devices):
        relay = NoiseRelay(str(to_gateway.device), str(to_devices.gateway), rate=0.3, seed=14).start()
        # Unit 1 alone on the line: a request re-addressed by the relay meets silence, never another unit.
        sim = LineSimulator(str(to_devices.device), [u for u in sim_units() if u.unit_id == 1]).start()
        bus = ModbusBus(line_config(str(to_gateway.gateway), units=(1, DEAD), retries=0))
        try:
            readings, allowed = run_until_polled(bus, 40)
        finally:
            sim.stop()
            relay.stop()
    live, dead = bus.device("u1"), bus.device(f"u{DEAD}")
    # 0.75, not closer to the 95 % measured: the dead unit's probe timeouts share the line and a loaded CI
    # box slows the loop; the scripted tests in tests/unit/test_bus_noise.py pin the policy exactly.
    assert live.polls >= 0.75 * allowed, (live.polls, allowed, live.mode)
    assert 0 < live.good_polls < live.polls  # the noise reached it, and it still answered
    # The relay counts what the gateway sent, before damaging it (what bench/soak.py measures stalls by).
    assert relay.requests.get(1, 0) >= 0.9 * live.requests
    assert dead.mode is DeviceMode.OFFLINE and dead.good_polls == 0
    assert dead.requests < live.requests / 2  # backed off: one request per probe, thinning out
    assert_no_wrong_value(readings)


def test_port_pulled_and_plugged_back(rig: RigFile) -> None:
    if not rig.virtual:
        pytest.skip("pulling the port needs the virtual rig")
    with pty_pairs(1) as (pair,):
        units = sim_units()[:1]
        holder: dict[str, LineSimulator] = {"sim": LineSimulator(str(pair.device), units).start()}
        bus = ModbusBus(line_config(str(pair.gateway), units=(1,)))
        readings: list[Reading] = []

        def seen(quality: Quality, after: int = 0) -> bool:
            return any(r.quality is quality for r in readings[after:])

        async def scenario() -> None:
            async def sink(block: Sequence[Reading]) -> None:
                readings.extend(block)

            task = asyncio.create_task(bus.run(sink, NullProgress()))
            try:
                await wait_async(lambda: seen(Quality.GOOD), "first good reading")
                holder["sim"].stop()
                pair.pull()  # the USB adapter vanishes
                mark = len(readings)
                await wait_async(lambda: seen(Quality.COMM_FAIL, mark), "comm_fail after unplug")
                assert not bus.connected or not task.done()
                pair.plug()  # ... and comes back under the same name
                holder["sim"] = LineSimulator(str(pair.device), units).start()
                mark = len(readings)
                await wait_async(lambda: seen(Quality.GOOD, mark), "good readings after replug")
                assert not task.done()
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

        try:
            asyncio.run(scenario())
        finally:
            holder["sim"].stop()
    assert_no_wrong_value(readings)


async def wait_async(predicate: Callable[[], bool], what: str, limit: float = 20) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def test_writes_are_verified_by_read_back(rig: RigFile) -> None:
    with pty_pairs(1) as (pair,):
        units = sim_units()[:2]
        units[1].stuck_coils = True
        sim = LineSimulator(str(pair.device), units).start()
        bus = ModbusBus(line_config(str(pair.gateway), units=(1, 2), extra_points=True))
        results: dict[str, Any] = {}

        async def writes() -> None:
            await wait_async(lambda: bus.connected and bus.device("u1").polls > 0, "bus up")
            results["coil_off"] = await bus.write_point("u1.c2", False)
            results["setpoint"] = await bus.write_point("u1.sp", 12.5)
            for name, call in (("stuck", bus.write_point("u2.c2", False)),
                               ("range", bus.write_point("u1.sp", 500.0)),
                               ("input", bus.write_point("nope", 1))):
                try:
                    await call
                except WriteError as exc:
                    results[name] = str(exc)

        try:
            asyncio.run(run_bus(bus, lambda: len(results) == 5, 30, during=writes))
        finally:
            sim.stop()
    assert results["coil_off"] is False and units[0].coil(2) is False
    assert results["setpoint"] == pytest.approx(12.5)
    assert ("coil", 2, [0]) in units[0].writes
    assert "read-back" in results["stuck"] and units[1].coil(2) is True
    assert "outside" in results["range"] and "no point" in results["input"]
