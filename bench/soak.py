"""Chaos soak: the real daemon on the virtual rig with faults injected on a schedule, and what must hold.

Parts, each a real process or server: mosquitto (sim/broker.py), the TCP fault proxy between the gateway and
the broker (sim/faultproxy.py, its own process), Modbus TCP devices (sim/modbus.py: a counter device, the dam
gauge, the siren's relay board), an RS-485 line of Modbus RTU units (sim/rs485.py) on two socat pty pairs with a
noise relay between them, the platform's MQTT client (sim/platform.py) and ``fieldgate run`` itself, restarted
like systemd would after a SIGKILL, its state directory on a small loop-mounted ext4 (sim/smallfs.py); for the
clock steps it is restarted under libfaketime (sim/faketime.py: its own wall clock only; not for the whole run,
libfaketime costs the daemon most of a core) and back without it after them.

Faults (each heals before the next): broker outage, broker flaps, proxy latency, proxy reset, proxy blackhole,
proxy half-open, a device answering with exceptions, a dead device (no answer), SIGKILL of the daemon,
SIGHUP with a broken config, SIGHUP with a changed rule, RS-485 noise (CRC errors, truncated, garbage and
re-addressed frames, bursts of line noise), a dead unit on the serial line, disk full (the state directory's file
system filled, then freed), clock steps (the daemon's wall clock +1 h, back, -30 s, back). Meanwhile the gauge
crosses the danger level on its own schedule (alarm episodes), which the site plan turns into the siren.
Without root (no loop mount) or without libfaketime, disk full or clock steps are skipped and the report says
why (``skipped``).

What it checks at the end (``report["ok"]`` and the list of ``violations``):
- every committed record reached the platform: seqs are gap-free, so every seq from the first to the last
  (plus what is still in the journal) must have arrived, except the records the journal reports as dropped
  (docs/durability.md: on a full disk telemetry is dropped, oldest first, counted and reported by an event
  record; never an alarm or evidence); duplicates only with the same seq and content;
- every alarm episode raised once and cleared once upstream (by alarm id), none left active at the end;
- the siren coil on only while a danger episode is on (plus its activation time), and on in each episode;
- open file descriptors and RSS flat within each daemon process's life (after a warm-up);
- the serial line: every good value is the unit's true value, damaged frames show as bad quality upstream, the
  gateway asks the healthy unit all along (no stall longer than ``STALL_S`` while the daemon runs), the dead unit's
  comm_fail alarm raised and cleared;
- timestamps: a reading's ``ts`` is the daemon's wall clock when it was taken, step included (no correction:
  docs/durability.md "Clock steps"), checked against when the harness set the counter value it carries.

    .venv/bin/python bench/soak.py --duration 3600        # the long one (make soak)
    .venv/bin/python bench/soak.py --duration 90 --seed 1 # about what the CI test runs
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
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

from gateway.journal.batch import owed_seqs  # noqa: E402
from sim.broker import Broker  # noqa: E402
from sim.faketime import FakeClock, libfaketime  # noqa: E402
from sim.faultproxy import FaultProxyControl  # noqa: E402
from sim.gateway_process import GatewayProcess  # noqa: E402
from sim.modbus import SimServer, SimUnit  # noqa: E402
from sim.platform import Message, Platform  # noqa: E402
from sim.rs485 import LineSimulator, NoiseRelay  # noqa: E402
from sim.serial_pty import socat_pair  # noqa: E402
from sim.sites import DANGER_PLAN_MAX_PER_HOUR, danger_plan, tone  # noqa: E402
from sim.smallfs import fill, mount_small_fs_or_reason, unmount  # noqa: E402
from sim.support import free_port, listening, wait_for  # noqa: E402

COUNTERS = 10  # registers of the counter device, each changing every poll
DANGER = 152.0
SIREN_COIL = 0
MAX_ACTIVATION = 6  # seconds the siren sounds per alert
SERIAL_UNITS = (1, 2)  # RTU units on the line; unit 2 dies during the "serial dead unit" fault
SERIAL_ADDRESSES = (0, 5)
SERIAL_POINT = re.compile(r"s\d+\.r\d+")
# Longest the gateway may go without ASKING the healthy serial unit while it polls its TCP devices. Counted from
# the requests the gateway sent (NoiseRelay.requests, read before the relay damages them), not those the unit
# received: under 30 % noise a third of the requests never reach the unit intact, which is the line's fault, not
# the scheduler's. 3 s is ten polls at 300 ms: the scheduler leaves a live unit that long only after twelve
# silent attempts in a row (drivers/modbus/bus.py), a 5×10⁻⁷ chance per poll under the soak's noise, so a
# stall here is a scheduler or daemon fault; sampled each second, so a reported gap is ±1 s.
STALL_S = 3.0
HANG_S = 10.0  # longest the daemon may poll nothing at all while it runs (the machine is shared: pauses happen)
SMALL_FS_MB = 64  # the state directory's file system


def serial_value(unit: int, address: int) -> int:
    return unit * 100 + address


def site_text(tmp: Path, modbus_port: int, proxy_port: int, serial_port: str, state_dir: Path,
              danger: float = DANGER) -> str:
    clips = {name: tone(tmp / f"{name}.wav", f) for name, f in
             (("evacuate", 440), ("exercise", 660), ("test", 880), ("all_clear", 330))}
    counters = "\n".join(f"          - {{id: c.r{i}, table: holding, address: {i}, type: uint16, "
                         f"report: {{deadband: 0}}}}" for i in range(COUNTERS))
    serial = "\n".join(f"""      - name: s{unit}
        unit_id: {unit}
        poll_interval: 300ms
        timeout: 150ms
        retries: 0
        points:
