"""Chaos soak: the real daemon on the virtual rig with faults injected on a schedule, and what must hold.

Parts, each a real process or server: mosquitto (sim/broker.py), the TCP fault proxy between the gateway and
the broker (sim/faultproxy.py, its own process), Modbus TCP devices (sim/modbus.py: a counter device, the dam
gauge, the siren's relay board), the platform's MQTT client (sim/platform.py) and ``fieldgate run`` itself,
restarted like systemd would after a SIGKILL.

Faults (each heals before the next): broker outage, broker flaps, proxy latency, proxy reset, proxy blackhole,
proxy half-open, a device answering with exceptions, a dead device (no answer), SIGKILL of the daemon,
SIGHUP with a broken config, SIGHUP with a changed rule. Meanwhile the gauge crosses the danger level on
its own schedule (alarm episodes), which the site plan turns into the siren.

What it checks at the end (``report["ok"]`` and the list of ``violations``):
- every committed record reached the platform: seqs are gap-free, so every seq from the first to the last
  (plus what is still in the journal) must have arrived; duplicates only with the same seq and content;
- every alarm episode raised once and cleared once upstream (by alarm id), none left active at the end;
- the siren coil on only while a danger episode is on (plus its activation time), and on in each episode;
- open file descriptors and RSS flat within each daemon process's life (after a warm-up).

    .venv/bin/python bench/soak.py --duration 3600        # the long one (make soak)
    .venv/bin/python bench/soak.py --duration 90 --seed 1 # about what the CI test runs
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sim.broker import Broker  # noqa: E402
from sim.faultproxy import FaultProxyControl  # noqa: E402
from sim.gateway_process import GatewayProcess  # noqa: E402
from sim.modbus import SimServer, SimUnit  # noqa: E402
from sim.platform import Message, Platform  # noqa: E402
from sim.sites import danger_plan, tone  # noqa: E402
from sim.support import free_port, listening, wait_for  # noqa: E402

COUNTERS = 10  # registers of the counter device, each changing every poll
DANGER = 152.0
SIREN_COIL = 0
MAX_ACTIVATION = 6  # seconds the siren sounds per alert


def site_text(tmp: Path, modbus_port: int, proxy_port: int, danger: float = DANGER) -> str:
    clips = {name: tone(tmp / f"{name}.wav", f) for name, f in
             (("evacuate", 440), ("exercise", 660), ("test", 880), ("all_clear", 330))}
    counters = "\n".join(f"          - {{id: c.r{i}, table: holding, address: {i}, type: uint16, "
                         f"report: {{deadband: 0}}}}" for i in range(COUNTERS))
    return f"""
gateway: {{id: soak-gw, state_dir: {tmp / 'state'}}}
buses:
  - type: modbus_tcp
    name: field
    host: 127.0.0.1
    port: {modbus_port}
    devices:
      - name: counter
        unit_id: 1
        poll_interval: 200ms
        timeout: 300ms
        retries: 0
        points:
{counters}
      - name: gauge
        unit_id: 2
        poll_interval: 200ms
        timeout: 300ms
        retries: 0
        points:
          - {{id: dam.level, table: holding, address: 0, type: float32, report: {{deadband: 0.01}}}}
links:
  - {{type: mqtt, name: county, host: 127.0.0.1, port: {proxy_port}, keepalive: 5, reconnect_min: 0.5,
      reconnect_max: 5, will_delay: 0}}
rules:
  - {{type: threshold, id: level.danger, point: dam.level, above: {danger}, severity: severe}}
  - {{type: comm_fail, id: counter.lost, point: c.r0, after: 3}}
