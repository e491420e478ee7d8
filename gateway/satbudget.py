"""What a satellite link may spend: its byte budget, and the share replies to rejected commands get.

The budget is the operator's bill limit (``policy.budget_bytes_per_hour/day``), persisted so that a
restart does not reset it. Replies to rejected commands are held to a few an hour and a small share
of that budget (docs/satellite.md §2.1): anyone who can reach the link can provoke a rejection.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from pathlib import Path

from gateway.fsutil import write_atomic

log = logging.getLogger("fieldgate.satellite")

REJECTED_REPLIES_PER_HOUR = 4  # replies to rejected commands in any hour...
REJECTED_REPLY_SHARE = 0.1  # ...and at most this share of each configured byte budget window


class Budget:
    """Bytes sent in the last hour and day, persisted so a restart does not reset the bill."""

    def __init__(self, path: Path, per_hour: int | None, per_day: int | None) -> None:
        self.path, self.per_hour, self.per_day = path, per_hour, per_day
        self.sends: deque[tuple[float, int]] = deque(maxlen=10_000)
        try:
            for t, n in json.loads(path.read_text()):
                self.sends.append((float(t), int(n)))
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError) as exc:
            log.warning("satellite budget file %s unreadable (%s); counting afresh", path, exc)

    def used(self, window: float, now: float) -> int:
        return sum(n for t, n in self.sends if now - t < window)

    def allows(self, size: int, now: float) -> bool:
        if self.per_hour is not None and self.used(3600, now) + size > self.per_hour:
            return False
        return self.per_day is None or self.used(86400, now) + size <= self.per_day

    def spend(self, size: int, now: float) -> None:
        self.sends.append((now, size))
        while self.sends and now - self.sends[0][0] > 86400:
            self.sends.popleft()
        write_atomic(self.path, json.dumps(list(self.sends)).encode(), durable=False)


class RejectedReplyLimit:
    """Replies to rejected commands admitted in the last hour and day (a sliding window, in memory:
    a restart allows one more burst). Anyone who can reach the link can make the gateway reject a
    command; unbounded, those replies would spend the byte budget the alarms need."""

    def __init__(self, per_hour: int | None, per_day: int | None) -> None:
        self.hour_bytes = None if per_hour is None else per_hour * REJECTED_REPLY_SHARE
        self.day_bytes = None if per_day is None else per_day * REJECTED_REPLY_SHARE
        # the hourly count bounds what a day can hold
        self.admitted: deque[tuple[float, int]] = deque(maxlen=REJECTED_REPLIES_PER_HOUR * 24)

    def admit(self, size: int, now: float) -> bool:
        """Count a reply of ``size`` bytes and return True if it may be queued; ``now`` is monotonic."""
        hour = [n for t, n in self.admitted if now - t < 3600]
        day = sum(n for t, n in self.admitted if now - t < 86400)
        if len(hour) >= REJECTED_REPLIES_PER_HOUR:
            return False
        if self.hour_bytes is not None and sum(hour) + size > self.hour_bytes:
            return False
        if self.day_bytes is not None and day + size > self.day_bytes:
            return False
        self.admitted.append((now, size))
        return True
