"""The status page's technician probe goes through the running bus task (one master on the line)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.config import load_site_text
from gateway.shared import Reading
from sim.modbus import SimServer, SimUnit
from sim.support import free_port

pytestmark = [pytest.mark.hil, pytest.mark.timeout(60)]


def test_probe_through_the_daemon(tmp_path: Path) -> None:
    port = free_port()
    site = load_site_text(f"""
gateway: {{id: probe-gw, state_dir: {tmp_path / 'state'}}}
buses:
  - type: modbus_tcp
    name: plc
    host: 127.0.0.1
    port: {port}
    devices:
      - {{name: gauge, unit_id: 1, poll_interval: 200ms, points: [{{id: level, address: 0}}]}}
""", "site.yaml")
    known, other = SimUnit(1), SimUnit(9)  # unit 9 is on the line but not in the config
    known.set_registers("holding", 0, [11, 22, 33])
    other.set_registers("input", 100, [0x4146, 0x0000])
    server = SimServer([known, other], port=port).start()

    async def scenario() -> tuple[dict[str, object], dict[str, object], str]:
        gateway = Gateway(site)
        polled = asyncio.Event()

        async def watch(_reading: Reading) -> None:
            polled.set()

        gateway.observers.append(watch)
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        await polled.wait()
        first = await gateway.action("probe", {"bus": "plc", "unit_id": 1, "table": "holding", "address": 0,
                                               "count": 3})
        second = await gateway.action("probe", {"bus": "plc", "unit_id": 9, "table": "input", "address": 100,
                                                "count": 2})
        try:
            await gateway.action("probe", {"bus": "plc", "unit_id": 77, "table": "holding", "address": 0,
                                           "count": 1})
            error = ""
        except LookupError as exc:
            error = str(exc)
        stop.set()
        await task
        return first, second, error

    try:
        first, second, error = asyncio.run(asyncio.wait_for(scenario(), 45))
    finally:
        server.stop()
    assert first["registers"] == [11, 22, 33]
    assert second["registers"] == [0x4146, 0x0000]
    assert "unit 77" in error
