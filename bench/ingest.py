"""Ingest benchmark: N simulated Modbus TCP devices x M registers → gateway → mosquitto, against a bare loop.

Every register changes every ``--change-ms``; the gateway polls every ``--poll-ms`` with a zero
deadband, so every change it sees is reported. Each *variant* is a process started against the same
devices and broker, one after another, ``--rounds`` times in turn (ABAB, so that a machine shared with
other jobs loads every variant alike); the figures are medians per variant, and each is also given as a
ratio against the ``bare`` variant (``bench/bare_loop.py``: pymodbus block reads + paho, no durability)
measured in the same run.

Per variant: delivered points/s, CPU seconds per 1 000 points, p50/p99 latency from the value change on
the device to its arrival at a QoS 1 subscriber, peak RSS (VmHWM), and bytes the process wrote to disk per
reading (``write_bytes`` of /proc/<pid>/io over the window: WAL, checkpoints, logs).

Gateway variants run with the ``Environment=`` of their checkout's systemd unit (``PYTHONOPTIMIZE=2`` since issue
18's fifth pass) and, as a box, from byte code: one unmeasured warm-up start per variant writes it to a temporary
``PYTHONPYCACHEPREFIX`` (``--from-source``: none, every start compiles, the figures before that pass).

    .venv/bin/python bench/ingest.py --seconds 30 --rounds 3 \\
        --variant bare --variant fieldgate:gateway:fieldgate --variant thingsboard:gateway:thingsboard \\
        --variant main-fieldgate:gateway:fieldgate:/tmp/fieldgate-main

A variant is ``NAME[:KIND[:PROFILE[:ROOT[:JOURNAL]]]]``: KIND ``bare`` or ``gateway``; PROFILE the link's
payload profile; ROOT another checkout of the repository to run the gateway from (a *before* build; empty:
this one); JOURNAL the body of the site's ``journal:`` section in YAML flow style without braces, e.g.
``min_commit_interval: 1s``. ``--env NAME=KEY=VALUE`` adds an environment variable to variant NAME's process.
``--cprofile DIR`` runs gateway variants under ``bench/profiled_gateway.py`` (cProfile per thread; CPU figures of
such a run include the profiler's overhead, so profile and measure in separate runs). ``--py-spy DIR``
instead samples each gateway variant's process over the measuring window with py-spy (all threads, no
profiler inside the process) and writes ``DIR/<name>.txt``, a summary by ``bench/pyspy_summary.py``; the
sampler runs on the same CPUs, so such a run's figures are not the measurement either.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.pyspy_summary import summarise_stacks  # noqa: E402
from sim.broker import Broker  # noqa: E402
from sim.gateway_process import unit_environment  # noqa: E402
from sim.modbus import SimServer, SimUnit  # noqa: E402
from sim.platform import Message, Platform  # noqa: E402
from sim.support import free_port, wait_for  # noqa: E402


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status_mb(pid: int, key: str = "VmHWM") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def proc_write_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def site_yaml(tmp: Path, ports: list[int], registers: int, poll_ms: int, broker_port: int, profile: str,
              journal: str = "") -> Path:
    buses = []
    for i, port in enumerate(ports):
        points = "\n".join(
            f"          - {{id: d{i}.r{r}, address: {r}, type: uint16, report: {{deadband: 0, heartbeat: 1h}}}}"
            for r in range(registers)
        )
        buses.append(f"""  - type: modbus_tcp
    name: dev{i}
    host: 127.0.0.1
    port: {port}
    devices:
      - name: d{i}
        unit_id: 1
        poll_interval: {poll_ms}ms
        timeout: 1s
        points:
{points}""")
    text = f"""gateway: {{id: bench, state_dir: {tmp / 'state'}}}
{f"journal: {{{journal}}}" if journal else ""}
buses:
{chr(10).join(buses)}
links:
  - {{type: mqtt, host: 127.0.0.1, port: {broker_port}, max_inflight: 16, batch_records: 500, profile: {profile}}}
