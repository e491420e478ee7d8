"""End to end on the rig: simulated gauge → real gateway process → real broker → platform subscriber."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from drivers.modbus.config import PointConfig
from gateway.config import load_site
from sim.broker import Broker
from sim.gateway_process import GatewayProcess
from sim.modbus import SimServer, SimUnit
from sim.platform import Platform
from sim.support import free_port, wait_for
from tests.hil.rig import RigFile, serial_pair

pytestmark = pytest.mark.hil

POINTS_YAML = """
          - {id: res.level, table: holding, address: 0, type: float32, byte_order: CDAB, unit: m,
             report: {deadband: 0.001}}
          - {id: res.temp, table: input, address: 5, type: int16, scale: 0.1, unit: degC}
          - {id: res.count, table: holding, address: 10, type: uint32, byte_order: ABCD}
          - {id: res.flow, table: holding, address: 20, type: float32, byte_order: DCBA, unit: m3/s}
          - {id: res.gate_open, table: coil, address: 3, type: bool}
"""


def site_yaml(tmp: Path, bus: str, broker_port: int) -> Path:
    text = f"""
gateway: {{id: rig-gw, state_dir: {tmp / 'state'}}}
buses:
  - {bus}
    devices:
      - name: gauge
        unit_id: 7
        poll_interval: 200ms
        timeout: 500ms
        points:{POINTS_YAML}
      - name: rain
        unit_id: 8
        poll_interval: 200ms
        timeout: 500ms
        points:
          - {{id: rain.total, table: input, address: 0, type: uint16, scale: 0.1, unit: mm}}
links:
  - {{type: mqtt, name: county, host: 127.0.0.1, port: {broker_port}, reconnect_min: 0.2, reconnect_max: 1}}
"""
    path = tmp / "site.yaml"
    path.write_text(text)
    return path


def points_of(config: Path) -> dict[str, PointConfig]:
    site = load_site(config)
    return {p.id: p for b in site.buses for d in b.devices for p in d.points}


def load_units(config: Path) -> tuple[SimUnit, SimUnit, dict[str, PointConfig]]:
    points = points_of(config)
    gauge, rain = SimUnit(7), SimUnit(8)
    gauge.set_point(points["res.level"], 12.345)
    gauge.set_point(points["res.temp"], -12.3)
    gauge.set_point(points["res.count"], 3_000_000_123)
    gauge.set_point(points["res.flow"], 0.75)
    gauge.set_point(points["res.gate_open"], True)
    rain.set_point(points["rain.total"], 42.7)
    return gauge, rain, points


def expect_values(collector: Platform) -> None:
    expected = {"res.level": 12.345, "res.temp": -12.3, "res.count": 3_000_000_123, "res.flow": 0.75,
                "res.gate_open": True, "rain.total": 42.7}

    def all_arrived() -> bool:
        return all(any(_close(v, want) for v in collector.values(point)) for point, want in expected.items())

    wait_for(all_arrived, 30, f"all points at the broker; got {collector.records()[-10:]}")
    for record in collector.records():
        assert record["q"] == "good", record
        assert isinstance(record["seq"], int) and isinstance(record["ts"], float)
    seqs = [r["seq"] for r in collector.records()]
    assert len(seqs) == len(set(seqs)), "a sequence number was used twice"
    units = {r["point"]: r["unit"] for r in collector.records()}
    assert units["res.level"] == "m" and units["rain.total"] == "mm"


def _close(got: object, want: object) -> bool:
    if isinstance(want, bool) or isinstance(got, bool):
        return got is want
    assert isinstance(got, int | float) and isinstance(want, int | float)
    return abs(got - want) <= 1e-3 * max(1.0, abs(want))


def start_tcp_site(tmp: Path, broker: Broker) -> tuple[SimUnit, dict[str, PointConfig], SimServer, GatewayProcess]:
    """The two simulated units behind one Modbus TCP endpoint, and the gateway polling them."""
    port = free_port()
    config = site_yaml(tmp, f"type: modbus_tcp\n    name: tcp-gauges\n    host: 127.0.0.1\n    port: {port}",
                       broker.port)
    gauge, rain, points = load_units(config)
    server = SimServer([gauge, rain], port=port).start()
    return gauge, points, server, GatewayProcess(config, tmp / "gateway.log").start()


def test_modbus_tcp_end_to_end(tmp_path: Path, broker: Broker, collector: Platform) -> None:
    gauge, points, server, gateway = start_tcp_site(tmp_path, broker)
    try:
        expect_values(collector)
        # A change on the device arrives with its new value.
        gauge.set_point(points["res.level"], 15.5)
        wait_for(lambda: any(_close(v, 15.5) for v in collector.values("res.level")), 15, "new level")
        assert "online" in collector.status()
        # The device goes silent: the platform sees comm_fail, never the last value repeated.
        server.stop()
        wait_for(lambda: any(r["q"] == "comm_fail" and r["point"] == "res.level" for r in collector.records()),
                 20, "comm_fail after the device vanished")
        failed = [r for r in collector.records() if r["q"] == "comm_fail"]
        assert all(r["value"] is None for r in failed)
    finally:
        server.stop()
        assert gateway.stop() == 0, gateway.log()
    wait_for(lambda: collector.status()[-1:] == ["offline"], 10, "offline status after SIGTERM")


def test_modbus_rtu_end_to_end(tmp_path: Path, rig: RigFile, broker: Broker, collector: Platform) -> None:
    with serial_pair(rig) as (gateway_end, device_end):
        bus = f"type: modbus_rtu\n    name: rs485\n    port: {gateway_end}\n    baud: 19200"
        config = site_yaml(tmp_path, bus, broker.port)
        gauge, rain, _ = load_units(config)
        server = SimServer([gauge, rain], serial_port=device_end, baud=19200, framer="rtu").start()
        gateway = GatewayProcess(config, tmp_path / "gateway.log").start()
        try:
            expect_values(collector)
        finally:
            assert gateway.stop() == 0, gateway.log()
            server.stop()


def test_broker_outage_loses_nothing(tmp_path: Path, broker: Broker, collector: Platform) -> None:
    """Stop the broker mid-run; every reading journalled meanwhile arrives after it returns."""
    gauge, points, server, gateway = start_tcp_site(tmp_path, broker)
    outage_values = [20.0 + i * 0.25 for i in range(12)]
    try:
        expect_values(collector)
        broker.stop()
        for value in outage_values:  # each value is held for at least two poll intervals
            gauge.set_point(points["res.level"], value)
            time.sleep(0.5)
        broker.start()
        wait_for(lambda: all(any(_close(v, want) for v in collector.values("res.level"))
                             for want in outage_values), 60,
                 f"outage values at the broker; got {collector.values('res.level')[-20:]}")
    finally:
        assert gateway.stop() == 0, gateway.log()
        server.stop()
    # Every record the journal ever numbered either reached the platform or is still durably
    # pending (taken in the last moments before SIGTERM): seqs 1..last, no gap.
    with sqlite3.connect(tmp_path / "state" / "journal.sqlite") as db:
        last = db.execute("SELECT seq FROM sqlite_sequence WHERE name='records'").fetchone()[0]
        pending = {row[0] for row in db.execute("SELECT seq FROM records")}
    delivered = {r["seq"] for r in collector.records(None)}
    missing = set(range(1, last + 1)) - delivered - pending
    assert not missing, f"journalled records neither delivered nor pending: {sorted(missing)[:20]}"
    assert len(pending) < last / 2, "the backlog did not drain after the broker returned"
