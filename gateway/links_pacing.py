"""How fast a link runner replays the backlog after an outage (docs/durability.md, "Order and replay").

Two ways, per link (``journal.replay_rate`` / ``journal.replay_rates``):

- ``adaptive`` (the default, also ``0``): the backlog goes as fast as the far side acknowledges it,
  i.e. as fast as the in-flight window turns over, but never so fast that live data and alarms queue
  behind it. ``AdaptivePacer`` keeps a share of the window for backlog messages and adjusts it by
  the PUBACK round trip (AIMD, as TCP does with its window): while PUBACKs come back within
  ``TARGET_RTT`` the share grows (doubling per round trip at first, as TCP's slow start, then by one
  message per round trip) up to the window less the slots kept
  for alarms and live data; when they come back later (bytes queueing in a slow uplink ahead of the
  live data), or when live records were pulled more than ``LIVE_TARGET`` after their commit (the
  backlog is taking the time live data needs: the link's, or this box's CPU), it halves. On a LAN
  or a good 4G link that is the whole window and the backlog drains at
  what the broker accepts; on a slow link it shrinks until live data gets through within the target.
- a number of records/s (``TokenBucket``): a fixed rate, for metered links (satellite, cellular paid
  per MB) where a fast drain costs money and nothing is gained by it.
"""

from __future__ import annotations

import time


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; rate None = unlimited."""

    def __init__(self, rate: float | None, burst: int) -> None:
        self.rate = rate
        self.burst = float(max(burst, 1))
        self.tokens = self.burst
        self.stamp = time.monotonic()

    def available(self) -> int:
        if self.rate is None:
            return 1 << 30
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        return int(self.tokens)

    def take(self, n: int) -> None:
        if self.rate is not None:
            self.tokens -= n

    def wait_for_one(self) -> float:
        if self.rate is None:
            return 0.0
        return max(0.01, (1.0 - self.tokens) / self.rate)


class AdaptivePacer:
    """The share of the in-flight window backlog messages may hold, steered by the PUBACK round trip."""

    TARGET_RTT = 0.25  # seconds: a PUBACK later than this means bytes are queueing ahead of live data
    RESERVED = 2  # window slots never given to the backlog: one for alarms/events, one for live data
    LIVE_TARGET = 0.5  # seconds live data may wait in the journal (commit to pull) before the backlog yields

    def __init__(self, batch: int) -> None:
        self.batch = batch
        self.share = 1.0
        # Slow start, as TCP's: below this the share grows by one message per PUBACK (doubling per round trip),
        # above it by one per round trip. A link that failed goes back to where it was before the failure that
        # way; a late PUBACK or live data kept waiting (a real limit) ends it.
        self.slow_start_below = float("inf")
        self.backlog_inflight = 0  # messages carrying backlog records, in flight now
        self.last_rtt: float | None = None
        self._halved_at = 0.0

    def budget(self, window: int) -> int:
        """Backlog records the next pull may take."""
        ceiling = max(1, window - self.RESERVED)
        self.share = min(self.share, float(ceiling))
        free = int(self.share) - self.backlog_inflight
        return max(0, free) * self.batch

    def live_waited(self, seconds: float) -> None:
        """Live records just pulled had waited ``seconds`` since their commit: past ``LIVE_TARGET`` the backlog
        is taking the time (the link's, or this box's CPU) that live data needs, so its share halves."""
        now = time.monotonic()
        if seconds > self.LIVE_TARGET and now - self._halved_at > self.LIVE_TARGET:
            self.share = max(1.0, self.share / 2)
            self.slow_start_below = 0.0
            self._halved_at = now

    def sent(self, backlog: bool) -> None:
        if backlog:
            self.backlog_inflight += 1

    def acknowledged(self, backlog: bool, rtt: float, window: int) -> None:
        """A message's PUBACK came back after ``rtt`` seconds (or it failed: ``rtt`` is then inf)."""
        if backlog:
            self.backlog_inflight -= 1
        self.last_rtt = rtt
        ceiling = float(max(1, window - self.RESERVED))
        now = time.monotonic()
        if rtt <= self.TARGET_RTT:
            step = 1.0 if self.share < self.slow_start_below else 1.0 / max(self.share, 1.0)
            self.share = min(ceiling, self.share + step)
        elif now - self._halved_at > min(rtt, 5.0):  # once per round trip, as TCP does
            # A failed send (rtt inf: the link went down) is no sign of congestion: back to slow start,
            # up to the share it had; a late PUBACK is one.
            self.slow_start_below = self.share if rtt == float("inf") else 0.0
            self.share = max(1.0, self.share / 2)
            self._halved_at = now
