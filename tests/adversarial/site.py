"""A site under attack: the real daemon on the virtual rig, with every output that can alert the public.

What the attacker can reach from outside is what a real site exposes: the MQTT broker (the
command topics, with or without a key), the alert inbox directory, the config file and SIGHUP,
the status page. What the tests look at is what the public would hear:

* the siren relay board (a pymodbus unit: every coil write is recorded, so a siren that was ON
  for a moment is seen even if it is OFF again when the test looks),
* the PA (``alsa_audio`` with a player that records what it was asked to play),
* an IP speaker (``http_trigger`` to a local HTTP server that records every request),

and the evidence: the audit chain (``broadcast.log``), the replies on ``<prefix>/<gw>/reply``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.server
import itertools
import json
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.alerts.audit import verify_chain
from gateway.alerts.model import Alert, MsgType, Status
from gateway.alerts.signing import public_key_text, sign
from sim.broker import Broker
from sim.gateway_process import GatewayProcess
from sim.modbus import SimServer, SimUnit
from sim.platform import Platform, signed_command
from sim.sites import radar_gauge_bus, tone
from sim.support import free_port, wait_for

GATEWAY_ID = "atk-gw"
PREFIX = "fieldgate/v1"
SIREN_COIL = 0

RECORDING_PLAYER = '''
import json, sys, wave
log, files = sys.argv[1], sys.argv[2:]
played = []
for name in files:
    with wave.open(name, "rb") as wav:
        played.append({"file": name, "frames": wav.getnframes(), "rate": wav.getframerate()})
with open(log, "a") as out:
    out.write(json.dumps(played) + "\\n")
'''


class Speaker:
    """The IP speaker: an HTTP server that records every request it gets."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        hits = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                hits.append(self.path)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def plays(self) -> list[str]:
        return [r for r in self.requests if r.startswith("/play")]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class AttackSite:
    tmp: Path
    broker: Broker
    collector: Platform
    board: SimUnit
    speaker: Speaker
    gateway: GatewayProcess
    config: Path
    platform_key: Ed25519PrivateKey
    operators: dict[str, Ed25519PrivateKey]
    status_port: int
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(int(time.time()) % 100_000 * 100))

    # ---- what the public would hear ----

    def siren_was_switched_on(self) -> bool:
        return any(table == "coil" and address == SIREN_COIL and values[:1] == [1]
                   for table, address, values in list(self.board.writes))

    def pa_plays(self) -> list[list[dict[str, Any]]]:
        path = self.tmp / "plays.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def anything_sounded(self) -> bool:
        return self.siren_was_switched_on() or bool(self.pa_plays()) or bool(self.speaker.plays())

    # ---- the evidence ----

    def audit(self) -> list[dict[str, Any]]:
        path = self.tmp / "state" / "audit" / "broadcast.log"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def decisions(self) -> list[dict[str, Any]]:
        return [r["data"] for r in self.audit() if r["kind"] == "decision"]

    def audit_chain_ok(self) -> bool:
        return verify_chain(self.tmp / "state" / "audit" / "broadcast.log").ok

    def replies(self) -> list[dict[str, Any]]:
        return self.collector.replies()

    def reply_to(self, command_id: int, timeout: float = 20) -> dict[str, Any]:
        wait_for(lambda: any(r.get("id") == command_id for r in self.replies()), timeout,
                 f"the reply to command {command_id}; log:\n{self.gateway.log()}")
        return next(r for r in self.replies() if r.get("id") == command_id)

    # ---- what the attacker (or the platform) sends ----

    def envelope(self, cmd: str, args: dict[str, Any], *, key: Ed25519PrivateKey | None = None) -> tuple[int, bytes]:
        command_id = next(self._ids)
        env = signed_command(key or self.platform_key, gateway=GATEWAY_ID, kid="platform", cmd=cmd, args=args,
                             command_id=command_id)
        return command_id, env.to_bytes()

    def publish(self, payload: bytes, *, qos: int = 1, topic: str = f"{PREFIX}/{GATEWAY_ID}/cmd") -> None:
        with Platform(self.broker.port, topics=()) as sender:  # its own connection, as an attacker's would be
            sender.publish(topic, payload, qos=qos)

    def command(self, cmd: str, args: dict[str, Any], **kw: Any) -> int:
        command_id, payload = self.envelope(cmd, args, **kw)
        self.publish(payload)
        return command_id

    def alert(self, identifier: str, status: Status = Status.ACTUAL, **kw: Any) -> Alert:
        now = dt.datetime.now(dt.UTC)
        fields: dict[str, Any] = {"identifier": identifier, "sender": "county", "sent": now, "status": status,
                                  "event": "洪水预警", "areas": ("dam",), "resources": ("evacuate",),
                                  "expires": now + dt.timedelta(hours=1)}
        return Alert(**{**fields, **kw})

    def request(self, alert: Alert, *signers: str) -> dict[str, Any]:
        """A trigger_broadcast request (the `fieldgate alert sign` file): the alert and operators' signatures."""
        now = time.time()
        return {"alert": alert.model_dump(mode="json"),
                "signatures": [sign(alert, name, self.operators[name], now).model_dump() for name in signers]}

    def cancel(self, alert: Alert, identifier: str) -> Alert:
        return Alert(identifier=identifier, sender="county", sent=dt.datetime.now(dt.UTC), status=alert.status,
                     msg_type=MsgType.CANCEL, event="解除", references=(alert.cap_reference(),))

    # ---- the daemon ----

    def restart(self) -> None:
        seen = len(self.collector.status())
        assert self.gateway.stop() == 0, self.gateway.log()
        self.gateway = GatewayProcess(self.config, self.tmp / "gateway.log").start()
        self.wait_online(seen)

    def reload(self) -> None:
        """SIGHUP: the daemon validates the file and builds a new gateway (and interlock) on it."""
        seen = len(self.collector.status())
        assert self.gateway.proc is not None
        self.gateway.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in self.gateway.log(), 20, "the reload")
        self.wait_online(seen)

    def wait_online(self, seen: int) -> None:
        wait_for(lambda: "online" in self.collector.status()[seen:], 30, f"gateway online; log:\n{self.gateway.log()}")


