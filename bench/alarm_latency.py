"""Latency from a gauge reading crossing its threshold to the siren coil being written (and read back).

Path measured: RuleEngine.evaluate -> BroadcastSubsystem.on_alarm -> interlock -> audit (fsync)
-> siren prepare (read) -> activate (write coil + read back). The relay board is the simulated
pymodbus TCP board in-process; no uplink exists at all (the "uplink cut" case). Prints JSON.

    .venv/bin/python bench/alarm_latency.py [--runs 200] [--audit-dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from drivers.broadcast.factory import build_outputs
from gateway.alerts.audit import AuditLog
from gateway.alerts.config import BroadcastConfig
from gateway.alerts.subsystem import BroadcastSubsystem
from gateway.rules.clock import RecordedClock
from gateway.rules.config import RulesConfig
from gateway.rules.engine import RuleEngine
from gateway.shared import Quality, Reading
from sim.relay_board import SimRelayBoard


async def run(runs: int, audit_dir: Path) -> dict[str, Any]:
    board = SimRelayBoard()
    await board.start()
    config = BroadcastConfig.model_validate({
        "outputs": {"siren": {"type": "modbus_relay_siren", "coil": 0,
                              "board": {"host": board.host, "port": board.port}}},
        "zones": {"dam": {"outputs": ["siren"]}},
        "clips": {"x": {"file": "/dev/null"}},
        "patterns": {"flood": {"steps": [[2, 1]], "repeat": 3}, "drill": {"steps": [[1, 2]], "repeat": 3}},
        "status_patterns": {"actual": "flood", "exercise": "drill"},
        "announce": {"exercise": "x", "test": "x"},
        "all_clear_clip": "x",
        "automatic": [{"rule": "hi", "zones": ["dam"], "event": "flood"}],
    })
    rules = RulesConfig.model_validate([{"type": "threshold", "id": "hi", "point": "lvl", "above": 10}])
    audit = AuditLog(audit_dir / "audit.log")
    outputs = build_outputs(config.outputs)
    # Each run is an hour apart on the subsystem's clocks (wall and monotonic: the rate limits age on both), so
    # per-zone rate limits never interfere.
    clock = RecordedClock(time.time())
    subsystem = BroadcastSubsystem(config, audit, outputs, clock=clock.wall, monotonic=clock.monotonic)
    samples: list[float] = []
    try:
        for i in range(runs):
            engine = RuleEngine(rules)  # fresh engine: each run is a first crossing
            engine.evaluate(Reading("lvl", 9.0, Quality.GOOD, 1000.0 + i))
            board.writes.clear()
            start = time.perf_counter()
            transitions = engine.evaluate(Reading("lvl", 10.5, Quality.GOOD, 1000.5 + i))
            results = await subsystem.on_alarm(transitions[0])
            elapsed = time.perf_counter() - start
            if not any(r.output == "siren" and r.action == "activate" and r.ok for r in results):
                raise SystemExit(f"run {i}: siren not confirmed: {results}")
            samples.append(elapsed * 1000)
            clock.advance(clock.now + 3600)
            await outputs["siren"].deactivate()
    finally:
        await subsystem.close()
        audit.close()
        await board.stop()
    samples.sort()
    return {
        "bench": "alarm_latency",
        "path": "gauge reading -> rule -> interlock -> audit fsync -> coil write + read-back",
        "board": "pymodbus 3.16 TCP simulator, in-process, loopback",
        "uplink": "none",
        "runs": runs,
        "p50_ms": round(statistics.median(samples), 2),
        "p99_ms": round(samples[min(len(samples) - 1, int(0.99 * len(samples)))], 2),
        "max_ms": round(samples[-1], 2),
        "audit_dir": str(audit_dir),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--audit-dir", type=Path, default=None, help="where the fsync'd audit goes (disk matters)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = asyncio.run(run(args.runs, args.audit_dir or Path(tmp)))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
