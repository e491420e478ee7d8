"""Outage benchmark: how fast the real daemon recovers when the county's broker comes back.

N simulated Modbus TCP devices x M registers (every value changes every ``--change-ms``, polled every
``--poll-ms``, zero deadband: 2 000 points/s with the defaults) → gateway → mosquitto → the platform. After a
warm-up the broker is stopped for ``--outage`` seconds and started again on the same port. Prints JSON:

- ``flowing_after_s``: broker back → the first record reaches the platform;
- ``live_after_s``: broker back → the first record polled after the return reaches the platform;
- ``drained_after_reconnect_s``: first arrival after the return → every record taken during the outage (and
  in the 2 s after the return) has arrived (seqs are gap-free: checked seq by seq); ``missing`` if some never did;
- ``live_p50_ms`` / ``live_p99_ms``: poll → platform latency of records polled after the link was back
  (first arrival), while the backlog drained;
- ``duplicates``: records that arrived more than once (same seq; ``conflicting`` if the content differs).

    .venv/bin/python bench/outage.py --outage 20
    .venv/bin/python bench/outage.py --outage 600 --timeout 1800

``--root`` runs the gateway (and the simulator) of another checkout, for a before/after in one session.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ingest import site_arguments, site_yaml  # noqa: E402
from bench.pyspy_summary import summarise_stacks  # noqa: E402
from sim.broker import Broker  # noqa: E402
from sim.gateway_process import GatewayProcess  # noqa: E402
from sim.modbus import SimServer, SimUnit  # noqa: E402
from sim.platform import Message, Platform  # noqa: E402
from sim.support import free_port, wait_for  # noqa: E402


class Arrivals:
    """Per seq: first arrival time and the record's source time (only what the figures need, for 1 M+ records)."""

    def __init__(self, cheap_digest: bool = False) -> None:
        self.cheap_digest = cheap_digest
        self.lock = threading.Lock()
        self.first: dict[int, float] = {}
        self.ts: dict[int, float] = {}
        self.body: dict[int, int] = {}
        self.order: list[tuple[int, float]] = []  # (seq, source time) in order of first arrival
        self.duplicates = 0
        self.conflicting = 0

    def on_message(self, message: Message) -> None:
        if not isinstance(message.body, dict):
            return
        with self.lock:
            for record in message.body.get("records", []):
                seq = record.get("seq")
                if not isinstance(seq, int):
                    continue
                digest = _digest(record) if self.cheap_digest else hash(json.dumps(record, sort_keys=True))
                if seq in self.first:
                    self.duplicates += 1
                    self.conflicting += self.body[seq] != digest
                    continue
                self.first[seq] = message.arrived
                self.ts[seq] = float(record.get("ts", 0.0))
                self.body[seq] = digest
                self.order.append((seq, self.ts[seq]))

    def view(self) -> tuple[dict[int, float], dict[int, float]]:
        with self.lock:
            return dict(self.first), dict(self.ts)

    def arrived_since(self, k: int) -> list[tuple[int, float]]:
        """(seq, source time) of the records first arrived after the ``k`` first ones."""
        with self.lock:
            return self.order[k:]

    def has(self, seq: int) -> bool:
        with self.lock:
            return seq in self.first


def _digest(record: dict[str, Any]) -> int:
    """What the record holds, for telling duplicates apart, a few times cheaper than sorted JSON."""
    try:
        return hash(frozenset(record.items()))
    except TypeError:  # a nested value (attrs)
        return hash(json.dumps(record, sort_keys=True))


