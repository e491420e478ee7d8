"""Text summary of py-spy's collapsed stacks (``py-spy record --format raw --threads``).

Idle samples are not recorded by py-spy (without ``--idle``), so a sample is a moment a thread was on the
CPU. Per thread: samples, then the top functions by own samples (the frame on top of the stack) and by
inclusive samples (anywhere in the stack, counted once per stack), and the share of each.

    python bench/pyspy_summary.py STACKS.collapsed [TITLE]
"""

from __future__ import annotations

import re
import sys
from collections import Counter, defaultdict
from pathlib import Path

TOP = 30
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
_SITE = re.compile(r"^.*?/(site-packages|lib/python3\.\d+)/")


def frame_name(frame: str) -> str:
    """``func (path:line)`` → ``func (path)`` with the interpreter's and site-packages' prefix cut."""
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    path = _SITE.sub(lambda m: "<site>/" if m.group(1) == "site-packages" else "<stdlib>/", match["file"])
    return f"{match['func']} ({path})"


def thread_label(frame: str) -> str:
    """``thread (0x7f…)`` or ``process 123:"…"`` → a short label."""
    return re.sub(r"\s*\(0x[0-9a-f]+\)", "", frame.strip()).strip('"') or "thread"


def summarise_stacks(text: str, title: str) -> str:
    own: dict[str, Counter[str]] = defaultdict(Counter)
    inclusive: dict[str, Counter[str]] = defaultdict(Counter)
    totals: Counter[str] = Counter()
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = thread_label(frames[0]) if frames[0].startswith(("thread", "process")) else "thread"
        names = [frame_name(f) for f in frames[1:] if not f.startswith(("thread", "process"))]
        if not names:
            continue
        totals[thread] += count
        own[thread][names[-1]] += count
        for name in set(names):
            inclusive[thread][name] += count
    out = [f"# {title}", "", f"samples on the CPU: {sum(totals.values())} ("
           + ", ".join(f"{t}: {n}" for t, n in totals.most_common()) + ")", ""]
    for thread, total in totals.most_common():
        out += [f"## thread {thread}: {total} samples", "", "### by own samples", "",
                "| samples | share | function |", "|---:|---:|---|"]
        out += [f"| {n} | {n / total:.1%} | {name} |" for name, n in own[thread].most_common(TOP)]
        out += ["", "### by inclusive samples", "", "| samples | share | function |", "|---:|---:|---|"]
        out += [f"| {n} | {n / total:.1%} | {name} |" for name, n in inclusive[thread].most_common(TOP)]
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    source = Path(sys.argv[1])
    print(summarise_stacks(source.read_text(), sys.argv[2] if len(sys.argv) > 2 else source.stem))
