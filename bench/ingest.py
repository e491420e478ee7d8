"""Ingest benchmark: N simulated Modbus TCP devices x M registers → gateway → mosquitto.

Every register changes every ``--change-ms``; the gateway polls every ``--poll-ms``
with a zero deadband, so every change it sees is reported. Prints JSON: delivered
points/s, gateway CPU seconds per 1 000 points, p50/p99 latency from the value
change on the device to its arrival at a broker subscriber, and the gateway's
peak RSS.

    .venv/bin/python bench/ingest.py --devices 10 --registers 20 --poll-ms 100 --seconds 30
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sim.broker import Broker  # noqa: E402
from sim.gateway_process import GatewayProcess  # noqa: E402
from sim.modbus import SimServer, SimUnit  # noqa: E402
from sim.platform import Platform  # noqa: E402
from sim.support import free_port, wait_for  # noqa: E402


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def site_yaml(tmp: Path, ports: list[int], registers: int, poll_ms: int, broker_port: int) -> Path:
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
buses:
{chr(10).join(buses)}
links:
  - {{type: mqtt, host: 127.0.0.1, port: {broker_port}, max_inflight: 16, batch_records: 500}}
"""
    path = tmp / "site.yaml"
    path.write_text(text)
    return path


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
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="fg-bench-"))
    broker = Broker(tmp / "broker").start()
    collector = Platform(broker.port)
    units = [SimUnit(1) for _ in range(args.devices)]
    servers = [SimServer([u], port=free_port()).start() for u in units]
    config = site_yaml(tmp, [s.port for s in servers], args.registers, args.poll_ms, broker.port)

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

    gateway = GatewayProcess(config, tmp / "gateway.log").start()
    assert gateway.proc is not None
    pid = gateway.proc.pid
    changer = threading.Thread(target=change_values, daemon=True)
    changer.start()
    total_points = args.devices * args.registers
    wait_for(lambda: len({r["point"] for r in collector.records()}) == total_points, 60, "first values")
    # Measurement window.
    arrivals_before = len(collector.records())
    cpu0, t0 = proc_cpu_seconds(pid), time.time()
    mark = len(collector.snapshot())
    time.sleep(args.seconds)
    cpu1, t1 = proc_cpu_seconds(pid), time.time()
    peak_rss = proc_peak_rss_mb(pid)
    stop.set()
    gateway.stop()
    window = collector.snapshot()[mark:]
    # Telemetry only: the health event the gateway sends at start (on <gw>/event) is a record without a value.
    arrivals = [(r, m.arrived) for m in window if m.topic.endswith("/telemetry") and isinstance(m.body, dict)
                for r in m.body.get("records", [])]
    latencies = []
    for record, arrived in arrivals:
        t_change = changed_at.get(int(record["value"]))
        if t_change is not None and arrived >= t_change:
            latencies.append((arrived - t_change) * 1000)
    delivered = len(arrivals)
    result = {
        "benchmark": "ingest",
        "devices": args.devices,
        "registers_per_device": args.registers,
        "poll_ms": args.poll_ms,
        "change_ms": args.change_ms,
        "window_s": round(t1 - t0, 2),
        "points_delivered": delivered,
        "points_per_s": round(delivered / (t1 - t0), 1),
        "offered_changes_per_s": round(total_points * 1000 / args.change_ms, 1),
        "cpu_s_per_1000_points": round((cpu1 - cpu0) / max(delivered, 1) * 1000, 4),
        "gateway_cpu_percent": round((cpu1 - cpu0) / (t1 - t0) * 100, 1),
        "latency_ms_p50": round(statistics.median(latencies), 1) if latencies else None,
        "latency_ms_p99": round(statistics.quantiles(latencies, n=100)[98], 1) if len(latencies) > 100 else None,
        "peak_rss_mb": round(peak_rss, 1),
        "records_before_window": arrivals_before,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}",
    }
    print(json.dumps(result, indent=2))
    collector.close()
    for server in servers:
        server.stop()
    broker.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
