"""Offline-first safety through the real daemon: with the uplink down, a water level crossing its
rule switches the siren relay (read back) and plays the clip; the evidence reaches the broker
after it returns. A rule on a comm-fail gauge does not sound the siren."""

from __future__ import annotations

import shutil
import time
import wave
from pathlib import Path

import pytest

from drivers.modbus.simulator import SimServer, SimUnit
from gateway.config import load_site
from tests.hil.rig import Broker, Collector, GatewayProcess, free_port, radar_gauge_bus, tone, wait_for

pytestmark = [pytest.mark.hil, pytest.mark.timeout(120)]
SIREN_COIL, AMP_COIL = 0, 1


def site(tmp: Path, gauge_port: int, board_port: int, broker_port: int) -> Path:
    clips = {name: tone(tmp / f"{name}.wav", f) for name, f in
             (("evacuate", 440), ("exercise", 660), ("test", 880), ("all_clear", 330))}
    board = f"{{transport: tcp, host: 127.0.0.1, port: {board_port}, timeout: 1.0}}"
    bus = radar_gauge_bus(gauge_port, device_extra="timeout: 300ms\nretries: 0")
    text = f"""
gateway: {{id: safety-gw, state_dir: {tmp / 'state'}}}
buses:
{bus}
links:
  - {{type: mqtt, name: county, host: 127.0.0.1, port: {broker_port}, reconnect_min: 0.2, reconnect_max: 1}}
rules:
  - {{type: threshold, id: level.danger, point: dam.level, above: 152.0, hysteresis: 0.1, severity: severe,
     persistence: {{n: 2, m: 3}}, message: 水位超过危险水位}}
  - {{type: comm_fail, id: level.gauge_lost, point: dam.level, after: 2}}
broadcast:
  sender: safety-gw
  audit_path: {tmp / 'audit.log'}
  outputs:
    siren: {{type: modbus_relay_siren, board: {board}, coil: {SIREN_COIL}, max_activation_s: 60}}
    pa: {{type: alsa_audio, device: {tmp / 'sink.wav'}, player: [sox, -q, "{{files}}", "{{device}}"],
         work_dir: {tmp / 'tts'}, amplifier: {{board: {board}, coil: {AMP_COIL}, warmup_s: 0}}}}
  zones: {{dam: {{outputs: [siren, pa]}}}}
  clips: {{{", ".join(f"{n}: {{file: {p}}}" for n, p in clips.items())}}}
  patterns:
    flood: {{steps: [[2, 1]], repeat: 10}}
    drill: {{steps: [[1, 2]], repeat: 5}}
  status_patterns: {{actual: flood, exercise: drill}}
  announce: {{exercise: exercise, test: test}}
  all_clear_clip: all_clear
  rate_limit: {{min_interval_s: 0, max_per_hour: 60}}
  automatic:
    - {{rule: level.danger, zones: [dam], event: 水库超危险水位, clips: [evacuate]}}
"""
    path = tmp / "site.yaml"
    path.write_text(text)
    return path


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox is installed by .ci/run")
def test_siren_sounds_with_the_uplink_down_and_evidence_follows(
    tmp_path: Path, broker: Broker, collector: Collector
) -> None:
    gauge_port, board_port = free_port(), free_port()
    config = site(tmp_path, gauge_port, board_port, broker.port)
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


def test_comm_fail_gauge_never_sounds_the_siren(tmp_path: Path, broker: Broker, collector: Collector) -> None:
    gauge_port, board_port = free_port(), free_port()
    config = site(tmp_path, gauge_port, board_port, broker.port)
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