""" + "\n".join(f"          - {{id: s{unit}.r{a}, table: holding, address: {a}, type: uint16}}"
                for a in SERIAL_ADDRESSES) for unit in SERIAL_UNITS)
    return f"""
gateway: {{id: soak-gw, state_dir: {state_dir}}}
journal: {{drop_event_interval: 1s}}
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
  - type: modbus_rtu
    name: line
    port: {serial_port}
    baud: 19200
    reconnect_min: 0.1
    reconnect_max: 0.5
    devices:
{serial}
links:
  - {{type: mqtt, name: county, host: 127.0.0.1, port: {proxy_port}, keepalive: 5, reconnect_min: 0.5,
      reconnect_max: 5, will_delay: 0}}
rules:
  - {{type: threshold, id: level.danger, point: dam.level, above: {danger}, severity: severe}}
  - {{type: comm_fail, id: counter.lost, point: c.r0, after: 3}}
  - {{type: comm_fail, id: line.s2.lost, point: s2.r0, after: 3}}
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
    offsets: list[tuple[float, float]] = field(default_factory=lambda: [(0.0, 0.0)])  # the daemon's clock steps
    counter_set: dict[int, float] = field(default_factory=dict)  # counter value -> when the harness set it
    serial_polls: list[tuple[float, int]] = field(default_factory=list)  # requests the gateway sent the healthy unit
    tcp_polls: list[tuple[float, int]] = field(default_factory=list)  # requests the gauge (Modbus TCP) got
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
        self._parts = contextlib.ExitStack()
        # gateway ⇄ pty pair ⇄ noise relay ⇄ pty pair ⇄ the RTU units
        serial_port, relay_gateway_side = self._parts.enter_context(socat_pair())
        relay_device_side, line_port = self._parts.enter_context(socat_pair())
        self.relay = NoiseRelay(relay_gateway_side, relay_device_side, rate=0.0, seed=seed).start()
        self._parts.callback(self.relay.stop)
        units = [SimUnit(unit, size=16) for unit in SERIAL_UNITS]
        for unit in units:
            unit.set_registers("holding", 0, [serial_value(unit.unit_id, a) for a in range(16)])
        self.line = LineSimulator(line_port, units).start()
        self._parts.callback(self.line.stop)
        self.skipped: dict[str, str] = {}
        self.crashes: list[str] = []  # the daemon exited by itself (see _ensure_gateway)
        self.small_fs, reason = mount_small_fs_or_reason(tmp, SMALL_FS_MB)
        if self.small_fs is None:
            self.skipped["disk full"] = f"no loop-mounted file system for the state directory: {reason}"
        else:
            self._parts.callback(unmount, self.small_fs)
        self.clock: FakeClock | None = None
        if libfaketime() is None:
            self.skipped["clock steps"] = "libfaketime is not installed (apt-get install faketime)"
        else:
            self.clock = FakeClock(tmp / "clock")
        self.config = tmp / "site.yaml"
        state_dir = (self.small_fs or tmp) / "state"
        self.good_config = site_text(tmp, self.modbus.port, self.proxy_port, serial_port, state_dir)
        self.journal_path = state_dir / "journal.sqlite"
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
            n = (n + 1) % 60000  # 3.3 h before a value repeats: the timestamp check maps a value to one moment
            self.counter.set_registers("holding", 0, [(n + i) % 65536 for i in range(COUNTERS)])
            self.timeline.counter_set[n] = time.time()

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
                self.timeline.serial_polls.append((time.time(), self.relay.requests.get(SERIAL_UNITS[0], 0)))
                self.timeline.tcp_polls.append((time.time(), self.gauge.requests))

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
        """A daemon that exited by itself is a violation; it is restarted as systemd would, and the soak goes on
        (a long run then still ends with its report, and the log tail says why)."""
        proc = self.gateway.proc
        if proc is not None and proc.poll() is not None:
            exited = time.time()
            tail = self.gateway.log()[-3000:]
            self.crashes.append(f"the daemon exited by itself ({proc.returncode}) at "
                                f"{time.strftime('%H:%M:%S', time.localtime(exited))}; log tail:\n{tail}")
            self.gateway.start()
            self.timeline.down.append((exited, time.time() + 6))

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

        def line_noise() -> None:
            self.relay.rate = 0.3  # of the frames, either way: flipped bits (CRC), truncated, garbage, re-addressed
            time.sleep(3)
            for _ in range(3):
                self.relay.burst(self.rng.randrange(20, 200))
                time.sleep(0.7)
            time.sleep(1)
            self.relay.rate = 0.0

        def serial_dead_unit() -> None:
            self.line.dead.add(SERIAL_UNITS[1])
            time.sleep(5)  # several polls: its comm_fail alarm is raised
            self.line.dead.discard(SERIAL_UNITS[1])

        def disk_full() -> None:
            assert self.small_fs is not None
            filler = fill(self.small_fs, leave=0)
            time.sleep(8)
            filler.unlink()

        def restart(env: dict[str, str] | None) -> None:
            began = time.time()
            self.gateway.stop()
            self.gateway.env = env or {}
            self.gateway.start()
            time.sleep(4)  # start-up until the first poll
            self.timeline.down.append((began, time.time() + 2))

        def clock_steps() -> None:
            assert self.clock is not None
            restart(self.clock.env())  # the daemon's own wall clock under libfaketime, at true time to start
            for offset, hold in ((3600.0, 5.0), (0.0, 3.0), (-30.0, 5.0), (0.0, 2.0)):  # +1 h, back, -30 s, back
                self.clock.step(offset)
                with self.timeline.lock:
                    self.timeline.offsets.append((time.time(), offset))
                time.sleep(hold)
            restart(None)

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

        faults = {"broker outage": outage, "broker flaps": flaps, "proxy latency": proxy("latency", 400),
                  "proxy reset": proxy("reset", hold=1.0), "proxy blackhole": proxy("blackhole", hold=12.0),
                  "proxy half-open": proxy("halfopen", hold=12.0), "device exceptions": exceptions,
                  "dead unit": dead_unit, "SIGKILL": kill, "SIGHUP broken config": broken_reload,
                  "SIGHUP changed rule": rule_reload, "RS-485 noise": line_noise,
                  "serial dead unit": serial_dead_unit, "disk full": disk_full, "clock steps": clock_steps}
        return {name: action for name, action in faults.items() if name not in self.skipped}

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
        self._parts.close()


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
        return check(rig, time.time() - started, i)
    finally:
        rig.close()


