"""What the centre does with each card's message, and what it owes each card: no I/O but its state file.

In: ``on_incoming(card, payload)`` for every message the command receiver reports. Out:
``next_publication()`` (to the broker, QoS 1) and ``next_send()`` (to a card, by the receiver).
A record is ACKed only after the broker confirmed it (``published``): the ACK tells the gateway
the platform has it. A copy already published (the gateway resent it because the ACK was lost)
is not published again, only ACKed again. Every piece of state is bounded: the publication queue
(``max_queued``; the oldest is dropped unACKed, so the gateway sends it again), the seqs remembered
per gateway (``dedup_per_gateway``), the seqs owed an ACK per card, the commands queued per card.
All of it is also in the state file (centre/satellite/store.py), changed in step with memory (written by
its writer thread; the service awaits ``store.saved()`` before telling the outside) and read
back at start: a restart neither publishes a record twice nor forgets an ACK or a command it owes.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from centre.satellite.config import Centre, Gateway
from centre.satellite.records import Publication, alarm_record, envelope, reading_record, reply_publication
from centre.satellite.store import CentreStore
from gateway import compact

log = logging.getLogger("fieldgate.satcentre")

ACK_OWED_MAX = 4096  # seqs owed an ACK per card; beyond, the oldest is forgotten (the gateway resends it)
COMMANDS_PER_CARD = 8  # commands waiting for the receiver per card; beyond, the oldest is dropped
LOG_EVERY_S = 600.0  # a repeated complaint (unknown card, ...) is logged once, then at most this often
# Changes waiting for the state file's writer. Outputs wait for the disk (the service awaits saved()), inputs
# do not: a disk that hangs would let the receiver's messages pile up in memory. Beyond this a message is
# dropped unACKed (its gateway sends it again) and a platform command refused (a few KB each: ~10 MB).
STATE_BACKLOG_MAX = 4096


@dataclass(slots=True)
class _Queued:
    card: int
    publication: Publication
    row: int  # in the state file


@dataclass(slots=True)
class _Card:
    gateway: Gateway
    owed: set[int] = field(default_factory=set)  # seqs the broker has, not yet ACKed to the card
    commands: deque[tuple[int, bytes]] = field(default_factory=deque)  # (state file row, COMMAND), oldest first
    seen: OrderedDict[int, None] = field(default_factory=OrderedDict)  # published seqs, oldest first
    queued: set[int] = field(default_factory=set)  # seqs waiting in the publication queue


@dataclass(frozen=True, slots=True)
class Send:
    """One message for the receiver to send: ``payload`` to ``card``; ``acked`` the seqs it ACKs."""

    card: int
    payload: bytes
    acked: frozenset[int] = frozenset()
    command: bool = False


class Bridge:
    def __init__(self, centre: Centre, *, clock: Callable[[], float] = time.time) -> None:
        self.config = centre.config
        self._cards = {card: _Card(gw) for card, gw in centre.gateways.items()}
        self._clock = clock
        self._queue: deque[_Queued] = deque()
        self.store = CentreStore(centre.state_path)
        self._restore()
        self._turn: deque[int] = deque(self._cards)  # round robin over cards for the receiver's slots
        self.counters: dict[str, int] = dict.fromkeys(
            ("received", "published", "duplicates", "unknown_card", "undecodable", "wrong_gateway", "ignored",
             "dropped_unpublished", "acks_sent", "commands_sent", "commands_dropped", "disk_behind"), 0)
        self._logged: dict[str, float] = {}

    def _restore(self) -> None:
        """Memory as the state file left it (after forgetting gateways no longer configured)."""
        card_of = {state.gateway.number: card for card, state in self._cards.items()}
        self.store.keep_only(card_of)
        for number, saved in self.store.gateways().items():
            state = self._cards[card_of[number]]
            state.seen.update(dict.fromkeys(saved.seen))
            state.owed.update(saved.owed)
            state.commands.extend(saved.commands)
        for item in self.store.queue():
            card = card_of[item.gateway]
            self._queue.append(_Queued(card, Publication(item.topic, item.payload, item.seqs, item.expiry_s), item.row))
            self._cards[card].queued.update(item.seqs)
        if self._queue or any(s.owed or s.commands for s in self._cards.values()):
            log.info("state %s: %d messages to publish, %d seqs owed an ACK, %d commands to send", self.store.path,
                     len(self._queue), sum(len(s.owed) for s in self._cards.values()),
                     sum(len(s.commands) for s in self._cards.values()))

    # ---- in: a card's message -----------------------------------------------------------------

    def on_incoming(self, card: int, payload: bytes) -> None:
        self.counters["received"] += 1
        if self.store.backlog >= STATE_BACKLOG_MAX:
            self._complain("disk_behind", f"the state file {self.store.path} is {self.store.backlog} changes behind; "
                           f"message from card {card} dropped unACKed (its gateway sends it again)")
            return
        state = self._cards.get(card)
        if state is None:
            self._complain("unknown_card", f"message from card {card}, which no gateway in the config has; dropped")
            return
        gw = state.gateway
        try:
            message = compact.decode(payload, gw.aliases)
        except compact.CompactDecodeError as exc:
            self._complain("undecodable", f"card {card} ({gw.gateway_id}): not a compact message ({exc}); dropped")
            return
        if message.gateway != gw.number:
            self._complain("wrong_gateway", f"card {card} belongs to {gw.gateway_id} (number {gw.number}) but its "
                           f"message names gateway number {message.gateway}; dropped, not ACKed")
            return
        now = self._clock()
        if message.kind is compact.MessageKind.READINGS:
            fresh = [r for r in message.readings if self._fresh(state, r.seq or 0)]
            if fresh:
                self._enqueue(card, envelope(gw, "telemetry", [reading_record(gw, r, now) for r in fresh]))
        elif message.kind in (compact.MessageKind.ALARM, compact.MessageKind.ALARM_CANCEL):
            if self._fresh(state, message.seqs[0]):
                kind, record = alarm_record(gw, message, now)
                self._enqueue(card, envelope(gw, kind, [record]))
        elif message.kind is compact.MessageKind.REPLY:
            publication = reply_publication(gw, message)
            if publication is None:
                self._complain("undecodable", f"card {card} ({gw.gateway_id}): a REPLY with an unreadable body")
            else:
                self._enqueue(card, publication)
        else:  # ACK, COMMAND: platform -> gateway kinds; a gateway never sends them
            self._complain("ignored", f"card {card} ({gw.gateway_id}) sent a {message.kind.name}; ignored")

    def _fresh(self, state: _Card, seq: int) -> bool:
        """Not published yet and not waiting to be; a copy already published is owed its ACK again."""
        if seq in state.seen:
            self.counters["duplicates"] += 1
            self._owe(state, [seq])
            return False
        if seq in state.queued:
            self.counters["duplicates"] += 1
            return False
        return True

    def _enqueue(self, card: int, publication: Publication) -> None:
        drop: int | None = None
        if len(self._queue) >= self.config.max_queued:
            old = self._queue.popleft()
            drop = old.row
            self._cards[old.card].queued.difference_update(old.publication.seqs)
            self.counters["dropped_unpublished"] += 1
            self._complain("dropped_unpublished", f"the broker is not taking messages and {self.config.max_queued} "
                           f"wait; the oldest dropped unACKed (its gateway sends it again)", count=False)
        row = self.store.enqueue(self._cards[card].gateway.number, publication.topic, publication.payload,
                                 publication.seqs, publication.expiry_s, drop)
        self._cards[card].queued.update(publication.seqs)
        self._queue.append(_Queued(card, publication, row))

    # ---- out: to the broker ---------------------------------------------------------------------

    @property
    def unpublished(self) -> int:
        return len(self._queue)

    def next_publication(self) -> Publication | None:
        return self._queue[0].publication if self._queue else None

    def published(self, publication: Publication) -> None:
        """The broker confirmed ``publication`` (the queue's first): remember its seqs, owe their ACK."""
        if not self._queue or self._queue[0].publication is not publication:
            return  # dropped meanwhile (queue full): its seqs will come again
        item = self._queue.popleft()
        state = self._cards[item.card]
        state.queued.difference_update(publication.seqs)
        for seq in publication.seqs:
            state.seen[seq] = None
            state.seen.move_to_end(seq)
        forget_seen = [state.seen.popitem(last=False)[0]
                       for _ in range(max(0, len(state.seen) - self.config.dedup_per_gateway))]
        self.store.published(item.row, state.gateway.number, publication.seqs, forget_seen,
                             self._owe_in_memory(state, publication.seqs))
        self.counters["published"] += 1

    def _owe(self, state: _Card, seqs: tuple[int, ...] | list[int]) -> None:
        self.store.owe(state.gateway.number, seqs, self._owe_in_memory(state, seqs))

    @staticmethod
    def _owe_in_memory(state: _Card, seqs: tuple[int, ...] | list[int]) -> list[int]:
        """Owe ``seqs``; return the oldest forgotten beyond the bound (the gateway sends them again)."""
        state.owed.update(seqs)
        excess = len(state.owed) - ACK_OWED_MAX
        forgotten = sorted(state.owed)[:excess] if excess > 0 else []
        state.owed.difference_update(forgotten)
        return forgotten

    # ---- out: to the cards ------------------------------------------------------------------------

    def queue_command(self, gateway_id: str, data: bytes, max_bytes: int) -> str:
        """A compact COMMAND (``fieldgate command sign --compact``) for ``gateway_id``: "" if queued, else why not."""
        state = next((s for s in self._cards.values() if s.gateway.gateway_id == gateway_id), None)
        if state is None:
            return f"no gateway {gateway_id!r} in the config"
        try:
            message = compact.decode(data)
        except compact.CompactDecodeError as exc:
            return f"not a compact message: {exc}"
        if message.kind is not compact.MessageKind.COMMAND or message.gateway != state.gateway.number:
            return f"not a COMMAND for gateway number {state.gateway.number}"
        if len(data) > max_bytes:
            return f"{len(data)} bytes, the receiver sends at most {max_bytes}"
        if self.store.backlog >= STATE_BACKLOG_MAX:
            return f"the state file {self.store.path} is {self.store.backlog} changes behind; send it again later"
        drop: int | None = None
        if len(state.commands) >= COMMANDS_PER_CARD:
            drop = state.commands.popleft()[0]
            self.counters["commands_dropped"] += 1
        state.commands.append((self.store.add_command(state.gateway.number, data, drop), data))
        return ""

    def next_send(self, max_bytes: int) -> Send | None:
        """The next card's turn (round robin): its oldest command, else an ACK of what it is owed."""
        for _ in range(len(self._turn)):
            card = self._turn[0]
            self._turn.rotate(-1)
            state = self._cards[card]
            if state.commands:
                return Send(card, state.commands[0][1], command=True)
            if state.owed:
                return self._ack(card, state, max_bytes)
        return None

    def _ack(self, card: int, state: _Card, max_bytes: int) -> Send | None:
        ranges = _ranges(sorted(state.owed))
        stamp = int(self._clock())
        gw = state.gateway
        while ranges:
            payload = compact.encode_ack(ranges, gateway=gw.number, time=stamp, key=gw.ack_key)
            if len(payload) <= max_bytes:
                return Send(card, payload, frozenset(s for s in state.owed if any(lo <= s <= hi for lo, hi in ranges)))
            ranges = ranges[: max(1, len(ranges) * 3 // 4)] if len(ranges) > 1 else []
        return None

    def sent(self, send: Send) -> None:
        """The receiver accepted ``send``."""
        state = self._cards[send.card]
        if send.command:
            if state.commands and state.commands[0][1] == send.payload:
                self.store.command_sent(state.commands.popleft()[0])
            self.counters["commands_sent"] += 1
        else:
            state.owed.difference_update(send.acked)
            self.store.acked(state.gateway.number, send.acked)
            self.counters["acks_sent"] += 1

    # ---- logs ---------------------------------------------------------------------------------------

    def _complain(self, what: str, text: str, *, count: bool = True) -> None:
        if count:
            self.counters[what] += 1
        now = time.monotonic()
        last = self._logged.get(what)
        if last is None or now - last >= LOG_EVERY_S:
            self._logged[what] = now
            log.warning("%s (%s so far: %d; logged at most every %.0f s)", text, what, self.counters[what],
                        LOG_EVERY_S)


def _ranges(seqs: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for seq in seqs:
        if out and seq == out[-1][1] + 1:
            out[-1] = (out[-1][0], seq)
        else:
            out.append((seq, seq))
    return out
