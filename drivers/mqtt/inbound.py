"""Messages from the broker (commands), held so that none is lost once the broker thinks it delivered.

aiomqtt acknowledges a QoS 1 message as soon as paho reads it and then puts it in a queue that
discards when full: a flood of junk on the command topic made the broker's PUBACKed copy of a
signed ``cancel_broadcast`` vanish with a DEBUG line. Here instead every message is sorted as it
is read, before it can take a place:

* **Too large** for any command: dropped at once (a QoS 1 one is acknowledged, so the broker does
  not send it again).
* **Screened**: the core's screen (``screen(topic, payload)``, the command plane's signature
  check) says it is a command signed by a configured issuer for this gateway. Such a message is
  never dropped: a QoS 1 one is acknowledged only after the handler has taken it (claimed and
  audited), so a crash before that leaves it with the broker, which sends it again. When
  ``RELIABLE_MAX`` wait, the client stops reading its socket until half have been handled
  (back-pressure; only an issuer's own key can cause it).
* **Everything else** (junk, unsigned, forged, QoS 0 noise): acknowledged at once and kept in a
  small queue for the handler to refuse, audit and answer as it can; what does not fit is dropped.
  A flood of it therefore costs a parse and a signature check per message, at the speed the
  socket is read, and never delays a signed command: those are handled first.

Every drop is counted by reason (``dropped``) for the metrics; the link logs them at WARNING.
(Our CONNECT's Receive Maximum alone does not bound what a broker sends: mosquitto 2.0.11 sends
past it as soon as acknowledgements flow, 918 unacknowledged of a Receive Maximum of 64, measured;
and holding a flood unacknowledged only moves the loss to the broker's own queue limit.)
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass

# What our CONNECT tells the broker (Receive Maximum): QoS 1 messages it may have in flight to us.
RECEIVE_MAXIMUM = 64
# Screened commands held before the client stops reading its socket.
RELIABLE_MAX = RECEIVE_MAXIMUM
# Unscreened messages kept for the handler to refuse and answer; more are dropped.
UNSCREENED_MAX = 16
# Largest message accepted from the command topics: a signed envelope is at most 16 KiB; a
# ThingsBoard RPC wraps it with a few hundred bytes more. Also sent as the CONNECT's Maximum Packet
# Size, so a conforming broker does not even send us anything larger.
MAX_MESSAGE_BYTES = 32 * 1024
MAX_PACKET_BYTES = MAX_MESSAGE_BYTES + 1024  # topic, properties and headers


@dataclass(frozen=True, slots=True)
class InboundMessage:
    topic: str
    payload: bytes
    qos: int
    mid: int
    screened: bool = False  # a command signed by a configured issuer (see the module docstring)


class InboundQueue:
    def __init__(self, *, max_bytes: int = MAX_MESSAGE_BYTES, unscreened_max: int = UNSCREENED_MAX,
                 dropped: dict[str, int] | None = None) -> None:
        self.max_bytes = max_bytes
        self._screened: collections.deque[InboundMessage] = collections.deque()
        self._unscreened: collections.deque[InboundMessage] = collections.deque()
        self._unscreened_max = unscreened_max
        self._ready = asyncio.Event()
        # Shared with the link, which outlives each connection's queue (counts for the metrics).
        self.dropped: dict[str, int] = dropped if dropped is not None else {}

    def offer(self, message: InboundMessage) -> str | None:
        """Queue ``message`` (None), or drop it and return why."""
        if len(message.payload) > self.max_bytes:
            return self._drop("too_large")
        if message.screened:
            self._screened.append(message)
        elif len(self._unscreened) >= self._unscreened_max:
            return self._drop("unsigned_overflow")
        else:
            self._unscreened.append(message)
        self._ready.set()
        return None

    async def get(self) -> InboundMessage:
        while not (self._screened or self._unscreened):
            self._ready.clear()
            await self._ready.wait()
        return self._screened.popleft() if self._screened else self._unscreened.popleft()

    @property
    def full(self) -> bool:
        """Stop reading the socket: enough signed commands wait."""
        return len(self._screened) >= RELIABLE_MAX

    @property
    def drained(self) -> bool:
        """Read again."""
        return len(self._screened) <= RELIABLE_MAX // 2

    def __len__(self) -> int:
        return len(self._screened) + len(self._unscreened)

    def _drop(self, reason: str) -> str:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        return reason
