"""Signed compact commands by satellite through the real daemon: the platform injects a COMMAND at
the BeiDou emulator and the gateway answers with a compact REPLY on the same link, even while the
primary (MQTT) link is up: ok for a good `ping`, rejected (replayed) for the same bytes again."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway import compact
from gateway.commands.names import Reason, Status
from gateway.commands.reply import SatelliteReply, parse_satellite_reply
from sim.beidou import BeidouEmulator
from sim.broker import Broker
from sim.gateway_process import GatewayProcess
from sim.modbus import SimServer, SimUnit
from sim.platform import Platform
from sim.serial_pty import socat_pair
from sim.sites import ack_key_file, radar_gauge_bus, satellite_section
from sim.support import free_port, wait_for
from tests.hil.rig import ROOT

pytestmark = [pytest.mark.hil, pytest.mark.timeout(120)]
GATEWAY_NUMBER, ISSUER_NUMBER, PLATFORM_CARD = 42, 3, 1234


def fieldgate(*args: str) -> str:
    run = subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    return run.stdout


def site(tmp: Path, public_key: str, gauge_port: int, broker_port: int, beidou_port: str) -> Path:
    path = tmp / "site.yaml"
    path.write_text(f"""
gateway: {{id: sat-cmd-gw, state_dir: {tmp / 'state'}}}
buses:
{radar_gauge_bus(gauge_port, poll="500ms")}
{satellite_section(GATEWAY_NUMBER, ack_key_file(tmp)[0])}
links:
  - {{type: mqtt, name: county, host: 127.0.0.1, port: {broker_port}}}
  - type: beidou
    name: bd
    port: {beidou_port}
    dest: {PLATFORM_CARD}
    policy: {{failover_after: 60s}}
commands:
  issuers:
    ops: {{key: "{public_key}", number: {ISSUER_NUMBER}, allow: [ping]}}
  allow: [ping]
  max_clock_skew: 1s
""")
    return path


def replies(bd: BeidouEmulator) -> list[SatelliteReply]:
    """What the platform reads from the satellite: every message the gateway sent must be a REPLY."""
    return [parse_satellite_reply(sent.payload) for sent in bd.sent]


def test_satellite_command_is_answered_by_satellite(tmp_path: Path, broker: Broker, collector: Platform) -> None:
    printed = fieldgate("command", "keygen", "--key-id", "ops", "--out", str(tmp_path))
    public = next(line.split("key:", 1)[1].strip() for line in printed.splitlines() if line.strip().startswith("key:"))
    gauge_port = free_port()
    with socat_pair() as (gateway_end, modem_end), BeidouEmulator(modem_end, interval_s=2, noise_period_s=0.5) as bd:
        server = SimServer([SimUnit(1)], port=gauge_port).start()
        gateway = GatewayProcess(site(tmp_path, public, gauge_port, broker.port, gateway_end),
                                 tmp_path / "gateway.log").start()
        try:
            wait_for(lambda: collector.status()[-1:] == ["online"], 20, f"primary link up; log:\n{gateway.log()}")
            wait_for(lambda: "replay cache" in gateway.log() and "bd: 2.1 dialect" in gateway.log(), 20,
                     f"command plane and BeiDou link up; log:\n{gateway.log()}")
            time.sleep(2.5)  # a fresh replay cache refuses commands issued before it began + max_clock_skew
            signed = fieldgate("command", "sign", "--key", str(tmp_path / "ops.key"), "--key-id", "ops",
                               "--gateway", "sat-cmd-gw", "--cmd", "ping", "--compact",
                               "--gateway-number", str(GATEWAY_NUMBER), "--issuer-number", str(ISSUER_NUMBER))
            command = bytes.fromhex(signed.strip())
            assert len(command) <= bd.max_payload
            command_id = compact.decode(command).seqs[0]

            bd.inject(PLATFORM_CARD, command)
            wait_for(lambda: len(bd.sent) >= 1, 20, f"a reply by satellite; log:\n{gateway.log()}")
            first = replies(bd)[0]
            assert (first.gateway, first.command_id, first.issuer) == (GATEWAY_NUMBER, command_id, ISSUER_NUMBER)
            assert first.status is Status.OK and first.reason is Reason.NONE, (first, gateway.log())
            assert first.result is not None and first.result.get("pong") is True
            assert abs(first.time - time.time()) < 60
            assert bd.sent[0].dest == PLATFORM_CARD

            bd.inject(PLATFORM_CARD, command)  # the same bytes again: a replay
            wait_for(lambda: len(bd.sent) >= 2, 20, f"a second reply by satellite; log:\n{gateway.log()}")
            second = replies(bd)[1]
            assert (second.command_id, second.issuer) == (command_id, ISSUER_NUMBER)
            assert (second.status, second.reason) == (Status.REJECTED, Reason.REPLAYED), second
            assert "interval" not in bd.refusals  # the second waited for the service interval
            # The audit still reaches the platform by the primary: accepted, done, rejected.
            wait_for(lambda: sum(1 for r in collector.records("evidence") if r.get("kind") == "command") >= 3, 20,
                     "command audit records by MQTT")
        finally:
            assert gateway.stop() == 0, gateway.log()
            server.stop()
    assert len(bd.sent) == 2, replies(bd)  # nothing else left by satellite while the primary was up
