"""Where the journal's time goes (issue 18): cProfile of append and of pending-read + ack, and a wall-clock
sample of every thread during a drain through the real LinkRunner and MQTT link (py-spy is not installed
on the bench machine; this samples ``sys._current_frames`` every 2 ms). Text summaries: bench/profiles/.

    .venv/bin/python bench/profile_journal.py [--root <an export of another commit>] > bench/profiles/x.txt
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import io
import pstats
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

RECORDS = 40_000
ALL_FRAMES = ("threading.py", "thread.py:_worker", "_bootstrap", "runners.py", "run_forever", "run_until",
              "profile_journal.py", "client.py:_loop", "loop_forever", "_thread_main")


class Sampler:
    """Counts, every ``interval``, the function each thread is in (innermost) and every function on its stack."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.stop = threading.Event()
        self.inclusive: collections.Counter[tuple[str, str]] = collections.Counter()
        self.innermost: collections.Counter[tuple[str, str]] = collections.Counter()
        self.samples = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = threading.get_ident()
        while not self.stop.wait(self.interval):
            names = {t.ident: t.name.split("-")[0].split("_")[0] for t in threading.enumerate()}
            for ident, frame in sys._current_frames().items():
                if ident == me:
                    continue
                thread = names.get(ident, "?")
                stack: list[str] = []
                f: Any = frame
                while f is not None:
                    stack.append(f"{f.f_code.co_filename.rsplit('/', 1)[-1]}:{f.f_code.co_name}")
                    f = f.f_back
                self.innermost[(thread, stack[0])] += 1
                for name in set(stack):
                    self.inclusive[(thread, name)] += 1
            self.samples += 1

    def __enter__(self) -> Sampler:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()

    def report(self, top: int = 22) -> str:
        out = [f"samples: {self.samples} (every {self.interval * 1000:.0f} ms, all threads)",
               "-- inclusive: share of samples with the function on the thread's stack"]
        shown = [(k, c) for k, c in self.inclusive.most_common() if not any(s in k[1] for s in ALL_FRAMES)]
        out += [f"{100 * c / self.samples:5.1f}%  {t:10s} {fn}" for (t, fn), c in shown[:top]]
        out.append("-- innermost: share of samples in the function itself (selectors.py:select = the loop idle)")
        out += [f"{100 * c / self.samples:5.1f}%  {t:10s} {fn}" for (t, fn), c in self.innermost.most_common(top)
                if not any(s in fn for s in ALL_FRAMES)]
        return "\n".join(out)


def profiled(name: str, fn: Any) -> str:
    pr = cProfile.Profile()
    t0 = time.perf_counter()
    pr.enable()
    fn()
    pr.disable()
    elapsed = time.perf_counter() - t0
    text = io.StringIO()
    pstats.Stats(pr, stream=text).sort_stats("cumulative").print_stats(16)
    lines = [line for line in text.getvalue().splitlines() if line.strip()]
    head = f"===== {name}: {RECORDS} records in {elapsed:.2f} s ({RECORDS / elapsed:.0f} rec/s) ====="
    return head + "\n" + "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--backlog", type=int, default=200_000)
    args = parser.parse_args()
    sys.path[:0] = [str(args.root), str(args.root / "bench")]
    import journal as bench  # bench/journal.py of --root

    from gateway.journal import Journal, JournalSettings
    from gateway.links import REPLAYABLE, URGENT, collect
    from gateway.shared import RecordClass
    from sim.broker import Broker

    tmp = Path(tempfile.mkdtemp(prefix="fg-journal-profile-"))
    j = Journal(tmp / "j.sqlite", {"mqtt": set(RecordClass)},
                JournalSettings(reserve_bytes=0, max_bytes="4GiB", min_free_bytes=0))

    def append() -> None:
        for base in range(0, RECORDS, 200):
            j.append([(RecordClass.TELEMETRY, bench.reading(i)) for i in range(base, base + 200)])

    def read_ack() -> None:  # what a link runner does: pulls of 500 (runs of batches), one ack per message of 50
        replay = dict.fromkeys(REPLAYABLE, 0)
        while (pull := collect(j, "mqtt", 500, 0, dict.fromkeys(URGENT, 0), dict.fromkeys(REPLAYABLE, 0),
                               dict(replay), 500)).count:
            for message in pull.messages(50):
                for run in message:
                    replay[run.cls] = max(replay[run.cls], run.last)
                j.ack("mqtt", [seq for run in message for seq in run.seqs])

    print(f"root: {args.root}")
    print(profiled("append (group commit of 200)", append))
    print(profiled("pending-read + ack", read_ack))
    j.close()

    broker = Broker(tmp / "broker", extra_conf="max_queued_messages 0\n").start()
    real_run, sampled = asyncio.run, []

    def sampled_run(coro: Any) -> Any:
        with Sampler() as sampler:
            out = real_run(coro)
        sampled.append(sampler)
        return out

    bench.asyncio.run = sampled_run  # only the drain itself is sampled, not building the backlog
    try:
        drain = bench.bench_drain(tmp, broker, args.backlog, 500, 16)
        bare = bench.bench_bare_paho(broker, args.backlog, 500, 16)
    finally:
        broker.stop()
    print(f"===== drain of {args.backlog} records: {drain['drain_records_per_s']} rec/s; bare paho "
          f"{bare['paho_records_per_s']} rec/s; ratio {drain['drain_records_per_s'] / bare['paho_records_per_s']:.2f}")
    print(sampled[0].report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
