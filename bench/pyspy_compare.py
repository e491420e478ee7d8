"""Side by side: where several processes spend their CPU, from py-spy's collapsed stacks (``--format raw``).

For each file (one process of bench/ingest.py ``--py-spy``: ``DIR/<variant>.collapsed``), the share of the
process's samples per thread and per part of the data path, counted inclusively (a sample is counted for
a part when any frame of its stack belongs to it). Markdown table on stdout, one column per file.

    python bench/pyspy_compare.py DIR/bare.collapsed DIR/fieldgate.collapsed DIR/thingsboard.collapsed
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

ENCODE = r"^(Thingsboard|Fieldgate|FieldgateSession)Profile\.encode "
# (label, a frame of the part, a frame that excludes the sample from it)
PARTS: list[tuple[str, str, str | None]] = [
    ("payload profile `encode`", ENCODE, None),
    ("  of it: body JSON decode", r"^JSONDecoder\.raw_decode ", None),
    ("link runner, not counting `encode`", r"^LinkRunner\.", ENCODE),
    ("MQTT publish and PUBACKs (link, paho)",
     r"^(MqttLink\.|FieldgateClient\.|Client\.(publish|_send_publish|_packet_queue|loop_write|loop_read|_sock_send))",
     None),
    ("`DataPath.ingest` (rules, report filter, journal queue, observers)", r"^DataPath\.ingest ", None),
    ("Modbus request write (the send syscall)", r"^_SelectorSocketTransport\.write ", None),
    ("event loop `select`", r"^EpollSelector\.select ", None),
    ("executor hand-offs (`submit`, the loop's self-pipe)",
     r"^(ThreadPoolExecutor\.submit|BaseSelectorEventLoop\._write_to_self) ", None),
]


def load(path: Path) -> list[tuple[str, list[str], int]]:
    """(thread, frames outermost first, samples) per line of a collapsed file."""
    out = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        thread, *frames = stack.split(";")
        name = thread.split(": ", 1)[-1]
        out.append((re.sub(r"_\d+$", "", name), frames, int(count)))
    return out


def table(paths: list[Path]) -> str:
    data = {p.stem: load(p) for p in paths}
    names = list(data)
    totals = {k: sum(n for _, _, n in stacks) for k, stacks in data.items()}
    lines = ["| where (inclusive share of the process's samples) | " + " | ".join(names) + " |",
             "|---|" + "---:|" * len(names),
             "| samples on the CPU | " + " | ".join(str(totals[k]) for k in names) + " |"]
    threads: dict[str, Counter[str]] = {}
    for k, stacks in data.items():
        for thread, _, n in stacks:
            threads.setdefault(thread, Counter())[k] += n
    for thread, counts in threads.items():
        lines.append(f"| thread {thread} | " + " | ".join(f"{100 * counts[k] / totals[k]:.1f} %" for k in names) + " |")
    for label, part, unless in PARTS:
        inside, outside = re.compile(part), re.compile(unless) if unless else None
        row = []
        for k in names:
            hits = sum(n for _, frames, n in data[k] if any(inside.search(f) for f in frames)
                       and not (outside and any(outside.search(f) for f in frames)))
            row.append(f"{100 * hits / max(totals[k], 1):.1f} %")
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(table([Path(a) for a in sys.argv[1:]]))
