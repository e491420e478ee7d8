"""One ``fieldgate sl651-centre`` process under 1 000 simulated stations; prints JSON for bench/RESULTS.md.

Real parts: mosquitto (sim/broker.py), the receiver as its own process (its CPU and RSS read from /proc),
1 000 TCP stations in this process (sim/sl651.py), each sending 32H timed reports with four elements and
waiting for the confirmation, as an M2 RTU does. Scenarios:

* ``paced``: every station reports every ``--interval`` s (5 min compressed; 1 000 stations at 5 min is
  3.3 frames/s, far below any limit, so the compressed pace shows the same per-frame cost sooner);
* ``flat-out``: every station sends its next report as soon as the last was confirmed (the ceiling).

Baseline, same session: the codec alone (decode + observations + envelope of the same frames, one process,
no I/O): the receiver's figures are given as ratios against it.

    python -m bench.sl651_centre --stations 1000 --seconds 20 --interval 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from centre.sl651 import CentreConfig, envelope
from drivers.sl651.message import decode, observations
from sim.broker import Broker
from sim.platform import Platform
from sim.sl651 import StationClient, timed_report
from sim.support import free_port, listening, wait_for

TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def proc_rss_mb(pid: int) -> tuple[float, float]:
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


def frame(n: int, serial: int) -> bytes:
    station = bytes.fromhex(f"0033{n:06d}")
    rnd = random.Random(n * 65536 + serial)
    return timed_report(station, serial, datetime(2026, 5, 28, 8, 0) if serial == 0 else
                        datetime.fromtimestamp(1_780_000_200 + 300 * serial),
                        {0x3B: round(rnd.uniform(100, 160), 3), 0x26: round(rnd.uniform(0, 900), 1),
                         0x20: round(rnd.uniform(0, 30), 1), 0x38: round(rnd.uniform(11.5, 13.5), 2)})


def baseline(frames: list[bytes]) -> float:
    """Frames/s of the codec alone: what a receiver could do with no sockets and no broker."""
    config = CentreConfig()
    start = time.process_time()
    for data in frames:
        envelope(config, observations(decode(data)))
    return len(frames) / (time.process_time() - start)


async def stations(port: int, count: int, seconds: float, interval: float | None) -> dict[str, Any]:
    confirmed = 0
    latencies: list[float] = []
    stop = time.monotonic() + seconds

    async def one(n: int) -> None:
        nonlocal confirmed
        client = StationClient("127.0.0.1", port)
        for _ in range(100):
            try:
                await client.connect()
                break
            except OSError:
                await asyncio.sleep(0.1)
        serial = 1
        if interval:
            await asyncio.sleep(random.uniform(0, interval))
        while time.monotonic() < stop:
            sent = time.monotonic()
            answer = await client.report(frame(n, serial), wait=30)
            if answer:
                confirmed += 1
                latencies.append(time.monotonic() - sent)
            serial += 1
            if interval:
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - sent)))
        await client.close()

    started = time.monotonic()
    await asyncio.gather(*(one(n) for n in range(count)))
    latencies.sort()
    elapsed = time.monotonic() - started
    return {"confirmed": confirmed, "seconds": round(elapsed, 1), "frames_per_s": round(confirmed / elapsed, 1),
            "latency_p50_ms": round(1000 * latencies[len(latencies) // 2], 1) if latencies else None,
            "latency_p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 1) if latencies else None}


def scenario(name: str, broker_port: int, count: int, seconds: float, interval: float | None) -> dict[str, Any]:
    port = free_port()
    published = 0

    def on_message(_m: Any) -> None:
        nonlocal published
        published += 1

    platform = Platform(broker_port, "fieldgate/#", keep=False, on_message=on_message)
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "sl651-centre", "--listen", f"127.0.0.1:{port}",
                             "--broker", f"127.0.0.1:{broker_port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: listening(port), 20, "the receiver listening")
        time.sleep(1.0)
        idle_rss, _ = proc_rss_mb(proc.pid)
        cpu0 = proc_cpu(proc.pid)
        result = asyncio.run(stations(port, count, seconds, interval))
        cpu = proc_cpu(proc.pid) - cpu0
        rss, peak = proc_rss_mb(proc.pid)
        wait_for(lambda: published >= result["confirmed"], 30, "every confirmed report published")
    finally:
        proc.terminate()
        proc.wait(10)
        platform.close()
    result.update(scenario=name, stations=count, published=published,
                  cpu_ms_per_frame=round(1000 * cpu / max(1, result["confirmed"]), 3),
                  cpu_share=round(cpu / result["seconds"], 2), rss_idle_mb=round(idle_rss, 1),
                  rss_mb=round(rss, 1), rss_peak_mb=round(peak, 1))
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stations", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--interval", type=float, default=10.0, help="compressed 5-minute report period, s")
    args = parser.parse_args()
    frames = [frame(n, s) for n in range(200) for s in range(1, 11)]
    base = baseline(frames)
    with tempfile.TemporaryDirectory() as tmp:
        broker = Broker(Path(tmp) / "broker").start()
        try:
            runs = [scenario("paced", broker.port, args.stations, args.seconds, args.interval),
                    scenario("flat-out", broker.port, args.stations, args.seconds, None)]
        finally:
            broker.stop()
    for run in runs:
        run["vs_codec_alone"] = round(run["frames_per_s"] / base, 3)
    print(json.dumps({"codec_alone_frames_per_s": round(base), "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
