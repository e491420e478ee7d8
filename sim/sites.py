"""Site configs for the virtual field: the YAML a gateway runs against these simulated devices.

The rig tests and the benchmarks measure the same sites: ``safety_site`` (a radar gauge, a siren and an
amplifier on one relay board, the PA, the uplink) and ``failover_site`` (the gauge, MQTT primary, BeiDou
secondary), built from ``radar_gauge_bus`` and ``satellite_section``.
"""

from __future__ import annotations

import base64
import math
import os
import struct
import wave
from pathlib import Path

SIREN_COIL, AMP_COIL = 0, 1  # on the safety site's relay board
GATEWAY_NUMBER, PLATFORM_CARD = 42, 1234  # the failover site's satellite identity and the platform's BeiDou card


def radar_gauge_bus(port: int, *, poll: str = "200ms", device_extra: str = "", point_id: str = "dam.level",
                    point_extra: str = "") -> str:
    """YAML for the rig's usual field device: a radar level gauge (float32, CDAB) behind Modbus TCP.

    Indented to sit under ``buses:``; ``device_extra`` adds device keys (e.g. "timeout: 300ms"),
    ``point_extra`` point keys (e.g. "report: {deadband: 0.01}").
    """
    extra = "".join(f"\n        {line}" for line in device_extra.splitlines() if line.strip())
    keys = f"id: {point_id}, address: 0, type: float32, byte_order: CDAB, unit: m"
    point = "{" + keys + (f", {point_extra}" if point_extra else "") + "}"
    return f"""  - type: modbus_tcp
    name: gauges
    host: 127.0.0.1
    port: {port}
    devices:
      - name: radar
        unit_id: 1
        poll_interval: {poll}{extra}
        points:
          - {point}"""


def tone(path: Path, freq: float, seconds: float = 0.2, rate: int = 8000) -> Path:
    """A sine WAV (mono, 16 bit): a clip whose played frequency a test can recognise."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * freq * i / rate)))
                                 for i in range(int(rate * seconds))))
    return path


def ack_key_file(folder: Path) -> tuple[Path, bytes]:
    """A fresh satellite ACK key in ``folder``: the file for ``satellite.ack_key_file`` and the bytes the
    platform signs its ACKs with (``compact.encode_ack(..., key=...)``)."""
    key = os.urandom(32)
    path = folder / "ack.key"
    path.write_text(base64.b64encode(key).decode() + "\n")
    return path, key


def satellite_section(gateway_number: int, key_file: Path, rule_aliases: str = "{}") -> str:
    """YAML ``satellite:`` section for sites around the rig's gauge (alias 1 = dam.level), with the ACK key
    file from :func:`ack_key_file`; ``rule_aliases`` e.g. "{level.danger: 7}"."""
    return f"""satellite:
  gateway_number: {gateway_number}
  aliases: {{1: dam.level}}
  rule_aliases: {rule_aliases}
  ack_key_file: {key_file}"""


DANGER_PLAN_MAX_PER_HOUR = 60  # the interlock's hourly cap for zone dam in danger_plan (the highest it allows)


def danger_plan(clips: dict[str, Path], flood: str = "[[2, 1]], repeat: 10", drill: str = "[[1, 2]], repeat: 5") -> str:
    """The rest of a ``broadcast:`` section after ``zones:``: clips, patterns, and the site plan that sounds zone
    ``dam`` when rule ``level.danger`` raises (``clips`` from :func:`tone`: evacuate, exercise, test, all_clear)."""
    return f"""  clips: {{{", ".join(f"{n}: {{file: {p}}}" for n, p in clips.items())}}}
  patterns:
    flood: {{steps: {flood}}}
    drill: {{steps: {drill}}}
  status_patterns: {{actual: flood, exercise: drill}}
  announce: {{exercise: exercise, test: test}}
  all_clear_clip: all_clear
  rate_limit: {{min_interval: 0, max_per_hour: {DANGER_PLAN_MAX_PER_HOUR}}}
  automatic:
    - {{rule: level.danger, zones: [dam], event: 水库超危险水位, clips: [evacuate]}}"""


def safety_site(tmp: Path, gauge_port: int, board_port: int, broker_port: int) -> Path:
    """Offline-first safety: the gauge's danger rule sounds the siren and the PA (played by sox into
    ``tmp/sink.wav``) automatically; a comm_fail rule raises a fault alarm only. Returns the config file."""
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
    siren: {{type: modbus_relay_siren, board: {board}, coil: {SIREN_COIL}, max_activation: 60}}
    pa: {{type: alsa_audio, device: {tmp / 'sink.wav'}, player: [sox, -q, "{{files}}", "{{device}}"],
         work_dir: {tmp / 'tts'}, amplifier: {{board: {board}, coil: {AMP_COIL}, warmup: 0}}}}
  zones: {{dam: {{outputs: [siren, pa]}}}}
{danger_plan(clips)}
"""
    path = tmp / "site.yaml"
    path.write_text(text)
    return path


def failover_site(tmp: Path, gauge_port: int, broker_port: int, beidou_port: str, key_file: Path) -> Path:
    """MQTT primary, BeiDou secondary on ``beidou_port`` (failover after 2 s, application ACKs checked with
    ``key_file``); the danger rule's alarm leaves as compact rule 7. Returns the config file."""
    path = tmp / "site.yaml"
    path.write_text(f"""
gateway: {{id: failover-gw, state_dir: {tmp / 'state'}}}
buses:
{radar_gauge_bus(gauge_port, point_extra="report: {deadband: 0.01}")}
rules:
  - {{type: threshold, id: level.danger, point: dam.level, above: 152.0, hysteresis: 0.1, severity: severe,
     message: 水位超过危险水位}}
{satellite_section(GATEWAY_NUMBER, key_file, "{level.danger: 7}")}
links:
  - {{type: mqtt, name: county, host: 127.0.0.1, port: {broker_port}, reconnect_min: 0.2, reconnect_max: 1}}
  - type: beidou
    name: bd
    port: {beidou_port}
    dest: {PLATFORM_CARD}
    policy: {{failover_after: 2s, app_ack: true, ack_timeout: 60s}}
""")
    return path
