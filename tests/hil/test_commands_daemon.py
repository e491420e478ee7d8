"""Signed commands through the real daemon: a good one runs (a verified write to a real Modbus device)
and is answered; forged, expired, replayed and unsigned ones are refused, answered and audited."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sim.broker import Broker
from sim.gateway_process import GatewayProcess
from sim.modbus import SimServer, SimUnit
from sim.platform import Platform
from sim.support import free_port, wait_for
from tests.hil.rig import ROOT

pytestmark = [pytest.mark.hil, pytest.mark.timeout(120)]


def fieldgate(*args: str) -> str:
    run = subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    return run.stdout


def sign(key: Path, cmd: str, args: dict[str, Any], ttl: int = 300, issued_at: int | None = None) -> bytes:
    extra = ["--issued-at", str(issued_at)] if issued_at is not None else []
    return fieldgate("command", "sign", "--key", str(key), "--key-id", "ops", "--gateway", "cmd-gw", "--cmd", cmd,
                     "--args", json.dumps(args), "--ttl", str(ttl), *extra).strip().encode()


def ops_key(folder: Path) -> tuple[Path, str]:
    """A new issuer key "ops" in ``folder``: (its private key file, its public key for the site config)."""
    printed = fieldgate("command", "keygen", "--key-id", "ops", "--out", str(folder))
    public = next(line.split("key:", 1)[1].strip() for line in printed.splitlines() if line.strip().startswith("key:"))
    return folder / "ops.key", public


def test_commands_through_the_daemon(tmp_path: Path, broker: Broker, collector: Platform) -> None:
    key, public = ops_key(tmp_path)
    port = free_port()
    config = tmp_path / "site.yaml"
    config.write_text(f"""
gateway: {{id: cmd-gw, state_dir: {tmp_path / 'state'}}}
buses:
  - type: modbus_tcp
    name: plc
    host: 127.0.0.1
    port: {port}
    devices:
      - name: gate
        unit_id: 1
        poll_interval: 300ms
        points:
          - {{id: gate.setpoint, table: holding, address: 5, type: uint16, scale: 0.01, unit: m}}
links:
  - {{type: mqtt, name: county, host: 127.0.0.1, port: {broker.port}}}
commands:
  issuers:
    ops: {{key: "{public}", allow: [ping, read_point, write_point]}}
  allow: [ping, read_point, write_point]
  write_points: [gate.setpoint]
  max_clock_skew: 1s
""")
    unit = SimUnit(1)
    server = SimServer([unit], port=port).start()
    gateway = GatewayProcess(config, tmp_path / "gateway.log").start()

    def send(payload: bytes) -> None:
        collector.send_command("cmd-gw", payload, suffix="ops")

    try:
        wait_for(lambda: collector.status()[-1:] == ["online"], 20, f"gateway online; log:\n{gateway.log()}")
        # A new replay cache refuses commands issued before it began (+ the clock skew): wait that out.
        wait_for(lambda: "replay cache" in gateway.log(), 10, "the command plane up")
        time.sleep(2.5)
        good = sign(key, "write_point", {"point": "gate.setpoint", "value": 1.25})
        send(good)
        good_id = json.loads(good)["id"]
        wait_for(lambda: collector.reply_to(good_id) is not None, 20, f"a reply; log:\n{gateway.log()}")
        reply = collector.reply_to(good_id)
        assert reply is not None and reply["status"] == "ok", reply
        assert unit.tables["holding"][5] == 125  # written on the device and verified by read-back

        refused: dict[str, bytes] = {}
        forged = json.loads(sign(key, "write_point", {"point": "gate.setpoint", "value": 9.99}))
        forged["args"]["value"] = 0.01  # tampered after signing
        refused["forged"] = json.dumps(forged).encode()
        refused["expired"] = sign(key, "ping", {}, ttl=60, issued_at=int(time.time()) - 3600)
        refused["replayed"] = good
        unsigned = json.loads(sign(key, "ping", {}))
        unsigned.pop("sig")
        refused["unsigned"] = json.dumps(unsigned).encode()
        for payload in refused.values():
            send(payload)
        ids = {name: json.loads(p)["id"] for name, p in refused.items()}
        wait_for(lambda: sum(1 for r in collector.replies() if r.get("status") != "ok") >= 4, 20,
                 f"four refusals; replies so far {collector.replies()}")
        for name in ("forged", "expired", "unsigned"):
            answer = collector.reply_to(ids[name])
            assert answer is not None and answer["status"] == "rejected", (name, answer)
        replies = collector.replies()
        assert any(r["status"] == "rejected" and "replay" in str(r.get("reason")) for r in replies), replies
        assert unit.tables["holding"][5] == 125, "a refused command reached the device"
        # Every command and its outcome is journalled and reaches the platform as evidence.
        wait_for(lambda: sum(1 for r in collector.records("evidence") if r.get("kind") == "command") >= 5, 20,
                 "command audit records")
    finally:
        assert gateway.stop() == 0, gateway.log()
        server.stop()