def _episodes(rig: Rig, until: float) -> None:
    while time.time() < until:
        time.sleep(rig.rng.uniform(6, 14))
        if time.time() < until:
            rig.danger_episode(rig.rng.uniform(3, 8))


def check(rig: Rig, elapsed: float, faults: int) -> dict[str, Any]:
    violations: list[str] = []
    journal = rig.journal_path
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
    drops = _reported_drops(records)
    if len(gaps) > sum(drops.values()):
        violations.append(f"{len(gaps)} committed seqs never arrived, {sum(drops.values())} reported dropped "
                          f"(first: {gaps[:5]})")
    kept_always = [key for key in drops if key.split("/")[-1] in ("alarm", "evidence")]
    if kept_always:
        violations.append(f"alarms or evidence dropped: {kept_always}")
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
    violations += rig.crashes
    violations += _siren_violations(rig.timeline)
    injected = {name for _, name in rig.timeline.faults}
    serial, serial_problems = _serial(records, alarms, rig.timeline, injected, calm)
    violations += serial_problems
    stamps, stamp_problems = _timestamps(records, rig.timeline)
    violations += stamp_problems
    log_text = rig.gateway.log_path.read_text(errors="replace")
    full_log = log_text.count("journal: disk full")
    low_log = log_text.count("journal: file system low")
    if "disk full" in injected and not full_log and not low_log:
        violations.append("the disk was filled but the journal never noticed (no disk-full log line, no drop)")
    resources = _resources(rig.timeline, calm)
    violations += [f"process {pid}: {what}" for pid, r in resources.items() for what in r.get("problems", [])]
    return {
        "benchmark": "soak", "ok": not violations, "violations": violations, "elapsed_s": round(elapsed, 1),
        "faults_injected": faults, "faults": sorted({name for _, name in rig.timeline.faults}),
        "skipped": rig.skipped,
        "records_delivered": len(seqs), "duplicates_same_content": duplicates, "missing": len(gaps),
        "dropped_reported": drops, "disk_full_log_lines": full_log,
        "file_system_low_log_lines": low_log, "owed_at_stop": len(remaining),
        "serial": serial, "clock": stamps,
        "alarm_ids": len(alarms), "danger_episodes": len(rig.timeline.danger), "danger_alarms": len(danger_ids),
        "siren_activations": sum(1 for _, on in rig.timeline.coil if on),
        "daemon_processes": len(rig.timeline.resources), "resources": resources,
    }