def main() -> int:
    parser = site_arguments()
    parser.add_argument("--outage", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--timeout", type=float, default=300.0, help="longest wait for the drain after the return")
    parser.add_argument("--label", default="")
    parser.add_argument("--cheap-digest", action="store_true",
                        help="the collector compares duplicates by a hash of the record's items, not sorted JSON "
                             "(a faster platform: does its speed limit the figures?)")
    parser.add_argument("--py-spy", type=Path, default=None,
                        help="sample the gateway with py-spy from the return to the drained backlog: collapsed "
                             "stacks to this file, a summary beside it (.txt)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="fg-outage-"))
    # No cap on what the broker queues for the platform: with the default 1 000 messages mosquitto drops QoS 1
    # messages for a subscriber that falls behind ("Outgoing messages are being dropped"), and this Python
    # collector, sharing two cores with the gateway, can fall behind a drain of ~90 000 records/s.
    broker = Broker(tmp / "broker", extra_conf="max_queued_messages 0\n").start()
    arrivals = Arrivals(args.cheap_digest)
    collector = Platform(broker.port, keep=False, on_message=arrivals.on_message)
    units = [SimUnit(1) for _ in range(args.devices)]
    servers = [SimServer([u], port=free_port()).start() for u in units]
    config = site_yaml(tmp, [s.port for s in servers], args.registers, args.poll_ms, broker.port, "fieldgate")
    stop = threading.Event()

    def change_values() -> None:
        k = 0
        while not stop.is_set():
            k = (k + 1) % 65536
            for unit in units:
                unit.set_registers("holding", 0, [k] * args.registers)
            time.sleep(args.change_ms / 1000)

    changer = threading.Thread(target=change_values, daemon=True)
    changer.start()
    gateway = GatewayProcess(config, tmp / "gateway.log").start()
    try:
        wait_for(lambda: len(arrivals.view()[0]) > args.devices * args.registers, 60, "first values")
        time.sleep(args.warmup)
        t_down = time.time()
        broker.stop()
        time.sleep(args.outage)
        broker.start()
        t_up = time.time()
        spy = None
        if args.py_spy is not None:
            assert gateway.proc is not None
            spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid",
                                    str(gateway.proc.pid), "--format", "raw", "--threads", "--nonblocking", "--rate",
                                    "100", "--output", str(args.py_spy)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        result = measure(arrivals, t_down, t_up, args.timeout)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
            args.py_spy.with_suffix(".txt").write_text(summarise_stacks(
                args.py_spy.read_text(), f"gateway during the drain of a {args.outage:.0f} s outage, py-spy"))
    finally:
        stop.set()
        gateway.stop()
        collector.close()
        for server in servers:
            server.stop()
        broker.stop()
    result.update({
        "benchmark": "outage", "label": args.label, "root": str(ROOT), "outage_s": args.outage,
        "offered_points_per_s": round(args.devices * args.registers * 1000 / args.poll_ms, 1),
        "duplicates": arrivals.duplicates, "conflicting": arrivals.conflicting,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}",
    })
    print(json.dumps(result, indent=2))
    return 0


def measure(arrivals: Arrivals, t_down: float, t_up: float, timeout: float) -> dict[str, Any]:
    """Wait for the outage's records to arrive (or ``timeout``), then the figures."""
    before_return = len(arrivals.arrived_since(0))  # nothing arrives while the broker is down
    wait_for(lambda: any(arrivals.first[seq] >= t_up for seq, _ in arrivals.arrived_since(before_return)), timeout,
             "the first record after the return")
    # Each poll looks at what arrived since the last one (the figures' first version copied and scanned every
    # arrival twice a second: with 1.2 M records that took the bench process most of a core and held the
    # collector's lock, delaying the arrivals it timed).
    deadline = time.time() + timeout
    lo = hi = 0
    seen, during_lo, after_lo, done_upto = 0, None, None, None
    while time.time() < deadline:
        fresh = arrivals.arrived_since(seen)
        seen += len(fresh)
        for seq, t in fresh:
            if t_down <= t <= t_up and (during_lo is None or seq < during_lo):
                during_lo = seq
            elif t > t_up + 2 and (after_lo is None or seq < after_lo):
                after_lo = seq
        if during_lo is not None and after_lo is not None:
            # Seqs are gap-free: everything from the outage's first record to the first record polled well
            # after the return must arrive (the backlog arrives oldest first, so max(during) would lie).
            if (lo, hi) != (during_lo, after_lo - 1):
                lo, hi = during_lo, after_lo - 1
                done_upto = lo  # every seq below it (from lo) has arrived
            assert done_upto is not None
            while done_upto <= hi and arrivals.has(done_upto):
                done_upto += 1
            if done_upto > hi:
                break
        time.sleep(0.5)
    first, ts = arrivals.view()
    t_flow = min(t for t in first.values() if t >= t_up)
    outage_seqs = range(lo, hi + 1)
    missing = [seq for seq in outage_seqs if seq not in first]
    drained = max((first[seq] for seq in outage_seqs if seq in first), default=t_flow)
    # Live: polled once the link was back (what was polled before that is backlog to the gateway too).
    live = [(first[seq] - t) * 1000 for seq, t in ts.items() if t > t_flow and first[seq] <= max(drained, t_flow + 1)]
    live_first = min((first[seq] for seq, t in ts.items() if t > t_up), default=float("nan"))
    return {
        "flowing_after_s": round(t_flow - t_up, 2),
        "live_after_s": round(live_first - t_up, 2),
        "outage_records": len(outage_seqs),
        "missing": len(missing),
        "drained_after_reconnect_s": None if missing else round(drained - t_flow, 2),
        "drained_after_return_s": None if missing else round(drained - t_up, 2),
        "live_records_during_drain": len(live),
        "live_p50_ms": round(statistics.median(live), 1) if live else None,
        "live_p99_ms": round(statistics.quantiles(live, n=100)[98], 1) if len(live) > 100 else None,
    }


if __name__ == "__main__":
    raise SystemExit(main())