"""
    path = tmp / "site.yaml"
    path.write_text(text)
    return path


@dataclass
class Variant:
    name: str
    kind: str = "gateway"
    profile: str = "fieldgate"
    root: Path = ROOT
    journal: str = ""
    env: dict[str, str] = field(default_factory=dict)  # --env NAME=KEY=VALUE: e.g. MALLOC_ARENA_MAX
    byte_code: dict[str, str] = field(default_factory=dict)  # where its byte code is read from (warm_up)
    runs: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def parse(cls, spec: str) -> Variant:
        parts = spec.split(":")
        variant = cls(parts[0], kind=parts[1] if len(parts) > 1 else parts[0])
        if len(parts) > 2:
            variant.profile = parts[2]
        if len(parts) > 3 and parts[3]:
            variant.root = Path(parts[3]).resolve()
        if len(parts) > 4:
            variant.journal = ":".join(parts[4:])
        return variant


class Arrivals:
    """Telemetry values as they reach the platform: (value, arrival time), both payload profiles and the bare loop."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: list[tuple[int, float]] = []
        self.points: set[str] = set()

    def on_message(self, message: Message) -> None:
        body = message.body
        got: list[tuple[str, Any]] = []
        if message.topic.endswith("/telemetry") and message.topic.startswith("fieldgate/") and isinstance(body, dict):
            got = [(r.get("point", ""), r.get("value")) for r in body.get("records", []) if isinstance(r, dict)]
        elif message.topic == "v1/gateway/telemetry" and isinstance(body, dict):
            got = [(f"{device}.{key}", value) for device, entries in body.items() for entry in entries
                   for key, value in entry.get("values", {}).items() if not key.endswith("_quality")]
        with self.lock:
            for point, value in got:
                if isinstance(value, int):
                    self.values.append((value, message.arrived))
                    self.points.add(point)

    def reset(self) -> None:
        with self.lock:
            self.values.clear()
            self.points.clear()


def start_variant(variant: Variant, tmp: Path, ports: list[int], args: argparse.Namespace,
                  broker_port: int) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(variant.root))
    if variant.kind != "bare":
        env.update(unit_environment(variant.root / "deploy" / "raspberrypi" / "fieldgate.service"))
        env.update(variant.byte_code)
    env.update(variant.env)
    env = {k: v for k, v in env.items() if v}  # an empty value unsets (PYTHONDONTWRITEBYTECODE for the warm-up)
    log = open(tmp / "process.log", "ab")  # noqa: SIM115 - closed with the process
    if variant.kind == "bare":
        cmd = [sys.executable, str(ROOT / "bench" / "bare_loop.py"), "--broker-port", str(broker_port),
               "--ports", ",".join(map(str, ports)), "--registers", str(args.registers),
               "--poll-ms", str(args.poll_ms)]
    else:
        config = site_yaml(tmp, ports, args.registers, args.poll_ms, broker_port, variant.profile,
                           variant.journal)
        cmd = [sys.executable, "-m", "gateway.cli", "run", str(config)]
        if args.cprofile:
            cmd = [sys.executable, str(ROOT / "bench" / "profiled_gateway.py"), str(Path(args.cprofile).resolve()),
                   variant.name, str(config)]
    return subprocess.Popen(cmd, cwd=variant.root, env=env, stdout=log, stderr=log)


def warm_up(variant: Variant, ports: list[int], args: argparse.Namespace, broker_port: int, arrivals: Arrivals,
            prefix: Path) -> None:
    """An unmeasured start that writes the byte code of what the daemon imports (ours, the standard library's, the
    venv's, at the unit's PYTHONOPTIMIZE level) to ``prefix``; measured starts then read it, as a box reads what
    its package compiled at install (bench/startup.py does the same)."""
    tmp = Path(tempfile.mkdtemp(prefix=f"fg-ingest-warm-{variant.name}-"))
    variant.byte_code = {"PYTHONPYCACHEPREFIX": str(prefix), "PYTHONDONTWRITEBYTECODE": ""}
    arrivals.reset()
    proc = start_variant(variant, tmp, ports, args, broker_port)
    try:
        wait_for(lambda: len(arrivals.points) >= len(ports) * args.registers, 90, f"warm-up of {variant.name}")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    variant.byte_code = {"PYTHONPYCACHEPREFIX": str(prefix), "PYTHONDONTWRITEBYTECODE": "1"}


