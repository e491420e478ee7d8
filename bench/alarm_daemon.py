"""Alarm latency through the real daemon with the uplink cut: from the moment a simulated gauge's value
crosses its rule's threshold to the siren coil reading ON at the (simulated) relay board.

Includes the sampling delay (up to one poll interval, 100 ms here), the rule, the interlock, the
fsync'd audit record and the Modbus coil write with read-back. One fresh gateway per run.
Prints JSON; run: .venv/bin/python bench/alarm_daemon.py --runs 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.config import load_site  # noqa: E402
from sim.broker import Broker  # noqa: E402
from sim.gateway_process import GatewayProcess  # noqa: E402
from sim.modbus import SimServer, SimUnit  # noqa: E402
from sim.sites import SIREN_COIL, safety_site  # noqa: E402
from sim.support import free_port, wait_for  # noqa: E402


def one_run() -> float:
    tmp = Path(tempfile.mkdtemp(prefix="fg-alarm-"))
    broker = Broker(tmp / "broker")  # never started: the uplink is cut for the whole run
    gauge_port, board_port = free_port(), free_port()
    config = safety_site(tmp, gauge_port, board_port, broker.port)
    text = config.read_text().replace("persistence: {n: 2, m: 3}, ", "").replace("poll_interval: 200ms",
                                                                                 "poll_interval: 100ms")
    config.write_text(text)
    level = load_site(config).buses[0].devices[0].points[0]
    gauge, board = SimUnit(1), SimUnit(1)
    gauge.set_point(level, 149.0)
    gauges = SimServer([gauge], port=gauge_port).start()
    relay = SimServer([board], port=board_port).start()
    gateway = GatewayProcess(config, tmp / "gateway.log").start()
    try:
        wait_for(lambda: gauge.requests > 5, 30, "polling")
        crossed = time.monotonic()
        gauge.set_point(level, 152.6)
        while not board.coil(SIREN_COIL):
            if time.monotonic() - crossed > 20:
                raise RuntimeError(f"siren never switched; log:\n{gateway.log()}")
            time.sleep(0.0005)
        return (time.monotonic() - crossed) * 1000
    finally:
        gateway.stop()
        gauges.stop()
        relay.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    samples = sorted(one_run() for _ in range(args.runs))
    print(json.dumps({
        "benchmark": "alarm_daemon", "runs": args.runs, "poll_interval_ms": 100, "uplink": "cut",
        "p50_ms": round(statistics.median(samples), 1),
        "p99_ms": round(samples[min(len(samples) - 1, int(0.99 * len(samples)))], 1),
        "max_ms": round(samples[-1], 1), "min_ms": round(samples[0], 1),
    }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
