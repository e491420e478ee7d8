"""The daemon under a (stand-in) systemd: READY and watchdog pings on a real NOTIFY_SOCKET, SIGHUP with a
good and a bad config, SIGTERM flushing the journal and saying offline."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import time
from pathlib import Path

import pytest

from gateway.config import load_site
from sim.broker import Broker
from sim.gateway_process import GatewayProcess
from sim.modbus import SimServer, SimUnit
from sim.platform import Platform
from sim.sites import radar_gauge_bus
from sim.support import free_port, wait_for

pytestmark = [pytest.mark.hil, pytest.mark.timeout(120)]


def site_text(tmp: Path, gauge_port: int, broker_port: int, level_id: str = "dam.level") -> str:
    return f"""
gateway: {{id: life-gw, state_dir: {tmp / 'state'}}}
buses:
{radar_gauge_bus(gauge_port, point_id=level_id, point_extra="report: {deadband: 0.001}")}
links:
  - {{type: mqtt, name: county, host: 127.0.0.1, port: {broker_port}, reconnect_min: 0.2, reconnect_max: 1}}
"""


class NotifySocket:
    """What systemd listens on: a unix datagram socket named by NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[str] = []

    def drain(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except (TimeoutError, BlockingIOError):
                return self.messages

    def saw(self, key: str) -> bool:
        return any(key in m.split("\n") or any(line.startswith(key) for line in m.split("\n"))
                   for m in self.drain())


def test_notify_reload_and_stop(tmp_path: Path, broker: Broker, collector: Platform) -> None:
    gauge_port = free_port()
    config = tmp_path / "site.yaml"
    config.write_text(site_text(tmp_path, gauge_port, broker.port))
    level = load_site(config).buses[0].devices[0].points[0]
    unit = SimUnit(1)
    unit.set_point(level, 100.0)
    server = SimServer([unit], port=gauge_port).start()
    notify = NotifySocket(tmp_path / "notify.sock")
    os.environ["NOTIFY_SOCKET"] = str(notify.path)
    os.environ["WATCHDOG_USEC"] = "2000000"  # 2 s: pings every second while every loop makes progress
    try:
        gateway = GatewayProcess(config, tmp_path / "gateway.log").start()
    finally:
        del os.environ["NOTIFY_SOCKET"], os.environ["WATCHDOG_USEC"]
    assert gateway.proc is not None
    try:
        wait_for(lambda: notify.saw("READY=1"), 20, f"READY=1; log:\n{gateway.log()}")
        ready = next(m for m in notify.messages if "READY=1" in m)
        assert "STATUS=polling 1 buses" in ready
        wait_for(lambda: sum(m.count("WATCHDOG=1") for m in notify.drain()) >= 2, 10, "watchdog pings")
        wait_for(lambda: 100.0 in collector.values("dam.level"), 20, "first reading")

        # A bad config on SIGHUP: refused with file:line:col in the log, the old one keeps running.
        config.write_text(site_text(tmp_path, gauge_port, broker.port).replace("poll_interval", "pol_interval"))
        gateway.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in gateway.log(), 15, "the reload refusal")
        assert f"{config}:" in gateway.log() and "did you mean 'poll_interval'" in gateway.log()
        assert gateway.proc.poll() is None
        wait_for(lambda: notify.saw("RELOADING=1"), 5, "RELOADING=1")
        unit.set_point(level, 101.0)
        wait_for(lambda: 101.0 in collector.values("dam.level"), 20, "polling goes on with the old config")

        # A good config on SIGHUP: applied (the point is renamed), seq carries on.
        config.write_text(site_text(tmp_path, gauge_port, broker.port, level_id="dam.level_m"))
        gateway.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: bool(collector.values("dam.level_m")), 20, f"the new point id; log:\n{gateway.log()}")
        assert "offline" not in collector.status(), "a reload made the site flap offline upstream"
        seqs = [r["seq"] for r in collector.records(None)]
        assert len(seqs) == len(set(seqs)), "a seq was reused across the reload"

        # SIGTERM: stop polling, flush the journal, publish offline, exit 0.
        unit.set_point(level, 102.0)
        time.sleep(0.3)
        assert gateway.stop() == 0, gateway.log()
        assert notify.saw("STOPPING=1")
        wait_for(lambda: collector.status()[-1:] == ["offline"], 10, "offline status")
    finally:
        if gateway.proc.poll() is None:
            gateway.stop()
        server.stop()
    with sqlite3.connect(tmp_path / "state" / "journal.sqlite") as db:
        last = db.execute("SELECT seq FROM sqlite_sequence WHERE name='records'").fetchone()[0]
        pending = {row[0] for row in db.execute("SELECT seq FROM records")}
    delivered = {r["seq"] for r in collector.records(None)}
    assert set(range(1, last + 1)) <= delivered | pending, "a reading taken before SIGTERM was lost"
