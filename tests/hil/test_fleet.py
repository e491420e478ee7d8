"""Configuration roll-out on the virtual rig (docs/fleet.md): several `fieldgate run` processes, one broker,
the platform's `centre.fleet` pushing signed site files.

- one file is broken for its site (its uplink points nowhere): that gateway rolls back alone, the rest commit;
- a file that changes the broadcast path is refused without two operators' signatures; signed (with
  `fieldgate fleet sign-config` / `push`), it waits while a broadcast is active and applies once it is cancelled;
- a daemon killed inside the health window rolls back when it starts again.

FLEET_GATEWAYS sets how many gateways the first test runs (3 in CI; the bench figure used 10).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from centre.fleet import FleetLink, Plan, Target, push
from gateway.alerts.signing import public_key_text
from gateway.commands.config import key_text
from gateway.fleet.store import sha256_hex
from sim.broker import Broker
from sim.gateway_process import GatewayProcess
from sim.modbus import SimServer, SimUnit
from sim.platform import Platform, signed_command
from sim.sites import SIREN_COIL, radar_gauge_bus, tone
from sim.support import free_port, wait_for
from tests.hil.rig import ROOT

pytestmark = [pytest.mark.hil, pytest.mark.timeout(240)]
GATEWAYS = int(os.environ.get("FLEET_GATEWAYS", "3"))
ALLOW = "[ping, status, config_chunk, config_apply, cancel_broadcast]"


def site(tmp: Path, gw: str, broker_port: int, issuer: str, *, name: str = "v1", extra: str = "") -> str:
    return f"""
gateway: {{id: {gw}, name: {name}, state_dir: {tmp / gw / 'state'}}}
links:
  - {{type: mqtt, name: county, host: 127.0.0.1, port: {broker_port}, reconnect_min: 0.2, reconnect_max: 1}}
