"""A moment noted on both clocks, and where it lies on the wall clock as it reads now.

The wall clock steps (NTP's first sync after a cold start, a GPS glitch, ``date -s``); the monotonic clock
does not, but it means nothing across a reboot. So a moment that must survive a step is noted as a
``Stamp``: the wall clock, the monotonic clock and the kernel's boot id together. Within the same boot the
moment is put on today's wall clock by the monotonic time since (``on_clock_now``: every step since, either
way, drops out); across a reboot only the wall stamp as written is left.

Shared by what keeps such moments on disk: the command plane's replay-cache floor (gateway/commands/replay.py)
and the broadcast interlock's audit restore (gateway/alerts/restore.py, gateway/alerts/interlock.py).
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from pathlib import Path

BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")


@functools.cache
def this_boot() -> str:
    """The kernel's boot id, read once; without one (not Linux, no /proc) an id of this process only, so that the
    stamps of an earlier process are taken as another boot's (their wall stamp as written, the conservative way)."""
    try:
        found = BOOT_ID_PATH.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        found = ""
    return found or f"process-{uuid.uuid4()}"


@dataclass(frozen=True)
class Stamp:
    at: float  # the wall clock
    mono: float | None  # the monotonic clock of boot ``boot``
    boot: str | None


def on_clock_now(stamp: Stamp, boot: str, wall_now: float, mono_now: float) -> float | None:
    """The moment ``stamp`` was taken, on the wall clock as it reads now: its wall stamp moved by every step since
    (the change of wall - monotonic), when it was taken in this boot; None when nothing monotonic compares."""
    if stamp.boot != boot or stamp.mono is None or stamp.mono > mono_now:
        return None
    return wall_now - (mono_now - stamp.mono)
