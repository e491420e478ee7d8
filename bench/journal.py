"""Journal soak and benchmarks (docs/durability.md). Prints one JSON object.

* append: durable append rate (group commit of --batch records, and one-record append_now
  like an alarm) vs a raw SQLite WAL insert loop (synchronous=FULL) on the same disk;
* drain: a --backlog record journal drained through the real link runner and MQTT link into
  mosquitto, vs a bare paho publisher (QoS 1, same records per message, same in-flight window), both
  timed until the subscriber has every record. Records against records; the bare publisher sends one
  pre-encoded payload again and again (no journal, no per-record work at all);
* alarm latency p50/p99 (append_now to arrival at a subscriber) while that backlog drains;
* rss: a --million record outage built through the journal and drained by the real gateway
  process: RSS sampled while building and while draining;
* kills: the HIL kill -9 loop with --kills kills (pytest, FIELDGATE_KILLS).

    .venv/bin/python bench/journal.py --backlog 200000 --million 1000000 --kills 200
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import signal
import sqlite3
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

from paho.mqtt import client as paho  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402

from drivers.mqtt.config import MqttLinkConfig  # noqa: E402
from gateway.contracts import LinkWiring  # noqa: E402
from gateway.journal import (  # noqa: E402
    AsyncJournal,
    Journal,
    JournalSettings,
)
from gateway.links import LinkRunner  # noqa: E402
from gateway.profiles import get_profile  # noqa: E402
from gateway.registry import build_link  # noqa: E402
from gateway.shared import NullProgress, Quality, Reading, RecordClass  # noqa: E402
from sim.broker import Broker  # noqa: E402
from sim.platform import Message, Platform  # noqa: E402
from sim.support import wait_for  # noqa: E402

ALL = set(RecordClass)
SETTINGS = JournalSettings(reserve_bytes=0, max_bytes="4GiB", min_free_bytes=0)


def reading(i: int) -> Reading:
    return Reading(f"site.p{i % 50}", float(i), Quality.GOOD, 1_800_000_000 + i * 0.01, "m")


def bench_append(tmp: Path, n: int, batch: int) -> dict[str, Any]:
    """Durable group commits of ``batch`` readings, and one-record commits (alarms), each against a raw SQLite
    WAL loop doing the same commits with a pre-encoded body. The two take turns, a slice at a time
    (ABAB): on a disk shared with other jobs the fsync time drifts by several times within a minute, and
    one long run of each measured the drift rather than the journal."""
    j = Journal(tmp / "append.sqlite", {"mqtt": ALL}, SETTINGS)
    raw = sqlite3.connect(tmp / "raw.sqlite", isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=FULL")
    raw.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, body TEXT)")
    body = json.dumps(reading(1).to_json())
    # The readings exist before the clock starts, as the raw loop's body does: making them is the bus
    # scheduler's work; encoding and storing them is the journal's.
    batches = [[(RecordClass.TELEMETRY, reading(i)) for i in range(base, min(base + batch, n))]
               for base in range(0, n, batch)]
    timed = {"journal": 0.0, "raw": 0.0, "journal_single": 0.0, "raw_single": 0.0}
    slices, singles = 10, 300
    per_slice = max(1, len(batches) // slices)
    for k in range(slices):
        t0 = time.perf_counter()
        for items in batches[k * per_slice:(k + 1) * per_slice]:
            j.append(items)
        timed["journal"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        for items in batches[k * per_slice:(k + 1) * per_slice]:
            raw.execute("BEGIN")
            raw.executemany("INSERT INTO t (body) VALUES (?)", [(body,)] * len(items))
            raw.execute("COMMIT")
        timed["raw"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(singles // slices):
            j.append([(RecordClass.ALARM, reading(i))])
        timed["journal_single"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(singles // slices):
            raw.execute("INSERT INTO t (body) VALUES (?)", (body,))
        timed["raw_single"] += time.perf_counter() - t0
    j.close()
    raw.close()
    records = per_slice * slices * batch
    grouped, raw_grouped = records / timed["journal"], records / timed["raw"]
    single, raw_single = singles / timed["journal_single"], singles / timed["raw_single"]
    return {"records": records, "batch": batch,
            "journal_records_per_s": round(grouped), "raw_wal_records_per_s": round(raw_grouped),
            "journal_vs_raw": round(grouped / raw_grouped, 2),
            "append_now_commits_per_s": round(single), "raw_single_commits_per_s": round(raw_single),
            "append_now_vs_raw": round(single / raw_single, 2), "append_now_ms": round(1000 / single, 2)}


def _write_bytes() -> int:
    with open("/proc/self/io") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("write_bytes:"))


def bench_writes(tmp: Path, per_commit: int, commits: int, compress: bool) -> dict[str, Any]:
    """Bytes this process writes to disk per reading (/proc/self/io ``write_bytes``: WAL, checkpoints,
    the database file): ``commits`` group commits of ``per_commit`` telemetry readings, each acknowledged
    one commit later (a link keeping up), then one alarm after another, each committed on its own and
    acknowledged. The checkpoint at close is included."""
    path = tmp / f"writes-{per_commit}-{int(compress)}.sqlite"
    j = Journal(path, {"mqtt": ALL}, SETTINGS.model_copy(update={"compress": compress}))
    before, previous = _write_bytes(), []
    for c in range(commits):
        seqs = j.append([(RecordClass.TELEMETRY, reading(c * per_commit + i)) for i in range(per_commit)])
        if previous:
            j.ack("mqtt", previous)
        previous = seqs
    j.ack("mqtt", previous)
    j.store.checkpoint()
    telemetry = (_write_bytes() - before) / (per_commit * commits)
    before, alarms = _write_bytes(), 100
    for i in range(alarms):
        j.ack("mqtt", j.append([(RecordClass.ALARM, reading(i))]))
    j.store.checkpoint()
    alarm = (_write_bytes() - before) / alarms
    j.close()
    return {"per_commit": per_commit, "compress": compress, "bytes_per_reading": round(telemetry, 1),
            "bytes_per_alarm": round(alarm)}


class Subscriber:
    """The platform counting records and timing alarms; it keeps no message (a big drain)."""

    def __init__(self, port: int) -> None:
        self.records = 0
        self.alarm_latency: list[float] = []
        self.platform = Platform(port, "#", keep=False, on_message=self._count)

    def _count(self, message: Message) -> None:
        records = message.body.get("records", []) if isinstance(message.body, dict) else []
        self.records += len(records)
        if message.topic.endswith("/alarm"):
            self.alarm_latency += [(message.arrived - r["attrs"]["t"]) * 1000 for r in records
                                   if "t" in r.get("attrs", {})]

    def close(self) -> None:
        self.platform.close()


def _subscribe(port: int, ready: Any, count: Any, out: Any, stop: Any) -> None:
    sub = Subscriber(port)
    ready.set()
    while not stop.wait(0.002):
        count.value = sub.records
    count.value = sub.records
    out.put(sorted(sub.alarm_latency))
    sub.close()


class RemoteSubscriber:
    """The platform in a process of its own: its JSON parsing of every message does not compete for this
    process's GIL with the side being measured (before issue 18's second pass it ran in a thread here, and
    every hop between the event loop and the journal thread waited for it)."""

    def __init__(self, port: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._count = ctx.Value("q", 0, lock=False)
        self._stop, ready, self._out = ctx.Event(), ctx.Event(), ctx.Queue()
        self._proc = ctx.Process(target=_subscribe, args=(port, ready, self._count, self._out, self._stop),
                                 daemon=True)
        self._proc.start()
        if not ready.wait(60):
            raise RuntimeError("the subscriber process did not start")

    @property
    def records(self) -> int:
        return int(self._count.value)

    def close(self) -> list[float]:
        """Stop it; the alarm latencies it measured, sorted."""
        self._stop.set()
        latencies: list[float] = self._out.get(timeout=60)
        self._proc.join(10)
        return latencies


def _py_spy(out: Path, gil: bool) -> subprocess.Popen[bytes]:
    """py-spy sampling this process (all threads) until it is sent SIGINT; collapsed stacks to ``out``."""
    command = [str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(os.getpid()), "--format", "raw",
               "--threads", "--nonblocking", "--rate", "250", "--output", str(out)] + (["--gil"] if gil else [])
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # attached before the clock starts
    return proc


def bench_drain(tmp: Path, broker: Broker, n: int, batch: int, inflight: int,
                py_spy: Path | None = None, gil: bool = False) -> dict[str, Any]:
    """``py_spy``: the drain (only) sampled by py-spy, its collapsed stacks written there."""
    j = Journal(tmp / "drain.sqlite", {"mqtt": ALL}, SETTINGS)
    for base in range(0, n, 5000):
        j.append([(RecordClass.TELEMETRY, reading(i)) for i in range(base, min(base + 5000, n))])
    sub = RemoteSubscriber(broker.port)

    async def run() -> float:
        aj = AsyncJournal(j, queue_size=1000, commit_window=0.2)
        cfg = MqttLinkConfig(type="mqtt", name="mqtt", host="127.0.0.1", port=broker.port,
                             max_inflight=inflight, batch_records=batch, reconnect_min=0.2)
        profile = get_profile("fieldgate", "bench", cfg)
        link = build_link(cfg, LinkWiring("bench", profile))
        runner = LinkRunner(link, aj, profile, batch=batch, max_inflight=inflight, replay_rate=None)
        tasks = [asyncio.create_task(aj.run(NullProgress())), asyncio.create_task(link.run(NullProgress()))]
        for _ in range(400):
            if link.connected:
                break
            await asyncio.sleep(0.05)
        spy = _py_spy(py_spy, gil) if py_spy is not None else None
        # The runner starts with the clock, the link already up, as the bare publisher does (before the fifth
        # pass it ran from the start: it found the link up at its next 0.2 s poll, up to 0.15 s after t0).
        t0 = time.time()
        tasks.append(asyncio.create_task(runner.run(NullProgress())))
        alarms, next_alarm = 0, t0
        while sub.records < n:
            await asyncio.sleep(0.005)  # the end is seen within 5 ms, as in bench_bare_paho
            if sub.records < n * 0.9 and time.time() >= next_alarm:  # alarms while the backlog is still deep
                next_alarm = time.time() + 0.05
                await aj.append_now(RecordClass.ALARM, Reading("alarm", 1.0, Quality.GOOD, time.time(),
                                                               attrs={"t": time.time()}))
                alarms += 1
        elapsed = time.time() - t0
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await aj.close()
        return elapsed

    elapsed = asyncio.run(run())
    lat = sub.close()
    return {"records": n, "batch": batch, "max_inflight": inflight,
            "drain_records_per_s": round(n / elapsed), "alarms": len(lat),
            "alarm_latency_ms_p50": round(statistics.median(lat), 1) if lat else None,
            "alarm_latency_ms_p99": round(lat[int(len(lat) * 0.99) - 1], 1) if lat else None,
            "alarm_latency_ms_max": round(lat[-1], 1) if lat else None}


def bench_bare_paho(broker: Broker, n: int, batch: int, inflight: int) -> dict[str, Any]:
    """The broker's ingest limit for this message size: a bare QoS 1 publisher, same in-flight window.

    Deliberately bare paho (no sim.platform): it is the baseline the link's drain rate is measured against."""
    sub = RemoteSubscriber(broker.port)
    payload = json.dumps({"v": 1, "gw": "bench", "records": [
        {**reading(i).to_json(), "seq": i} for i in range(batch)]}).encode()
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-pub", protocol=paho.MQTTv5)
    client.max_inflight_messages_set(inflight)
    done = threading.Semaphore(inflight)
    client.on_publish = lambda *_: done.release()
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    wait_for(client.is_connected, 10, "publisher")
    messages = n // batch
    t0 = time.time()
    for _ in range(messages):
        done.acquire()
        client.publish("fieldgate/v1/bench/telemetry", payload, qos=1)
    for _ in range(inflight):
        done.acquire()
    acked = time.time() - t0
    # Timed like the drain: until the subscriber has every record (before issue 18's second pass this
    # stopped at the last PUBACK, and the drain was timed to the subscriber: not the same distance).
    while sub.records < messages * batch and time.time() - t0 < 120:
        time.sleep(0.005)
    elapsed = time.time() - t0
    client.loop_stop()
    client.disconnect()
    sub.close()
    return {"records": messages * batch, "paho_records_per_s": round(messages * batch / elapsed),
            "paho_acked_records_per_s": round(messages * batch / acked)}