broadcast:
  sender: soak-gw
  audit_path: {tmp / 'audit.log'}
  output_timeout: 3
  outputs:
    siren: {{type: modbus_relay_siren, board: {{transport: tcp, host: 127.0.0.1, port: {modbus_port},
             device_id: 3, timeout: 1.0}}, coil: {SIREN_COIL}, max_activation: {MAX_ACTIVATION}}}
  zones: {{dam: {{outputs: [siren]}}}}
{danger_plan(clips, flood="[[1, 0.5]], repeat: 4", drill="[[1, 2]], repeat: 2")}
"""


@dataclass
class Timeline:
    """What the harness did and saw, with wall-clock times."""

    faults: list[tuple[float, str]] = field(default_factory=list)
    danger: list[tuple[float, float]] = field(default_factory=list)  # (start, end) of each high-level episode
    coil: list[tuple[float, bool]] = field(default_factory=list)  # siren coil changes
    down: list[tuple[float, float]] = field(default_factory=list)  # daemon killed or reloading: may miss an episode
    resources: dict[int, list[tuple[float, int, int]]] = field(default_factory=dict)  # pid -> (t, fds, rss kB)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Rig:
    def __init__(self, tmp: Path, seed: int) -> None:
        self.tmp = tmp
        self.rng = random.Random(seed)
        self.timeline = Timeline()
        self.broker = Broker(tmp / "broker").start()
        self.proxy_port, self.control_port = free_port(), free_port()
        self.proxy = subprocess.Popen(
            [sys.executable, "-m", "sim.faultproxy", "--listen", str(self.proxy_port),
             "--upstream", f"127.0.0.1:{self.broker.port}", "--control", str(self.control_port)],
            cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        wait_for(lambda: listening(self.control_port), 10, "the fault proxy")
        self.control = FaultProxyControl(self.control_port)
        self.counter, self.gauge, self.board = SimUnit(1), SimUnit(2), SimUnit(3)
        self.modbus = SimServer([self.counter, self.gauge, self.board], port=free_port()).start()
        self._set_level(150.0)
        self.config = tmp / "site.yaml"
        self.good_config = site_text(tmp, self.modbus.port, self.proxy_port)
        self.config.write_text(self.good_config)
        self.messages: list[Message] = []
        self._lock = threading.Lock()
        self.platform = Platform(self.broker.port, keep=False, on_message=self._received)
        self.gateway = GatewayProcess(self.config, tmp / "gateway.log").start()
        self._stop = threading.Event()
        self.animating = True
        self._threads = [threading.Thread(target=f, daemon=True) for f in (self._animate, self._watch)]
        for thread in self._threads:
            thread.start()

    # ---- the field ----

    def _set_level(self, level: float) -> None:
        import struct

        hi, lo = struct.unpack(">HH", struct.pack(">f", level))
        self.gauge.set_registers("holding", 0, [hi, lo])

    def _animate(self) -> None:
        n = 0
        while not self._stop.wait(0.2):
            if not self.animating:
                continue
            n = (n + 1) % 60000
            self.counter.set_registers("holding", 0, [(n + i) % 65536 for i in range(COUNTERS)])

    def _watch(self) -> None:
        """The siren coil (every 50 ms) and the daemon's fds and RSS (every second)."""
        last_coil = False
        next_sample = 0.0
        while not self._stop.wait(0.05):
            coil = self.board.coil(SIREN_COIL)
            if coil != last_coil:
                with self.timeline.lock:
                    self.timeline.coil.append((time.time(), coil))
                last_coil = coil
            if time.time() >= next_sample:
                next_sample = time.time() + 1.0
                self._sample()

    def _sample(self) -> None:
        proc = self.gateway.proc
        if proc is None or proc.poll() is not None:
            return
        try:
            fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
            rss = next(int(line.split()[1]) for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines()
                       if line.startswith("VmRSS:"))
        except (OSError, StopIteration, ValueError):
            return
        with self.timeline.lock:
            self.timeline.resources.setdefault(proc.pid, []).append((time.time(), fds, rss))

    def danger_episode(self, seconds: float) -> None:
        start = time.time()
        self._set_level(DANGER + 1.5)
        time.sleep(seconds)
        self._set_level(150.0)
        self.timeline.danger.append((start, time.time()))

    def _received(self, message: Message) -> None:
        with self._lock:
            self.messages.append(message)

    def snapshot(self) -> list[Message]:
        with self._lock:
            return list(self.messages)

    # ---- the faults: each one heals before it returns ----

    def fault(self, name: str, action: Callable[[], None]) -> None:
        self.timeline.faults.append((time.time(), name))
        action()
        self._ensure_gateway()

    def _ensure_gateway(self) -> None:
        proc = self.gateway.proc
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the daemon exited ({proc.returncode}); log:\n{self.gateway.log()}")

    def faults(self) -> dict[str, Callable[[], None]]:
        def outage() -> None:
            self.broker.stop()
            time.sleep(self.rng.uniform(3, 8))
            self.broker.start()

        def flaps() -> None:
            for _ in range(3):
                self.broker.stop()
                time.sleep(self.rng.uniform(0.3, 1.5))
                self.broker.start()
                time.sleep(self.rng.uniform(0.5, 2))

        def proxy(mode: str, *args: object, hold: float = 8.0) -> Callable[[], None]:
            def run() -> None:
                self.control.send(mode, *args)
                time.sleep(hold)
                self.control.send("pass")
            return run

        def exceptions() -> None:
            self.counter.exception = 4  # slave device failure
            time.sleep(4)
            self.counter.exception = None

        def dead_unit() -> None:
            self.counter.delay = 2.0  # never within the 300 ms timeout: no answer
            time.sleep(4)
            self.counter.delay = 0.0

        def kill() -> None:
            killed = time.time()
            self.gateway.stop(signal.SIGKILL)
            time.sleep(self.rng.uniform(0.2, 1.5))  # systemd's RestartSec
            self.gateway.start()
            self.timeline.down.append((killed, time.time() + 6))  # start-up until the first poll

        def broken_reload() -> None:
            self.config.write_text("gateway: {id: [broken\n")  # refused: the running config stays
            assert self.gateway.proc is not None
            self.gateway.proc.send_signal(signal.SIGHUP)
            time.sleep(2)
            self.config.write_text(self.good_config)

        def rule_reload() -> None:
            changed = self.good_config.replace(f"above: {DANGER}", f"above: {DANGER + 0.5}")
            began = time.time()
            self.config.write_text(changed)
            assert self.gateway.proc is not None
            self.gateway.proc.send_signal(signal.SIGHUP)
            time.sleep(3)
            self.config.write_text(self.good_config)
            self.gateway.proc.send_signal(signal.SIGHUP)
            time.sleep(3)
            self.timeline.down.append((began, time.time()))  # each reload stops the outputs for a moment

        return {"broker outage": outage, "broker flaps": flaps, "proxy latency": proxy("latency", 400),
                "proxy reset": proxy("reset", hold=1.0), "proxy blackhole": proxy("blackhole", hold=12.0),
                "proxy half-open": proxy("halfopen", hold=12.0), "device exceptions": exceptions,
                "dead unit": dead_unit, "SIGKILL": kill, "SIGHUP broken config": broken_reload,
                "SIGHUP changed rule": rule_reload}

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        with contextlib.suppress(Exception):
            self.gateway.stop()
        self.platform.close()
        self.proxy.terminate()
        self.proxy.wait(10)
        self.modbus.stop()
        self.broker.stop()


