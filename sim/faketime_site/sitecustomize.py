"""Loaded only into a daemon that sim/faketime.py runs under libfaketime (its PYTHONPATH puts this first).

libfaketime 0.9.10 (Debian 12) with ``FAKETIME_DONT_FAKE_MONOTONIC=1`` mangles
``clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, …)`` into EINVAL (wolfcw/libfaketime#426), and Python 3.11's
``time.sleep`` uses exactly that call. A relative ``select()`` timeout is not intercepted, so ``time.sleep``
becomes one. Nothing else changes: the wall clock stays libfaketime's, the monotonic clock the kernel's.
"""

from __future__ import annotations

import select
import time
from typing import SupportsIndex


def _sleep(seconds: float | SupportsIndex) -> None:
    seconds = float(seconds)
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        select.select([], [], [], left)


time.sleep = _sleep