def _pending(journal: Path) -> int:
    try:
        with contextlib.closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5)) as db:
            return len(owed_seqs(db))
    except sqlite3.Error:
        return -1


def _owed(journal: Path) -> set[int]:
    with contextlib.closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True, timeout=5)) as db:
        return set(owed_seqs(db))


def _alarm_episodes(records: dict[int, list[dict[str, Any]]]) -> dict[str, list[str]]:
    """alarm id -> its transitions as they arrived (one per seq; resends of a seq counted once)."""
    out: dict[str, list[str]] = {}
    for seq in sorted(records):
        record = records[seq][0]
        if record.get("kind") == "alarm" and record.get("transition") in ("raised", "cleared"):
            out.setdefault(str(record.get("alarm_id")), []).append(str(record["transition"]))
    return out


def _reported_drops(records: dict[int, list[dict[str, Any]]]) -> dict[str, int]:
    """What the journal's drop events (``kind: dropped``, ``key: journal``) say it dropped, per reason/class."""
    out: dict[str, int] = {}
    for seq in sorted(records):
        record = records[seq][0]
        if record.get("kind") == "dropped" and record.get("key") == "journal":
            for key, n in (record.get("records") or {}).items():
                out[key] = out.get(key, 0) + int(n)
    return out


def _serial(records: dict[int, list[dict[str, Any]]], alarms: dict[str, list[str]], timeline: Timeline,
            injected: set[str], until: float) -> tuple[dict[str, Any], list[str]]:
    """The RS-485 line: true values only, damage flagged, the healthy unit never stalled, the dead unit's alarm."""
    problems: list[str] = []
    readings = [copies[0] for copies in records.values()
                if SERIAL_POINT.fullmatch(str(copies[0].get("point"))) and "q" in copies[0]]
    wrong = []
    for r in readings:
        unit, address = (int(part[1:]) for part in str(r["point"]).split("."))
        if (r["q"] == "good" and r["value"] != serial_value(unit, address)) or (r["q"] != "good" and
                                                                              r["value"] is not None):
            wrong.append(r)
    if wrong:
        problems.append(f"{len(wrong)} serial readings with a wrong value (first: {wrong[:2]})")
    flagged = sum(1 for r in readings if r["q"] in ("bad_frame", "comm_fail"))
    if "RS-485 noise" in injected and not flagged:
        problems.append("RS-485 noise injected but no serial reading was flagged bad_frame/comm_fail upstream")
    dead_alarms = [a for a in alarms if a.startswith("line.s2.lost")]
    if "serial dead unit" in injected and not dead_alarms:
        problems.append("the serial unit died but its comm_fail alarm never arrived")
    # A stall of the line (the dead or noisy unit holding up the healthy one) is one while the daemon polls
    # its TCP devices; both standing still is the whole daemon pausing (a full disk's slow fsyncs, a loaded box).
    pauses = _unpolled(timeline, timeline.serial_polls, until)
    tcp_pauses = _unpolled(timeline, timeline.tcp_polls, until)
    line_stalls = [(start, end) for start, end in pauses
                   if not any(a <= start + 1.0 and b >= end - 1.0 for a, b in tcp_pauses)]
    for start, end in line_stalls:
        if end - start > STALL_S:
            problems.append(f"the healthy serial unit went {end - start:.1f} s without a poll while the TCP devices "
                            f"were polled (from {_moment(timeline, start)})")
    for start, end in tcp_pauses:
        if end - start > HANG_S:
            problems.append(f"the daemon polled nothing for {end - start:.1f} s (from {_moment(timeline, start)})")
    widest = max(tcp_pauses, key=lambda p: p[1] - p[0], default=(0.0, 0.0))
    return {"readings": len(readings), "flagged_bad": flagged, "wrong_values": len(wrong),
            "dead_unit_alarms": len(dead_alarms),
            "longest_line_stall_s": round(max((b - a for a, b in line_stalls), default=0.0), 1),
            "longest_daemon_poll_pause_s": round(widest[1] - widest[0], 1),
            "longest_pause_at": _moment(timeline, widest[0]) if widest[1] else None}, problems