def measure(variant: Variant, ports: list[int], args: argparse.Namespace, broker_port: int,
            arrivals: Arrivals, changed_at: dict[int, float]) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"fg-ingest-{variant.name}-"))
    arrivals.reset()
    proc = start_variant(variant, tmp, ports, args, broker_port)
    pid = proc.pid
    total_points = len(ports) * args.registers
    try:
        wait_for(lambda: len(arrivals.points) >= total_points, 90, f"first values of {variant.name}")
        time.sleep(args.settle)
        with arrivals.lock:
            mark = len(arrivals.values)
        cpu0, io0, t0 = proc_cpu_seconds(pid), proc_write_bytes(pid), time.time()
        rss_track: list[float] = []
        if args.py_spy:
            sample_with_py_spy(pid, variant.name, Path(args.py_spy), args.seconds)
        elif args.rss_every:
            while time.time() < t0 + args.seconds:
                rss_track.append(round(proc_status_mb(pid, "VmRSS"), 1))
                time.sleep(min(args.rss_every, max(0.0, t0 + args.seconds - time.time())))
        else:
            time.sleep(args.seconds)
        cpu1, io1, t1 = proc_cpu_seconds(pid), proc_write_bytes(pid), time.time()
        with arrivals.lock:
            window = arrivals.values[mark:]
        peak_rss = proc_status_mb(pid, "VmHWM")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    latencies = [(arrived - changed_at[v]) * 1000 for v, arrived in window
                 if v in changed_at and arrived >= changed_at[v]]
    delivered = len(window)
    shutil.rmtree(tmp, ignore_errors=True)
    return {
        "points_per_s": round(delivered / (t1 - t0), 1),
        "cpu_s_per_1000_points": round((cpu1 - cpu0) / max(delivered, 1) * 1000, 4),
        "cpu_percent": round((cpu1 - cpu0) / (t1 - t0) * 100, 1),
        "latency_ms_p50": round(statistics.median(latencies), 1) if latencies else None,
        "latency_ms_p99": round(statistics.quantiles(latencies, n=100)[98], 1) if len(latencies) > 100 else None,
        "peak_rss_mb": round(peak_rss, 1),
        "write_bytes_per_reading": round((io1 - io0) / max(delivered, 1), 1),
        "load_1min": os.getloadavg()[0],
        **({"rss_mb_track": rss_track} if rss_track else {}),
    }