def bench_million(total: int) -> dict[str, Any]:
    env = dict(os.environ, FIELDGATE_BACKLOG=str(total))
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-s",
                           "tests/hil/test_durability.py", "-k", "million", "--basetemp", tempfile.mkdtemp()],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    return {"records": total, "passed": proc.returncode == 0, "seconds": round(time.time() - t0, 1),
            "rss": _last_json(proc.stdout), "tail": proc.stdout[-400:] if proc.returncode else ""}


def bench_kills(kills: int) -> dict[str, Any]:
    env = dict(os.environ, FIELDGATE_KILLS=str(kills))
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                           "tests/hil/test_durability.py", "-k", "kill", "--basetemp", tempfile.mkdtemp()],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    return {"kills": kills + 3, "passed": proc.returncode == 0, "seconds": round(time.time() - t0, 1),
            "tail": proc.stdout[-400:] if proc.returncode else ""}


def _last_json(text: str) -> Any:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--append", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=200, help="records per group commit")
    parser.add_argument("--backlog", type=int, default=200_000)
    parser.add_argument("--link-batch", type=int, default=500)
    parser.add_argument("--inflight", type=int, default=16)
    parser.add_argument("--writes", type=int, default=1, help="0 skips the bytes-written figures")
    parser.add_argument("--million", type=int, default=1_000_000, help="0 skips")
    parser.add_argument("--kills", type=int, default=200, help="0 skips")
    parser.add_argument("--py-spy", type=Path, default=None,
                        help="sample the drain with py-spy: collapsed stacks to this file, summary to <file>.txt")
    parser.add_argument("--gil", action="store_true", help="with --py-spy: only samples holding the GIL")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="fg-journal-bench-"))
    result: dict[str, Any] = {"benchmark": "journal", "machine": f"{platform.machine()}, {os.cpu_count()} CPU, "
                              f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}",
                              "disk": str(tmp)}
    result["append"] = bench_append(tmp, args.append, args.batch)
    if args.writes:
        result["writes"] = [bench_writes(tmp, per_commit, max(20, 20_000 // per_commit), compress)
                            for per_commit in (10, 50, 170, 400, 2000) for compress in (False, True)
                            if compress is False or "compress" in JournalSettings.model_fields]
    broker = Broker(tmp / "broker", extra_conf="max_queued_messages 0\n").start()
    try:
        result["drain"] = bench_drain(tmp, broker, args.backlog, args.link_batch, args.inflight, args.py_spy,
                                      args.gil)
        result["bare_paho"] = bench_bare_paho(broker, args.backlog, args.link_batch, args.inflight)
        result["drain"]["vs_bare_paho"] = round(
            result["drain"]["drain_records_per_s"] / result["bare_paho"]["paho_records_per_s"], 2)
    finally:
        broker.stop()
    if args.py_spy is not None and args.py_spy.exists():
        from bench.pyspy_summary import summarise_stacks
        title = f"drain of {args.backlog} records, py-spy{' --gil' if args.gil else ''}"
        args.py_spy.with_suffix(".txt").write_text(summarise_stacks(args.py_spy.read_text(), title))
    if args.million:
        result["million"] = bench_million(args.million)
    if args.kills:
        result["kills"] = bench_kills(args.kills)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
