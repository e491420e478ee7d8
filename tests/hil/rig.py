"""The rig: real components the HIL tests run against, described by a rig file.

The virtual rig (CI, any laptop) makes everything on this machine: mosquitto on a
free loopback port, ``socat`` pty pairs as RS-485 lines, pymodbus servers as the
field devices. A bench rig names real serial ports instead (two USB RS-485
adapters wired A-A, B-B), so the same tests drive real transceivers and real line
timing; see tests/hil/README.md for the format.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import json
import math
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from paho.mqtt import client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RIG = ROOT / "tests" / "hil" / "rigs" / "virtual.yaml"


@dataclass
class RigFile:
    name: str
    serial_pairs: list[tuple[str, str]] = field(default_factory=list)  # bench: (gateway end, device end)
    mosquitto: str = "mosquitto"

    @property
    def virtual(self) -> bool:
        return not self.serial_pairs


def load_rig() -> RigFile:
    path = Path(os.environ.get("FIELDGATE_RIG", DEFAULT_RIG))
    data = yaml.safe_load(path.read_text()) or {}
    pairs = [(p["gateway"], p["device"]) for p in data.get("serial_pairs", [])]
    return RigFile(name=data.get("rig", path.stem), serial_pairs=pairs,
                   mosquitto=data.get("mosquitto", "mosquitto"))


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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll until ``predicate`` holds; a bounded wait for an event, not a performance assertion."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def mosquitto_binary(name: str = "mosquitto") -> str:
    found = shutil.which(name) or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if found is None:
        raise RuntimeError("mosquitto is not installed (apt-get install mosquitto); .ci/run installs it")
    return found


class Broker:
    """A real mosquitto on loopback, with persistence so it can be stopped and restarted mid-test."""

    def __init__(self, workdir: Path, binary: str = "mosquitto", port: int | None = None,
                 extra_conf: str = "") -> None:
        self.binary = mosquitto_binary(binary)
        self.port = port or free_port()
        self.workdir = workdir
        self.extra_conf = extra_conf
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)

    def start(self) -> Broker:
        conf = self.workdir / "mosquitto.conf"
        # Started as root, mosquitto drops to user "mosquitto", which cannot write our temp dir, and its
        # persistence then silently fails: keep it as whoever runs the tests.
        conf.write_text(
            f"user {getpass.getuser()}\nlistener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {self.workdir}/\nautosave_interval 1\n{self.extra_conf}"
        )
        log = open(self.workdir / "mosquitto.log", "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=log, stderr=log)
        wait_for(self._listening, 10, f"mosquitto on port {self.port}")
        return self

    def _listening(self) -> bool:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # mosquitto saves its persistence file on SIGTERM
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


class Collector:
    """A platform-side subscriber: persistent MQTT 5 session, QoS 1, collects JSON envelopes."""

    def __init__(self, port: int, topic: str = "fieldgate/#") -> None:
        self.messages: list[tuple[str, Any]] = []
        self._lock = threading.Lock()
        self.topic = topic
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"collector-{uuid.uuid4().hex[:8]}",
                                  protocol=paho.MQTTv5)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1)
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, clean_start=False, properties=props)
        self.client.loop_start()
        wait_for(lambda: self.client.is_connected(), 10, "collector connected")

    def _on_connect(self, client: paho.Client, _u: Any, _f: Any, _rc: Any, _p: Any = None) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_message(self, _c: paho.Client, _u: Any, message: paho.MQTTMessage) -> None:
        arrived = time.time()
        try:
            body = json.loads(message.payload)
        except ValueError:
            body = message.payload
        if isinstance(body, dict):
            body["_arrived"] = arrived  # for latency measurements (bench/)
        with self._lock:
            self.messages.append((message.topic, body))

    def records(self, kind: str | None = "telemetry") -> list[dict[str, Any]]:
        """Records published under ``<gw>/<kind>`` (all kinds with None)."""
        with self._lock:
            return [r for topic, body in self.messages if kind is None or topic.endswith("/" + kind)
                    for r in (body.get("records", []) if isinstance(body, dict) else [])]

    def status(self) -> list[str]:
        with self._lock:
            return [body.get("state") for topic, body in self.messages if topic.endswith("/status")]

    def values(self, point: str) -> list[Any]:
        return [r["value"] for r in self.records() if r["point"] == point]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@contextlib.contextmanager
def serial_pair(rig: RigFile, index: int = 0) -> Iterator[tuple[str, str]]:
    """(gateway end, device end) of an RS-485 line: a socat pty pair, or the bench's wired adapters."""
    if not rig.virtual:
        yield rig.serial_pairs[index]
        return
    if shutil.which("socat") is None:
        raise RuntimeError("socat is not installed (apt-get install socat); .ci/run installs it")
    from tests.hil.emulators.base import socat_pair

    with socat_pair() as pair:
        yield pair


class GatewayProcess:
    """`fieldgate run CONFIG` as a real child process (what systemd would run)."""

    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> GatewayProcess:
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", str(self.config_path)],
                                     cwd=ROOT, env=env, stdout=log, stderr=log)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"gateway did not stop within {timeout}s; log:\n{self.log()}") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]
