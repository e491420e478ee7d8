"""Telegraf-style decoding cases: every folder in tests/cases/ is one case.

A case folder holds:
  site.yaml            a site config (device templates allowed)
  registers.yaml       simulated register contents per unit id:
                         {unit: {holding: {address: word | [words]}, input: ..., coil: ..., discrete: ...,
                                 exception: code}}
  expected.yaml        {readings: {point: value | {quality: q}}, requests: {device: n}}   or
  expected_error.txt   lines that must appear in the config error output (file:line:col included)

The registers are served through the driver's real framing, master and bus code over an
in-memory line, one poll per device; no sockets, no timing.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from drivers.modbus.bus import ModbusBus
from drivers.modbus.frames import decode, encode
from drivers.modbus.master import Master
from drivers.ports.stream import Transport
from gateway.config import ConfigError, load_site
from gateway.shared import Quality, Reading
from sim.modbus import SimUnit
from sim.rs485 import answer

CASES = Path(__file__).resolve().parents[1] / "cases"


class LoopbackLine(Transport):
    """Answers each RTU request at once from SimUnits; a missing unit stays silent."""

    def __init__(self, units: dict[int, SimUnit]) -> None:
        super().__init__()
        self.units = units
        self.requests = 0

    async def open(self) -> None:
        self._lost = None

    def close(self) -> None:
        self._fail("closed")

    async def _write(self, data: bytes) -> None:
        frame = decode("rtu", data, request=True)
        assert frame is not None
        self.requests += 1
        unit = self.units.get(frame.unit)
        if unit is not None:
            self._feed(encode("rtu", frame.unit, answer(unit, frame.pdu)))


def build_units(spec: dict[Any, Any]) -> dict[int, SimUnit]:
    units: dict[int, SimUnit] = {}
    for unit_id, tables in (spec or {}).items():
        unit = SimUnit(int(unit_id), size=2048, exception=tables.get("exception"))
        for table in ("holding", "input", "coil", "discrete"):
            for address, words in (tables.get(table) or {}).items():
                unit.set_registers(table, int(address), words if isinstance(words, list) else [words])
        units[int(unit_id)] = unit
    return units


def run_case(folder: Path) -> tuple[dict[str, Reading], dict[str, int]]:
    site = load_site(folder / "site.yaml")
    units = build_units(yaml.safe_load((folder / "registers.yaml").read_text()))
    readings: dict[str, Reading] = {}
    requests: dict[str, int] = {}

    async def sink(block: Sequence[Reading]) -> None:
        for reading in block:
            readings[reading.point] = reading

    async def poll_all() -> None:
        for bus_config in site.buses:
            bus = ModbusBus(bus_config)
            line = LoopbackLine(units)
            await line.open()
            master = Master(line, "rtu")
            for device in bus.devices:
                before = line.requests
                await bus._poll(master, device, sink)
                requests[device.config.name] = line.requests - before

    asyncio.run(poll_all())
    return readings, requests


def case_folders() -> list[Path]:
    return sorted(p for p in CASES.iterdir() if p.is_dir())


@pytest.mark.parametrize("folder", case_folders(), ids=lambda p: p.name)
def test_case(folder: Path) -> None:
    error_file = folder / "expected_error.txt"
    if error_file.exists():
        with pytest.raises(ConfigError) as caught:
            load_site(folder / "site.yaml")
        output = "\n".join(caught.value.lines).replace(str(folder) + "/", "")
        for want in error_file.read_text().strip().splitlines():
            assert want in output, f"missing {want!r} in:\n{output}"
        return
    expected = yaml.safe_load((folder / "expected.yaml").read_text())
    readings, requests = run_case(folder)
    for point, want in expected["readings"].items():
        got = readings.get(point)
        assert got is not None, f"no reading for {point}; got {sorted(readings)}"
        if isinstance(want, dict):
            assert got.quality is Quality(want["quality"]) and got.value is None, got
        else:
            assert got.quality is Quality.GOOD, got
            _assert_value(point, got.value, want)
    for device, most in (expected.get("requests") or {}).items():
        assert requests[device] <= most, f"{device}: {requests[device]} requests, expected at most {most}"


def _assert_value(point: str, got: object, want: object) -> None:
    if isinstance(want, float) and isinstance(got, int | float) and not isinstance(got, bool):
        assert math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9), (point, got, want)
    else:
        assert got == want and type(got) is type(want), (point, got, want)


def test_case_folders_exist() -> None:
    assert len(case_folders()) >= 8