def _unpolled(timeline: Timeline, polls: list[tuple[float, int]], until: float) -> list[tuple[float, float]]:
    """(from, to) of each time over a second a unit's request count stood still while the daemon was up
    (sampled every second; a killed or reloading daemon's time is not counted)."""
    out = []
    last_change, last_count = None, None
    for t, count in polls:
        if t > until:
            break
        if count != last_count:
            if last_change is not None and t - last_change > 1.5 \
                    and not any(a < t and b > last_change for a, b in timeline.down):
                out.append((last_change, t))
            last_change, last_count = t, count
    # A count that stood still to the end is a pause too (a unit never asked again would otherwise pass).
    if last_change is not None and until - last_change > 1.5 \
            and not any(a < until and b > last_change for a, b in timeline.down):
        out.append((last_change, until))
    return out


def _timestamps(records: dict[int, list[dict[str, Any]]], timeline: Timeline) -> tuple[dict[str, Any], list[str]]:
    """Each counter reading's ``ts`` is true time + the daemon's clock offset while it was taken.

    The counter value a reading carries says when it was taken: after the harness set that value and before it
    set the next (plus a poll). ``ts`` minus one of the offsets in effect around then must fall in that window.
    """
    slack = 5.0  # a poll's duration and a loaded machine's pauses; far below the steps (30 s, 1 h) it tells apart
    offsets = timeline.offsets
    checked, off, late = 0, [], 0.0
    stepped: dict[float, int] = {}
    for copies in records.values():
        r = copies[0]
        if r.get("point") != "c.r0" or r.get("q") != "good" or not isinstance(r.get("value"), int):
            continue
        start = timeline.counter_set.get(r["value"])
        if start is None:
            continue
        end = timeline.counter_set.get((r["value"] + 1) % 60000, float("inf"))
        end = end if end >= start else float("inf")
        live = [o for i, (t, o) in enumerate(offsets)
                if t <= end + slack and (i + 1 == len(offsets) or offsets[i + 1][0] >= start - slack)]
        checked += 1
        match = [o for o in live if start - slack <= r["ts"] - o <= end + slack]
        if not match:
            off.append({**r, "set": round(start, 3), "next_set": round(end, 3), "offsets": live,
                        "at": _moment(timeline, start)})
        else:
            late = max(late, r["ts"] - match[0] - end)
            if match[0]:
                stepped[match[0]] = stepped.get(match[0], 0) + 1
    problems = [f"{len(off)} of {checked} readings with a timestamp off the daemon's clock (first: {off[:2]})"] \
        if off else []
    return {"steps": len(offsets) - 1, "readings_checked": checked,
            "latest_stamp_after_the_value_changed_s": round(late, 2),
            "readings_taken_at_offset": {f"{o:+.0f}s": n for o, n in sorted(stepped.items())}}, problems


