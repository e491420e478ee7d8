"""Failover time: from cutting the primary (stopping mosquitto) to the first alarm accepted by the
BeiDou module (our emulator on a socat pty pair), through the real gateway process.

The alarm is raised right after the cut, so the figure is failover_after + detection + the send path.
Prints JSON; run: .venv/bin/python bench/failover.py --runs 5 --failover-after 2
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
from sim.beidou import BeidouEmulator  # noqa: E402
from sim.broker import Broker  # noqa: E402
from sim.gateway_process import GatewayProcess  # noqa: E402
from sim.modbus import SimServer, SimUnit  # noqa: E402
from sim.platform import Platform  # noqa: E402
from sim.serial_pty import socat_pair  # noqa: E402
from sim.sites import ack_key_file, failover_site  # noqa: E402
from sim.support import free_port, wait_for  # noqa: E402


def one_run(failover_after: float) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="fg-failover-"))
    broker = Broker(tmp / "broker").start()
    collector = Platform(broker.port)
    gauge_port = free_port()
    try:
        with socat_pair() as (gateway_end, modem_end), BeidouEmulator(modem_end, interval_s=3) as bd:
            config = failover_site(tmp, gauge_port, broker.port, gateway_end, ack_key_file(tmp)[0])
            config.write_text(config.read_text().replace("failover_after: 2s", f"failover_after: {failover_after}s"))
            level = load_site(config).buses[0].devices[0].points[0]
            gauge = SimUnit(1)
            gauge.set_point(level, 149.0)
            server = SimServer([gauge], port=gauge_port).start()
            gateway = GatewayProcess(config, tmp / "gateway.log").start()
            try:
                wait_for(lambda: bool(collector.values("dam.level")), 30, "first reading")
                cut = time.monotonic()
                broker.stop()
                gauge.set_point(level, 152.5)
                wait_for(lambda: bool(bd.sent), 60, "an alarm by satellite")
                sent = bd.sent[0]
                return {"cut_to_satellite_s": sent.at - cut, "bytes": float(len(sent.payload))}
            finally:
                gateway.stop()
                server.stop()
    finally:
        collector.close()
        broker.stop()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--failover-after", type=float, default=2.0)
    args = parser.parse_args()
    runs = [one_run(args.failover_after) for _ in range(args.runs)]
    times = [r["cut_to_satellite_s"] for r in runs]
    print(json.dumps({
        "benchmark": "failover", "runs": args.runs, "failover_after_s": args.failover_after,
        "cut_to_first_satellite_alarm_s": {"min": round(min(times), 2), "median": round(statistics.median(times), 2),
                                           "max": round(max(times), 2)},
        "alarm_message_bytes": runs[0]["bytes"],
    }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