commands:
  issuers:
    ops: {{key: "{issuer}", allow: {ALLOW}}}
  allow: {ALLOW}
  max_clock_skew: 1s
{extra}"""


class Fleet:
    def __init__(self, tmp: Path, broker: Broker, collector: Platform) -> None:
        self.tmp, self.broker, self.collector = tmp, broker, collector
        self.key = Ed25519PrivateKey.generate()
        self.issuer = key_text(self.key.public_key())
        self.processes: dict[str, GatewayProcess] = {}

    def start(self, gw: str, text: str) -> GatewayProcess:
        (self.tmp / gw).mkdir(exist_ok=True)
        path = self.tmp / gw / "site.yaml"
        path.write_text(text)
        process = GatewayProcess(path, self.tmp / gw / "gateway.log").start()
        self.processes[gw] = process
        return process

    def wait_up(self, gw: str) -> None:
        process = self.processes[gw]
        wait_for(lambda: "replay cache" in process.log(), 30, f"{gw}'s command plane; log:\n{process.log()}")
        time.sleep(2.2)  # a new replay cache refuses commands issued before it began (+ the clock skew)

    def plan(self, **kw: Any) -> Plan:
        return Plan(self.key, "ops", **{"window_s": 5.0, "max_wait_s": 60.0, "reply_timeout": 30.0, **kw})

    def rollouts(self, gw: str) -> list[dict[str, Any]]:
        return [r for r in self.collector.records("evidence") if r.get("kind") == "rollout" and r.get("key") == gw]

    def stop_all(self) -> None:
        for gw, process in self.processes.items():
            assert process.stop() == 0, f"{gw}:\n{process.log()}"


@pytest.fixture
def fleet(tmp_path: Path, broker: Broker, collector: Platform) -> Iterator[Fleet]:
    f = Fleet(tmp_path, broker, collector)
    yield f
    f.stop_all()


@pytest.fixture
def link(broker: Broker) -> Iterator[FleetLink]:
    client = FleetLink("127.0.0.1", broker.port)
    yield client
    client.close()


def test_one_broken_file_rolls_back_alone(fleet: Fleet, broker: Broker, link: FleetLink) -> None:
    names = [f"fleet-{i:02d}" for i in range(GATEWAYS)]
    for gw in names:
        fleet.start(gw, site(fleet.tmp, gw, broker.port, fleet.issuer))
    for gw in names:
        fleet.wait_up(gw)
    broken = names[1]
    nowhere = free_port()  # valid YAML, wrong for this site: its uplink goes to a port nobody listens on
    targets = [Target(gw, site(fleet.tmp, gw, nowhere if gw == broken else broker.port, fleet.issuer,
                               name="v2").encode()) for gw in names]
    before = {gw: (fleet.tmp / gw / "site.yaml").read_bytes() for gw in names}
    done = push(link, fleet.plan(label="v2", first=0), targets)
    outcome = {t.gateway: t.outcome for t in done}
    assert outcome[broken] == "rolled_back", [t.to_json() for t in done]
    assert "link county not connected" in next(t.reason for t in done if t.gateway == broken)
    assert all(outcome[gw] == "committed" for gw in names if gw != broken), [t.to_json() for t in done]
    assert (fleet.tmp / broken / "site.yaml").read_bytes() == before[broken]
    for target in done:
        if target.gateway != broken:
            assert (fleet.tmp / target.gateway / "site.yaml").read_bytes() == target.body
    # The platform can list who runs what: the status command's snapshot carries the inventory.
    reply = ask_status(fleet, names[0])
    inventory = reply["result"]["inventory"]
    assert inventory["config"] == {"sha256": targets[0].sha256, "label": "v2"}
    assert inventory["rollout"]["phase"] == "committed"
    assert inventory["software"]["version"]
    timings = sorted(t.to_json()["seconds"] for t in done if t.outcome == "committed")
    print(f"\nFLEET {GATEWAYS} gateways, window 5 s: command to committed, s: "
          f"min {timings[0]:.2f} median {timings[len(timings) // 2]:.2f} max {timings[-1]:.2f}; "
          f"each: {', '.join(f'{x:.2f}' for x in timings)}; rolled back after "
          f"{next(t.to_json()['seconds'] for t in done if t.gateway == broken)} s")


def ask_status(fleet: Fleet, gw: str) -> dict[str, Any]:
    command_id = int(time.time() * 1000) % 2**40
    fleet.collector.send_command(gw, signed_command(fleet.key, gateway=gw, kid="ops", cmd="status", args={},
                                                    command_id=command_id).to_bytes(), suffix="ops")
    wait_for(lambda: fleet.collector.reply_to(command_id) is not None, 20, "status reply")
    reply = fleet.collector.reply_to(command_id)
    assert reply is not None and reply["status"] == "ok", reply
    return reply


def test_daemon_killed_inside_the_window_rolls_back_at_start(fleet: Fleet, broker: Broker, link: FleetLink) -> None:
    gw = "fleet-kill"
    fleet.start(gw, site(fleet.tmp, gw, broker.port, fleet.issuer))
    fleet.wait_up(gw)
    config = fleet.tmp / gw / "site.yaml"
    before = config.read_bytes()
    new = site(fleet.tmp, gw, broker.port, fleet.issuer, name="v2").encode()
    plan = fleet.plan(window_s=120.0, outcome_timeout=1.0)
    push(link, plan, [Target(gw, new)])  # returns (timeout) while the gateway is inside its long window
    wait_for(lambda: any(r.get("step") == "applying" for r in fleet.rollouts(gw)), 20, "applying")
    wait_for(lambda: config.read_bytes() == new, 10, "the new file in place")
    time.sleep(3)  # the gateway restarted on it and is inside the window
    fleet.processes[gw].stop(signal.SIGKILL)
    fleet.start(gw, config.read_text())  # systemd's restart: on the file now in place
    wait_for(lambda: any(r.get("step") == "rolled_back" for r in fleet.rollouts(gw)), 30,
             f"rolled back at start; log:\n{fleet.processes[gw].log()}")
    record = next(r for r in fleet.rollouts(gw) if r.get("step") == "rolled_back")
    assert record["at_start"] is True and "health window" in record["reason"]
    assert config.read_bytes() == before


def pem(key: Ed25519PrivateKey, path: Path) -> str:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return str(path)


def fieldgate(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "gateway.cli", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_broadcast_change_needs_two_operators_and_waits_while_a_broadcast_is_active(
    fleet: Fleet, broker: Broker, link: FleetLink
) -> None:
    """With `fieldgate fleet` itself: sign-config by two operators, push; the push waits for the cancel."""
    gw = "fleet-siren"
    gauge_port, board_port = free_port(), free_port()
    alice, bob = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    board = f"{{transport: tcp, host: 127.0.0.1, port: {board_port}, timeout: 1.0}}"
    (fleet.tmp / gw).mkdir()
    clips = ", ".join(f"{n}: {{file: {tone(fleet.tmp / gw / f'{n}.wav', f)}}}"
                      for n, f in (("exercise", 660), ("test", 880), ("all_clear", 330)))
    extra = f"""buses:
{radar_gauge_bus(gauge_port, device_extra="timeout: 300ms")}
rules:
  - {{type: threshold, id: level.danger, point: dam.level, above: 152.0, hysteresis: 0.1, severity: severe}}
