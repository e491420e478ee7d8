"""The real daemon under a stand-in systemd with its journal locked by another process: it runs degraded (READY
with a DEGRADED status, polling, the fault alarm upstream), not in a crash loop, and recovers when the lock goes."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

import pytest

from gateway.config import load_site
from gateway.journal import Journal
from gateway.shared import RecordClass
from sim.broker import Broker
from sim.gateway_process import GatewayProcess
from sim.modbus import SimServer, SimUnit
from sim.platform import Platform
from sim.support import free_port, wait_for
from tests.hil.test_lifecycle import NotifySocket, site_text

pytestmark = [pytest.mark.hil, pytest.mark.timeout(120)]


def test_locked_journal_runs_degraded_then_recovers(tmp_path: Path, broker: Broker, collector: Platform) -> None:
    gauge_port = free_port()
    config = tmp_path / "site.yaml"
    config.write_text(site_text(tmp_path, gauge_port, broker.port))
    level = load_site(config).buses[0].devices[0].points[0]
    unit = SimUnit(1)
    unit.set_point(level, 100.0)
    server = SimServer([unit], port=gauge_port).start()
    journal_path = tmp_path / "state" / "journal.sqlite"
    journal_path.parent.mkdir()
    Journal(journal_path, {"county": set(RecordClass)}).close()
    hold = sqlite3.connect(journal_path, isolation_level=None)
    hold.execute("PRAGMA locking_mode=EXCLUSIVE")
    hold.execute("BEGIN EXCLUSIVE")  # another process holds the journal
    notify = NotifySocket(tmp_path / "notify.sock")
    env = {"NOTIFY_SOCKET": str(notify.path), "RUNTIME_DIRECTORY": str(tmp_path / "run")}
    (tmp_path / "run").mkdir()
    os.environ.update(env)
    try:
        gateway = GatewayProcess(config, tmp_path / "gateway.log").start()
    finally:
        for key in env:
            del os.environ[key]
    assert gateway.proc is not None
    try:
        wait_for(lambda: notify.saw("READY=1"), 30, f"READY=1; log:\n{gateway.log()}")
        ready = next(m for m in notify.messages if "READY=1" in m)
        assert "STATUS=DEGRADED: journal_unavailable" in ready
        wait_for(lambda: 100.0 in collector.values("dam.level"), 20, "readings from the temporary journal")
        faults = lambda: [r for r in collector.records("alarm") if r.get("type") == "journal_unavailable"]  # noqa: E731
        wait_for(lambda: [f["transition"] for f in faults()] == ["raised"], 20, "the fault alarm upstream")
        hold.close()  # the other process lets go
        wait_for(lambda: [f["transition"] for f in faults()] == ["raised", "cleared"], 90,
                 f"the fault alarm cleared; log:\n{gateway.log()}")
        assert faults()[0]["alarm_id"] == faults()[1]["alarm_id"]
        unit.set_point(level, 101.0)
        wait_for(lambda: 101.0 in collector.values("dam.level"), 20, "readings from the real journal")
        assert gateway.proc.poll() is None  # one process all along: no crash loop
        assert gateway.stop() == 0
    finally:
        with contextlib.suppress(Exception):
            hold.close()
        if gateway.proc.poll() is None:
            gateway.stop()
        server.stop()
