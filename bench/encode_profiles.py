"""Per-record cost of the payload profiles' ``encode`` on batches shaped like bench/ingest.py's.

One link pull of the ingest workload: 10 devices × 20 uint16 registers, each device's readings taken in
the same bus read (one ts), stored by the journal as text (``encode_body``), handed to ``encode`` as
``JournalRecord`` s that were never parsed. Prints µs per record and payload bytes per record for the
fieldgate and the thingsboard profile. ``ROOT`` runs another checkout (a *before* build, ``git archive``);
compare figures of one invocation pair on the same machine, not across sessions.

    .venv/bin/python bench/encode_profiles.py [--root ROOT] [--batches 300] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=str(Path(__file__).resolve().parents[1]))
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5, help="timed passes; the median is printed")
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--registers", type=int, default=20)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(args.root).resolve()))
    from gateway.journal import JournalRecord
    from gateway.journal.records import encode_body
    from gateway.payloads import FieldgateProfile
    from gateway.profiles import ThingsboardProfile
    from gateway.profiles.options import ThingsboardOptions
    from gateway.shared import Quality, Reading, RecordClass

    t0 = time.time()
    stored: list[tuple[int, float, str]] = []
    for d in range(args.devices):
        ts = round(t0 + d * 0.0037, 3)
        for r in range(args.registers):
            seq = len(stored) + 1
            stored.append((seq, ts, encode_body(Reading(f"d{d}.r{r}", 1000 + seq, Quality.GOOD, ts).to_json())))

    def batch() -> list[Any]:
        return [JournalRecord(seq, RecordClass.TELEMETRY, None, ts, text) for seq, ts, text in stored]

    profiles: dict[str, Any] = {"fieldgate": FieldgateProfile("bench"),
                                "thingsboard": ThingsboardProfile("bench", ThingsboardOptions())}
    for profile in profiles.values():
        profile.encode(batch())  # first contact: connects, units, routes
    for name, profile in profiles.items():
        passes = []
        for _ in range(args.repeat):
            batches = [batch() for _ in range(args.batches)]
            start = time.process_time()
            for records in batches:
                profile.encode(records)
            passes.append((time.process_time() - start) / (args.batches * len(stored)) * 1e6)
        payload = sum(len(m.payload) for m in profile.encode(batch())) / len(stored)
        print(f"{name}: {statistics.median(passes):.2f} µs per record (passes {min(passes):.2f}–{max(passes):.2f}), "
              f"{payload:.1f} payload bytes per record  [{args.root}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