broadcast:
  sender: {gw}
  audit_path: {fleet.tmp / gw / 'audit.log'}
  operators: {{alice: "{public_key_text(alice)}", bob: "{public_key_text(bob)}"}}
  outputs:
    siren: {{type: modbus_relay_siren, board: {board}, coil: {SIREN_COIL}, max_activation: MAX}}
  zones: {{dam: {{outputs: [siren]}}}}
  patterns: {{flood: {{steps: [[2, 1]], repeat: 100}}, drill: {{steps: [[1, 2]], repeat: 5}}}}
  status_patterns: {{actual: flood, exercise: drill}}
  clips: {{{clips}}}
  announce: {{exercise: exercise, test: test}}
  all_clear_clip: all_clear
  rate_limit: {{min_interval: 0, max_per_hour: 60}}
  automatic:
    - {{rule: level.danger, zones: [dam], event: danger}}
"""
    from gateway.config.loader import load_site_text

    text = site(fleet.tmp, gw, broker.port, fleet.issuer, extra=extra.replace("MAX", "600"))
    level = load_site_text(text).buses[0].devices[0].points[0]
    gauge, relay = SimUnit(1), SimUnit(1)
    gauge.set_point(level, 149.0)
    servers = [SimServer([gauge], port=gauge_port).start(), SimServer([relay], port=board_port).start()]
    try:
        fleet.start(gw, text)
        fleet.wait_up(gw)
        gauge.set_point(level, 152.6)
        wait_for(lambda: relay.coil(SIREN_COIL), 20, f"siren on; log:\n{fleet.processes[gw].log()}")
        gauge.set_point(level, 149.0)  # the alarm clears; the broadcast stays active until it is cancelled
        # The new file shortens the siren's longest activation: the operators must sign it.
        new = site(fleet.tmp, gw, broker.port, fleet.issuer, name="v2", extra=extra.replace("MAX", "300")).encode()
        unsigned = push(link, fleet.plan(outcome_timeout=1.0), [Target(gw, new)])[0]
        assert unsigned.outcome == "refused" and "2 distinct operator signature(s) required" in unsigned.reason
        new_file = fleet.tmp / "new.yaml"
        new_file.write_bytes(new)
        signatures = []
        for name, key in (("alice", alice), ("bob", bob)):
            signer = fieldgate("fleet", "sign-config", "--key", pem(key, fleet.tmp / f"{name}.key"), "--operator",
                               name, "--gateway", gw, "--site", str(new_file))
            out, err = signer.communicate(timeout=30)
            assert signer.returncode == 0, err
            signatures.append(json.loads(out))
        (fleet.tmp / "sigs.json").write_text(json.dumps(signatures))
        pusher = fieldgate("fleet", "push", "--broker", f"127.0.0.1:{broker.port}", "--key",
                           pem(fleet.key, fleet.tmp / "ops.key"), "--key-id", "ops", "--site", f"{gw}={new_file}",
                           "--signatures", f"{gw}={fleet.tmp / 'sigs.json'}", "--window", "5", "--max-wait", "120",
                           "--label", "siren-300")
        wait_for(lambda: any(r.get("step") == "waiting" for r in fleet.rollouts(gw)), 30, "the roll-out waits")
        waiting = next(r for r in fleet.rollouts(gw) if r.get("step") == "waiting")
        assert "broadcast" in waiting["reason"], waiting
        time.sleep(3)
        assert not any(r.get("step") == "applying" for r in fleet.rollouts(gw)), "applied during a broadcast"
        # The siren pattern switches the coil on and off, so its state at this instant says nothing; what
        # matters is that the broadcast is still running (no OFF-for-good yet) and the roll-out still waits.
        assert ('coil', SIREN_COIL, [1]) in relay.writes and pusher.poll() is None
        alert_id = waiting["reason"].split("broadcast active: ", 1)[1].split(",")[0]
        cancel = signed_command(fleet.key, gateway=gw, kid="ops", cmd="cancel_broadcast",
                                args={"alert_id": alert_id}, command_id=777)
        fleet.collector.send_command(gw, cancel.to_bytes(), suffix="ops")
        out, err = pusher.communicate(timeout=90)
        assert pusher.returncode == 0, (out, err, fleet.processes[gw].log())
        assert json.loads(out)[0]["outcome"] == "committed"
        wait_for(lambda: any(r.get("step") == "committed" for r in fleet.rollouts(gw)), 60,
                 f"committed after the cancel; log:\n{fleet.processes[gw].log()}")
        assert not relay.coil(SIREN_COIL)
        assert sha256_hex((fleet.tmp / gw / "site.yaml").read_bytes()) == sha256_hex(new)
        audit = (fleet.tmp / gw / "audit.log").read_text()
        # The broadcast audit chain has the roll-out's steps, the refusal without signatures among them.
        assert audit.count("config_rollout") >= 3 and "operator signature" in audit
    finally:
        for server in servers:
            server.stop()