def site_yaml(tmp: Path, *, gauge_port: int, board_port: int, broker_port: int, speaker_port: int,
              status_port: int, platform_public: str, operators: dict[str, str], extra: str = "") -> str:
    clips = {name: tone(tmp / f"{name}.wav", f) for name, f in
             (("evacuate", 440), ("exercise", 660), ("test", 880), ("all_clear", 330))}
    player = tmp / "player.py"
    player.write_text(RECORDING_PLAYER)
    board = f"{{transport: tcp, host: 127.0.0.1, port: {board_port}, timeout: 1.0}}"
    operator_lines = ", ".join(f"{name}: \"{key}\"" for name, key in operators.items())
    everything = "[ping, status, read_point, write_point, trigger_broadcast, cancel_broadcast, reload_config]"
    return textwrap.dedent(f"""\
        gateway: {{id: {GATEWAY_ID}, state_dir: {tmp / 'state'}}}
        buses:
        {{bus}}
        links:
          - {{type: mqtt, name: county, host: 127.0.0.1, port: {broker_port}, reconnect_min: 0.2, reconnect_max: 1}}
        status: {{listen: "127.0.0.1:{status_port}"}}
        commands:
          issuers:
            platform: {{key: "{platform_public}", number: 1, allow: {everything}}}
          allow: {everything}
          max_clock_skew: 1s
        broadcast:
          sender: {GATEWAY_ID}
          outputs:
            siren: {{type: modbus_relay_siren, board: {board}, coil: {SIREN_COIL}, max_activation: 20}}
            pa: {{type: alsa_audio, device: none, work_dir: {tmp / 'tts'},
                 player: [{sys.executable}, {player}, {tmp / 'plays.jsonl'}, "{{files}}"]}}
            ipspk: {{type: http_trigger, url: "http://127.0.0.1:{speaker_port}/play?alert={{alert_id}}",
                    cancel_url: "http://127.0.0.1:{speaker_port}/stop?alert={{alert_id}}", outdoor: false}}
          zones: {{dam: {{outputs: [siren, pa, ipspk]}}}}
          clips: {{{", ".join(f"{n}: {{file: {p}}}" for n, p in clips.items())}}}
          patterns:
            flood: {{steps: [[2, 1]], repeat: 5}}
            drill: {{steps: [[1, 2]], repeat: 3}}
          status_patterns: {{actual: flood, exercise: drill}}
          announce: {{exercise: exercise, test: test}}
          all_clear_clip: all_clear
          rate_limit: {{min_interval: 10m, max_per_hour: 6}}
          operators: {{{operator_lines}}}
        """).replace("{bus}", radar_gauge_bus(gauge_port, poll="500ms")) + extra


@contextlib.contextmanager
def attack_site(tmp: Path, broker: Broker, collector: Platform, extra: str = "") -> Iterator[AttackSite]:
    """The site running, online, past its replay cache's start-up floor; everything torn down after."""
    gauge_port, board_port, speaker = free_port(), free_port(), Speaker()
    platform_key = Ed25519PrivateKey.generate()
    operators = {name: Ed25519PrivateKey.generate() for name in ("zhang", "li")}
    status_port = free_port()
    config = tmp / "site.yaml"
    config.write_text(site_yaml(tmp, gauge_port=gauge_port, board_port=board_port, broker_port=broker.port,
                                speaker_port=speaker.port, status_port=status_port,
                                platform_public=public_key_text(platform_key),
                                operators={n: public_key_text(k) for n, k in operators.items()}, extra=extra))
    gauge, board = SimUnit(1), SimUnit(1)
    gauges = SimServer([gauge], port=gauge_port).start()
    relays = SimServer([board], port=board_port).start()
    gateway = GatewayProcess(config, tmp / "gateway.log").start()
    site = AttackSite(tmp, broker, collector, board, speaker, gateway, config, platform_key, operators, status_port)
    try:
        wait_for(lambda: collector.status()[-1:] == ["online"], 30, f"gateway online; log:\n{gateway.log()}")
        time.sleep(2.5)  # a new replay cache refuses commands issued (whole seconds) before it began + max_clock_skew
        yield site
    finally:
        with contextlib.suppress(AssertionError):
            site.gateway.stop()
        gauges.stop()
        relays.stop()
        speaker.close()
