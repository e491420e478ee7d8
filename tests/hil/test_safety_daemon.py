"""Offline-first safety through the real daemon: with the uplink down, a water level crossing its
rule switches the siren relay (read back) and plays the clip; the evidence reaches the broker
after it returns. A rule on a comm-fail gauge does not sound the siren."""

from __future__ import annotations

import shutil
import time
import wave
from pathlib import Path

import pytest

from gateway.config import load_site
from sim.broker import Broker
from sim.gateway_process import GatewayProcess
from sim.modbus import SimServer, SimUnit
from sim.platform import Platform
from sim.sites import SIREN_COIL, safety_site
from sim.support import free_port, wait_for

pytestmark = [pytest.mark.hil, pytest.mark.timeout(120)]
@pytest.mark.skipif(shutil.which("sox") is None, reason="sox is installed by .ci/run")
def test_siren_sounds_with_the_uplink_down_and_evidence_follows(
    tmp_path: Path, broker: Broker, collector: Platform
) -> None:
    gauge_port, board_port = free_port(), free_port()
    config = safety_site(tmp_path, gauge_port, board_port, broker.port)
    level = load_site(config).buses[0].devices[0].points[0]
    gauge, board = SimUnit(1), SimUnit(1)
    gauge.set_point(level, 149.0)
    gauges = SimServer([gauge], port=gauge_port).start()
    relay = SimServer([board], port=board_port).start()
    broker.stop()  # the uplink is down from the start (the platform's subscription persists in the broker)
    gateway = GatewayProcess(config, tmp_path / "gateway.log").start()
    try:
        time.sleep(2)
        assert not board.coil(SIREN_COIL), "siren on before any alarm"
        gauge.set_point(level, 152.6)
        wait_for(lambda: board.coil(SIREN_COIL), 20, f"siren coil ON; log:\n{gateway.log()}")
        assert ("coil", SIREN_COIL, [1]) in board.writes
        wait_for(lambda: (tmp_path / "sink.wav").exists() and (tmp_path / "sink.wav").stat().st_size > 1000, 20,
                 "the evacuate clip played into the sink")
        with wave.open(str(tmp_path / "sink.wav")) as played:
            assert played.getnframes() >= 1000
        # The uplink returns: the alarm and the broadcast evidence arrive.
        broker.start()
        wait_for(lambda: any(r.get("rule") == "level.danger" and r.get("transition") == "raised"
                             for r in collector.records("alarm")), 30, "alarm record at the broker")
        wait_for(lambda: any(r.get("kind") == "evidence" for r in collector.records("evidence")), 30,
                 "broadcast evidence at the broker")
        evidence = collector.records("evidence")
        assert any("siren" in str(r) for r in evidence), evidence
    finally:
        assert gateway.stop() == 0, gateway.log()
        gauges.stop()
        relay.stop()


def test_comm_fail_gauge_never_sounds_the_siren(tmp_path: Path, broker: Broker, collector: Platform) -> None:
    gauge_port, board_port = free_port(), free_port()
    config = safety_site(tmp_path, gauge_port, board_port, broker.port)
    board = SimUnit(1)
    relay = SimServer([board], port=board_port).start()
    # No gauge server at all: every read of dam.level fails (comm_fail).
    gateway = GatewayProcess(config, tmp_path / "gateway.log").start()
    try:
        wait_for(lambda: any(r.get("rule") == "level.gauge_lost" and r.get("transition") == "raised"
                             for r in collector.records("alarm")), 30, f"fault alarm; log:\n{gateway.log()}")
        time.sleep(1)
        assert not any(table == "coil" and values and values[0] for table, _a, values in board.writes), board.writes
        assert not board.coil(SIREN_COIL)
    finally:
        assert gateway.stop() == 0, gateway.log()
        relay.stop()
