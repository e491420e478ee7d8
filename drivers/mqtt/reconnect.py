"""When the MQTT link tries the broker again: quick probes first, then jittered back-off (docs/payloads.md).

Why two phases. Most losses are short (a broker restart, a mast handing over, a load balancer
failing over): the platform should see data again within a second or two of the broker's return,
so for ``fast_window`` seconds after a loss the link probes every ``floor/2 … floor`` seconds
(uniformly jittered). A probe of a broker that is down costs one TCP SYN and its RST; a fleet of
500 gateways probing a dead broker every ~0.75 s is ~700 SYNs/s, which no broker host notices.
When the broker returns, the fleet comes back within ~one probe interval, spread uniformly over
it (not in lockstep), and each gateway's replay is paced by its own in-flight window, i.e. by
the broker's PUBACKs (gateway/links_pacing.py), so the return is bounded by what the broker accepts.

A long loss is different: a broker gone for minutes is probably down for real (maintenance, a
cut fibre), and probing it every second for hours is noise in its logs and battery/data on a
metered link. After ``fast_window`` the delay doubles on every failure up to ``ceiling``, with
full jitter (a uniform draw in ``delay/2 … delay``) so that gateways which lost the broker at the
same moment drift apart instead of knocking together every minute.

Refusals that a quick retry cannot fix (login refused, TLS certificate problems, configuration)
always use the back-off: hammering a broker that refuses our credentials helps nobody.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

# Failure kinds (drivers/mqtt/tls.py) that mean "not there right now": worth a quick probe.
TRANSIENT = frozenset({"refused", "timeout", "unreachable", "dns", "lost", "other"})


class ReconnectPacer:
    STABLE = 10.0  # seconds a session must last before a loss counts as a new episode
    def __init__(self, floor: float, ceiling: float, fast_window: float, *,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None) -> None:
        self.floor = floor
        self.ceiling = max(ceiling, floor)
        self.fast_window = fast_window
        self._clock = clock
        self._rng = rng or random.Random()
        self._lost_at: float | None = None
        self._up_since: float | None = None
        self._delay = floor

    def connected(self) -> None:
        """A session is up. If it stays up for ``STABLE`` seconds, the next loss starts a new episode with
        quick probes; a session that drops sooner (a flapping broker, a client-id clash) continues the old
        episode, so flapping cannot keep a fleet in quick probes forever."""
        self._up_since = self._clock()

    def next_delay(self, kind: str) -> float:
        """Seconds to wait before the next attempt, after a failure of ``kind``."""
        now = self._clock()
        if self._up_since is not None and now - self._up_since >= self.STABLE:
            self._lost_at, self._delay = None, self.floor
        self._up_since = None
        if self._lost_at is None:
            self._lost_at = now
        if kind in TRANSIENT and now - self._lost_at < self.fast_window:
            return self._rng.uniform(self.floor / 2, self.floor)
        wait = self._rng.uniform(self._delay / 2, self._delay)
        self._delay = min(self._delay * 2, self.ceiling)
        return wait