def sample_with_py_spy(pid: int, name: str, outdir: Path, seconds: float) -> None:
    """py-spy over the window (it ends with the window), then the collapsed stacks summarised as text."""
    outdir.mkdir(parents=True, exist_ok=True)
    raw = outdir / f"{name}.collapsed"
    subprocess.run([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--format", "raw",
                    "--rate", "200", "--nonblocking", "--threads", "--duration", str(int(seconds)),
                    "--output", str(raw)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (outdir / f"{name}.txt").write_text(summarise_stacks(raw.read_text(), f"{name}: py-spy, {seconds:.0f} s"))


def summarise(variants: list[Variant]) -> dict[str, Any]:
    keys = ("points_per_s", "cpu_s_per_1000_points", "cpu_percent", "latency_ms_p50", "latency_ms_p99",
            "peak_rss_mb", "write_bytes_per_reading", "load_1min")
    out: dict[str, Any] = {}
    for v in variants:
        med: dict[str, Any] = {}
        for key in keys:
            values = [r[key] for r in v.runs if r.get(key) is not None]
            med[key] = round(statistics.median(values), 4) if values else None
        out[v.name] = {"kind": v.kind, "profile": v.profile, "root": str(v.root), "median": med, "runs": v.runs}
    bare = out.get("bare", {}).get("median")
    if bare:
        for name, entry in out.items():
            if name == "bare":
                continue
            m = entry["median"]
            entry["ratio_to_bare"] = {
                key: round(m[key] / bare[key], 2) for key in ("cpu_s_per_1000_points", "peak_rss_mb",
                                                             "latency_ms_p50", "latency_ms_p99")
                if m.get(key) and bare.get(key)}
    return out


def site_arguments() -> argparse.ArgumentParser:
    """The simulated site's shape, shared with bench/outage.py: devices x registers, poll and change period."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--registers", type=int, default=20)
    parser.add_argument("--poll-ms", type=int, default=100)
    parser.add_argument("--change-ms", type=int, default=100)
    return parser


def main() -> int:
    parser = site_arguments()
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after the first values before measuring")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME[:KIND[:PROFILE[:ROOT]]]; default: bare and fieldgate")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=KEY=VALUE",
                        help="an environment variable for one variant's process (e.g. MALLOC_ARENA_MAX=2)")
    parser.add_argument("--from-source", action="store_true",
                        help="no warm-up: every gateway start compiles what it imports (figures before issue 18's "
                             "fifth pass)")
    parser.add_argument("--cprofile", default=None, help="directory for cProfile summaries of gateway variants")
    parser.add_argument("--py-spy", default=None, help="directory for py-spy summaries of gateway variants")
    parser.add_argument("--rss-every", type=float, default=0.0,
                        help="seconds between VmRSS samples over the window (a long run's memory, bounded or not)")
    args = parser.parse_args()
    variants = [Variant.parse(s) for s in (args.variant or ["bare", "fieldgate:gateway:fieldgate"])]
    by_name = {v.name: v for v in variants}
    for spec in args.env:
        name, key, value = spec.split("=", 2)
        by_name[name].env[key] = value

    tmp = Path(tempfile.mkdtemp(prefix="fg-bench-"))
    broker = Broker(tmp / "broker").start()
    arrivals = Arrivals()
    collector = Platform(broker.port, ["fieldgate/#", "v1/gateway/telemetry"], keep=False,
                         on_message=arrivals.on_message, max_inflight=100)
    units = [SimUnit(1) for _ in range(args.devices)]
    servers = [SimServer([u], port=free_port()).start() for u in units]
    ports = [s.port for s in servers]
    changed_at: dict[int, float] = {}
    stop = threading.Event()

    def change_values() -> None:
        k = 0
        while not stop.is_set():
            k = (k + 1) % 65536
            changed_at[k] = time.time()
            for unit in units:
                unit.set_registers("holding", 0, [k] * args.registers)
            time.sleep(args.change_ms / 1000)

    threading.Thread(target=change_values, daemon=True).start()
    try:
        if not args.from_source:
            for variant in variants:
                if variant.kind != "bare":
                    warm_up(variant, ports, args, broker.port, arrivals, tmp / f"pycache-{variant.name}")
        for round_no in range(args.rounds):
            for variant in variants:
                result = measure(variant, ports, args, broker.port, arrivals, changed_at)
                variant.runs.append(result)
                print(f"round {round_no} {variant.name}: {json.dumps(result)}", file=sys.stderr, flush=True)
    finally:
        stop.set()
        collector.close()
        for server in servers:
            server.stop()
        broker.stop()
    print(json.dumps({
        "benchmark": "ingest",
        "devices": args.devices, "registers_per_device": args.registers, "poll_ms": args.poll_ms,
        "change_ms": args.change_ms, "window_s": args.seconds, "rounds": args.rounds,
        "offered_changes_per_s": round(args.devices * args.registers * 1000 / args.change_ms, 1),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}",
        "variants": summarise(variants),
    }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