def run_soak(duration: float, seed: int = 1, tmp: Path | None = None) -> dict[str, Any]:
    """Faults for ``duration`` seconds (every kind at least once, then at random), then heal and check."""
    tmp = tmp or Path(tempfile.mkdtemp(prefix="fg-soak-"))
    rig = Rig(tmp, seed)
    try:
        wait_for(lambda: any(m.topic.endswith("/telemetry") for m in rig.snapshot()), 60, "first telemetry")
        started = time.time()
        faults = rig.faults()
        order = list(faults)
        rig.rng.shuffle(order)
        episodes = threading.Thread(target=_episodes, args=(rig, started + duration), daemon=True)
        episodes.start()
        i = 0
        while time.time() < started + duration or i < len(order):
            name = order[i] if i < len(order) else rig.rng.choice(list(faults))
            rig.fault(name, faults[name])
            time.sleep(rig.rng.uniform(2, 5))  # the gateway recovers between faults
            i += 1
        episodes.join()
        time.sleep(3)
        return check(rig, tmp, time.time() - started, i)
    finally:
        rig.close()


def _episodes(rig: Rig, until: float) -> None:
    while time.time() < until:
        time.sleep(rig.rng.uniform(6, 14))
        if time.time() < until:
            rig.danger_episode(rig.rng.uniform(3, 8))