def _moment(timeline: Timeline, t: float) -> str:
    """``t`` as a clock time and the last fault begun before it (for a violation's message)."""
    begun = [(start, name) for start, name in timeline.faults if start <= t]
    last = f", {t - begun[-1][0]:.1f} s into/after '{begun[-1][1]}'" if begun else ", before the first fault"
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t % 1 * 10)}" + last


def _siren_violations(timeline: Timeline) -> list[str]:
    """The coil on only inside a danger episode (plus the siren's own activation time and a poll's slack)."""
    slack = MAX_ACTIVATION + 3.0
    out = []
    for t, on in timeline.coil:
        if on and not any(start - 0.5 <= t <= end + slack for start, end in timeline.danger):
            out.append(f"siren switched on at {time.strftime('%H:%M:%S', time.localtime(t))} outside any episode")
    sounded = [start for start, end in timeline.danger
               if any(on and start - 0.5 <= t <= end + slack for t, on in timeline.coil)]
    silent = [start for start, end in timeline.danger
              if start not in sounded
              and not any(down_start - slack <= end and start <= down_end for down_start, down_end in timeline.down)]
    # The interlock's hourly cap (the site plan's max_per_hour) silences the zone by design once reached; a run
    # longer than a few minutes reaches it. Silent is right only when the cap was reached, and the cap holds.
    capped = [s for s in silent if _in_hour_before(sounded, s, CAP_SLACK_S) >= DANGER_PLAN_MAX_PER_HOUR]
    if len(silent) > len(capped):
        out.append(f"{len(silent) - len(capped)} of {len(timeline.danger)} danger episodes without the siren "
                   f"(the hourly cap of {DANGER_PLAN_MAX_PER_HOUR} not reached)")
    # Each activation with those before it in the hour (narrowed by the slack): never more than the cap.
    if sounded and max(sum(1 for e in sounded if s - 3600 + CAP_SLACK_S < e <= s) for s in sounded) \
            > DANGER_PLAN_MAX_PER_HOUR:
        out.append(f"more than {DANGER_PLAN_MAX_PER_HOUR} siren activations within an hour")
    return out


CAP_SLACK_S = 10.0  # between an episode's start (seen here) and the activation time the interlock counts


def _in_hour_before(starts: list[float], at: float, slack: float) -> int:
    """Episodes that sounded within the hour before ``at`` (the window widened by ``slack`` seconds)."""
    return sum(1 for s in starts if at - 3600 - slack < s <= at + slack)


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
