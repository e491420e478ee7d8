"""`fieldgate probe` and `fieldgate scan` against the simulated multi-drop line, and their refusal
to talk over a port the gateway holds."""

from __future__ import annotations

import argparse
import asyncio

import pytest

from drivers.modbus.tools import add_subcommands, parse_units
from drivers.ports.serialport import SerialTransport
from drivers.ports.settings import SerialSettings
from sim.modbus import SimUnit
from sim.rs485 import LineSimulator
from tests.hil.rig import RigFile, serial_pair

pytestmark = pytest.mark.hil


def run_tool(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fieldgate")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.handler(args)
    return code


def units() -> list[SimUnit]:
    gauge, relay = SimUnit(3, size=32), SimUnit(17, size=32)
    gauge.set_registers("holding", 0, [0x0000, 0x4146, 0xFF9C])  # 12.375 as CDAB float32, then -100
    relay.exception = 2
    return [gauge, relay]


def test_probe_shows_all_orders(rig: RigFile, capsys: pytest.CaptureFixture[str]) -> None:
    with serial_pair(rig) as (gateway_end, device_end):
        sim = LineSimulator(device_end, units()).start()
        try:
            code = run_tool(["probe", "--port", gateway_end, "--unit", "3", "--count", "3", "--timeout", "0.5"])
        finally:
            sim.stop()
    out = capsys.readouterr().out
    assert code == 0, out
    assert "CDAB 12.375" in out and "ABCD 12.375" not in out
    assert "-100" in out  # int16 column of register 2


def test_scan_finds_units_and_refuses_a_busy_port(rig: RigFile, capsys: pytest.CaptureFixture[str]) -> None:
    with serial_pair(rig) as (gateway_end, device_end):
        sim = LineSimulator(device_end, units()).start()
        try:
            code = run_tool(["scan", "--port", gateway_end, "--bauds", "19200", "--parities", "N",
                             "--units", "1-20", "--timeout", "0.03"])
            out = capsys.readouterr().out

            async def while_held() -> int:
                held = SerialTransport(SerialSettings(gateway_end, 19200))
                await held.open()  # what the running gateway does
                try:
                    return await asyncio.to_thread(run_tool, ["scan", "--port", gateway_end, "--units", "1"])
                finally:
                    held.close()

            busy = asyncio.run(while_held())
        finally:
            sim.stop()
    assert code == 0
    found = [line for line in out.splitlines() if "unit" in line]
    assert len(found) == 2 and "unit   3: answers" in found[0] and "exception 2" in found[1], out
    assert busy == 2 and "in use" in capsys.readouterr().err


def test_unit_ranges() -> None:
    assert parse_units("1-3,10") == [1, 2, 3, 10]
    with pytest.raises(ValueError):
        parse_units("0-300")