def check(rig: Rig, tmp: Path, elapsed: float, faults: int) -> dict[str, Any]:
    violations: list[str] = []
    journal = tmp / "state" / "journal.sqlite"
    rig.animating = False  # the field goes quiet: the journal can drain to nothing
    calm = time.time()
    drained = True
    try:
        wait_for(lambda: _pending(journal) == 0, 120, "the journal to drain")
    except AssertionError:
        drained = False
    if not drained:
        violations.append(f"the journal did not drain within 120 s of the last fault ({_pending(journal)} owed)")
    rig.gateway.stop()
    remaining = _owed(journal)  # committed by the stop itself, or never delivered: kept, not lost
    messages = rig.snapshot()
    records: dict[int, list[dict[str, Any]]] = {}
    for message in messages:
        if isinstance(message.body, dict):
            for record in message.body.get("records", []):
                if isinstance(record.get("seq"), int):
                    records.setdefault(record["seq"], []).append(record)
    seqs = sorted(records)
    known = set(seqs) | remaining
    gaps = sorted(set(range(min(known), max(known) + 1)) - known) if known else []
    if gaps:
        violations.append(f"{len(gaps)} committed seqs never arrived (first: {gaps[:5]})")
    conflicting = [seq for seq, copies in records.items() if any(c != copies[0] for c in copies)]
    if conflicting:
        violations.append(f"{len(conflicting)} seqs arrived with different contents (first: {conflicting[:5]})")
    duplicates = sum(len(c) - 1 for c in records.values())

    alarms = _alarm_episodes(records)
    for alarm_id, transitions in alarms.items():
        raised, cleared = transitions.count("raised"), transitions.count("cleared")
        if raised != 1 or cleared != 1:
            violations.append(f"alarm {alarm_id}: raised {raised}x, cleared {cleared}x upstream")
    danger_ids = [a for a in alarms if a.startswith("level.danger")]
    if len(danger_ids) > len(rig.timeline.danger) or (rig.timeline.danger and not danger_ids):
        violations.append(f"{len(danger_ids)} danger alarms for {len(rig.timeline.danger)} episodes")
    violations += _siren_violations(rig.timeline)
    resources = _resources(rig.timeline, calm)
    violations += [f"process {pid}: {what}" for pid, r in resources.items() for what in r.get("problems", [])]
    return {
        "benchmark": "soak", "ok": not violations, "violations": violations, "elapsed_s": round(elapsed, 1),
        "faults_injected": faults, "faults": sorted({name for _, name in rig.timeline.faults}),
        "records_delivered": len(seqs), "duplicates_same_content": duplicates, "missing": len(gaps),
        "owed_at_stop": len(remaining),
        "alarm_ids": len(alarms), "danger_episodes": len(rig.timeline.danger), "danger_alarms": len(danger_ids),
        "siren_activations": sum(1 for _, on in rig.timeline.coil if on),
        "daemon_processes": len(rig.timeline.resources), "resources": resources,
    }


def _pending(journal: Path) -> int:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5)) as db:
            return int(db.execute("SELECT count(*) FROM pending").fetchone()[0])
    except sqlite3.Error:
        return -1


def _owed(journal: Path) -> set[int]:
    with contextlib.closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5)) as db:
        return {int(seq) for (seq,) in db.execute("SELECT seq FROM pending")}


def _alarm_episodes(records: dict[int, list[dict[str, Any]]]) -> dict[str, list[str]]:
    """alarm id -> its transitions as they arrived (one per seq; resends of a seq counted once)."""
    out: dict[str, list[str]] = {}
    for seq in sorted(records):
        record = records[seq][0]
        if record.get("kind") == "alarm" and record.get("transition") in ("raised", "cleared"):
            out.setdefault(str(record.get("alarm_id")), []).append(str(record["transition"]))
    return out


def _siren_violations(timeline: Timeline) -> list[str]:
    """The coil on only inside a danger episode (plus the siren's own activation time and a poll's slack)."""
    slack = MAX_ACTIVATION + 3.0
    out = []
    for t, on in timeline.coil:
        if on and not any(start - 0.5 <= t <= end + slack for start, end in timeline.danger):
            out.append(f"siren switched on at {time.strftime('%H:%M:%S', time.localtime(t))} outside any episode")
    silent = [start for start, end in timeline.danger
              if not any(on and start - 0.5 <= t <= end + slack for t, on in timeline.coil)
              and not any(down_start - slack <= end and start <= down_end for down_start, down_end in timeline.down)]
    if silent:
        out.append(f"{len(silent)} of {len(timeline.danger)} danger episodes without the siren")
    return out


def _resources(timeline: Timeline, until: float) -> dict[int, dict[str, Any]]:
    """Per daemon process that lived long enough: fds and RSS after warm-up vs at the end of the faults."""
    out: dict[int, dict[str, Any]] = {}
    for pid, all_samples in timeline.resources.items():
        samples = [sample for sample in all_samples if sample[0] < until]
        if len(samples) < 40:
            continue
        warm = samples[len(samples) // 4]
        last = samples[-1]
        problems = []
        if last[1] > warm[1] + 8:
            problems.append(f"open fds grew {warm[1]} → {last[1]}")
        if last[2] > warm[2] * 1.25 + 10_000:
            problems.append(f"RSS grew {warm[2]} → {last[2]} kB")
        out[pid] = {"seconds": round(last[0] - samples[0][0]), "fds": [warm[1], last[1]],
                    "rss_kb": [warm[2], last[2]], "problems": problems}
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=3600.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    report = run_soak(args.duration, args.seed)
    print(json.dumps(report, indent=2, ensure_ascii=False))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
