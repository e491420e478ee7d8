"""RS-485 line budget of a typical 8-unit site: utilisation at 9600 and 115200 baud, and requests
per poll cycle with coalescing versus one request per point and per register.

The line is the site's templates (radar, rain, gas, wind, T/RH, 8-channel relay board) plus two
40-register meters with gaps, every unit polled once per second (a worst case: most sites poll
slower). Frame sizes are exact (the driver's own encoder); the byte count is also measured by
running the real bus against the simulated line through a counting relay, so the two can be
compared. On a pty the baud rate does not slow anything down, so time on the wire is computed.

    .venv/bin/python bench/fieldbus.py [--cycles 20]        → prints JSON
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from drivers.modbus.bus import ModbusBus  # noqa: E402
from drivers.modbus.codec import device_blocks  # noqa: E402
from drivers.modbus.config import ModbusRtuBus  # noqa: E402
from drivers.modbus.tools import RTU_READ_REQUEST_BYTES, reply_bytes, wire_seconds  # noqa: E402
from drivers.ports.settings import bits_per_char  # noqa: E402
from gateway.config.loader import load_site_text  # noqa: E402
from gateway.shared import NullProgress, Reading  # noqa: E402
from sim.modbus import SimUnit  # noqa: E402
from sim.rs485 import LineSimulator, NoiseRelay  # noqa: E402

TEMPLATES = ["radar-level", "rain-tipping-bucket", "gas-4-20ma", "wind-speed-direction", "temp-humidity",
             "relay-board-8ch"]


def site_yaml(port: str, baud: int) -> str:
    devices = [f"      - {{name: d{i + 1}, template: {t}, unit_id: {i + 1}, poll_interval: 1s, timeout: 200ms}}"
               for i, t in enumerate(TEMPLATES)]
    addresses = [*range(0, 10), *range(14, 24), *range(33, 43), *range(52, 62)]
    for unit in (7, 8):
        points = ", ".join(f"{{id: m{unit}.r{a}, address: {a}}}" for a in addresses)
        devices.append(f"      - {{name: d{unit}, unit_id: {unit}, poll_interval: 1s, timeout: 200ms, "
                       f"points: [{points}]}}")
    return (f"gateway: {{id: bench}}\nbuses:\n  - type: modbus_rtu\n    name: line\n    port: {port}\n"
            f"    baud: {baud}\n    devices:\n" + "\n".join(devices) + "\n")


def line_budget(bus: ModbusRtuBus) -> dict[str, Any]:
    char_bits = bits_per_char(bus.bytesize, bus.parity, bus.stopbits)
    out: dict[str, Any] = {}
    for label, coalesce in (("coalesced", True), ("one_request_per_point", False)):
        requests = bytes_ = 0
        seconds = 0.0
        for device in bus.devices:
            for block in device_blocks(device.points, device.max_block, device.max_gap, coalesce):
                requests += 1
                bytes_ += RTU_READ_REQUEST_BYTES + reply_bytes(block.table, block.count)
                seconds += wire_seconds(block.table, block.count, bus)
        out[label] = {
            "requests_per_cycle": requests,
            "bytes_per_cycle": bytes_,
            "bits_on_wire_per_s": bytes_ * char_bits,  # every unit polled once per second
            "utilisation": round(bytes_ * char_bits / bus.baud, 4),
            "occupancy_with_gaps": round(seconds, 4),
        }
    registers = sum(p.register_count for d in bus.devices for p in d.points)
    per_register_bytes = sum(RTU_READ_REQUEST_BYTES + reply_bytes(p.table, 1)
                             for d in bus.devices for p in d.points for _ in range(p.register_count))
    out["one_request_per_register"] = {
        "requests_per_cycle": registers,
        "utilisation": round(per_register_bytes * char_bits / bus.baud, 4),
    }
    return out


async def _measure(bus: ModbusBus, relay: NoiseRelay, cycles: int) -> dict[str, Any]:
    async def sink(_block: Sequence[Reading]) -> None:
        return None

    task = asyncio.create_task(bus.run(sink, NullProgress()))
    first = bus.devices[0]
    await _until(lambda: first.polls >= 1)
    start_bytes = dict(relay.bytes)
    start_polls = first.polls
    started = time.monotonic()
    await _until(lambda: first.polls >= start_polls + cycles)
    elapsed = time.monotonic() - started
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    moved = sum(relay.bytes[k] - start_bytes[k] for k in relay.bytes)
    requests = bus.master.stats.requests if bus.master else 0
    return {"cycles": cycles, "bytes_per_cycle": round(moved / cycles, 1),
            "requests_total": requests, "seconds": round(elapsed, 2),
            "good_poll_ratio": round(min(d.good_polls / max(d.polls, 1) for d in bus.devices), 3)}


async def _until(condition: Callable[[], bool], limit: float = 600.0) -> None:
    for _ in range(int(limit / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("the bus made no progress")


def measured(cycles: int) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="fg-bench-"))
    procs = [subprocess.Popen(["socat", f"pty,raw,echo=0,link={tmp}/{n}-a", f"pty,raw,echo=0,link={tmp}/{n}-b"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for n in ("gw", "dev")]
    try:
        while not all((tmp / n).exists() for n in ("gw-a", "gw-b", "dev-a", "dev-b")):
            time.sleep(0.05)
        site = load_site_text(site_yaml(str(tmp / "gw-a"), 9600), "bench.yaml")
        config = site.buses[0]
        assert isinstance(config, ModbusRtuBus)
        units = [SimUnit(d.unit_id, size=128) for d in config.devices]
        relay = NoiseRelay(str(tmp / "gw-b"), str(tmp / "dev-a"), rate=0.0).start()
        sim = LineSimulator(str(tmp / "dev-b"), units).start()
        try:
            return asyncio.run(_measure(ModbusBus(config), relay, cycles))
        finally:
            sim.stop()
            relay.stop()
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(5)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=20)
    args = parser.parse_args()
    result: dict[str, Any] = {"units": 8, "poll_interval_s": 1.0, "framing": "RTU 8N1"}
    for baud in (9600, 115200):
        config = load_site_text(site_yaml("/dev/null", baud), "bench.yaml").buses[0]
        assert isinstance(config, ModbusRtuBus)
        result[f"baud_{baud}"] = line_budget(config)
    if shutil.which("socat"):
        result["measured_on_pty"] = measured(args.cycles)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
