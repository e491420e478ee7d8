"""Link scheduler: moves journal records onto a link and acknowledges them in the journal.

One runner per link, with its own cursors over what the journal's ``owed`` rows say
that link still owes (so one record can leave by satellite now and by MQTT later: each link
acknowledges its own records, the record goes when the last one has). Order of what
is sent (docs/durability.md):

1. alarms, evidence, events — any age, highest class first, oldest first; never throttled;
2. *live* state, telemetry, bulk — committed since the link (re)connected;
3. *backlog* state, telemetry, bulk — what waited through the outage, oldest first per
   class (so oldest first per point), at most ``replay_rate`` records/s.

One in-flight slot is kept free for alarms, evidence and events, so a live alarm
never waits behind a full window of replayed telemetry. A record is acked in the
journal only after the far side acknowledged it; a failed send leaves it pending and
it is sent again, with the same seq, once the link is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from gateway.contracts import JournalLink
from gateway.journal import MAX_SEQ, AsyncJournal, Journal, JournalRecord
from gateway.journal.batch import Run
from gateway.links_pacing import AdaptivePacer, TokenBucket
from gateway.shared import OutboundMessage, Progress, RecordClass

log = logging.getLogger("fieldgate.links")

URGENT = (RecordClass.ALARM, RecordClass.EVIDENCE, RecordClass.EVENT)
REPLAYABLE = (RecordClass.STATE, RecordClass.TELEMETRY, RecordClass.BULK)

Cursors = dict[RecordClass, int]


class Profile(Protocol):
    def encode(self, records: Sequence[JournalRecord], now: float | None = None) -> list[OutboundMessage]: ...


@runtime_checkable
class RunProfile(Protocol):
    """A profile that encodes runs of batch records itself (payloads.py): the drain's fast path."""

    def encode_runs(self, runs: Sequence[Run], now: float | None = None) -> list[OutboundMessage]: ...


# Most messages' worth of records one pull takes: one executor round trip
# for several messages during a drain, each message still at most ``batch`` records (bench/RESULTS.md, fourth pass).
PULL_MESSAGES = 4


class Pull:
    """One pull's records in sending order, as runs of one batch each, in parts of one class and one kind
    (``urgent``, ``live``, ``replay``), oldest first in each: the runner's per-pull work is per part and per
    run, not per record (bench/RESULTS.md, fifth pass)."""

    __slots__ = ("count", "parts", "wire")

    def __init__(self, wire: bool = True) -> None:
        self.count = 0
        self.parts: list[tuple[str, RecordClass, list[Run]]] = []
        self.wire = wire  # for a profile with ``encode_runs``: the batches' wire text made on the journal thread

    def add(self, kind: str, cls: RecordClass, got: list[Run]) -> int:
        n = sum(map(len, got))
        if n:
            self.parts.append((kind, cls, got))
            self.count += n
            if self.wire:
                for run in got:
                    run.batch.wire()
        return n

    @property
    def records(self) -> list[JournalRecord]:
        """Every record of the pull, in sending order (made on demand: the fast path never asks)."""
        return [record for _, _, runs in self.parts for run in runs for record in run.records()]

    def messages(self, size: int) -> list[list[Run]]:
        """The runs in sending order, cut into groups of at most ``size`` records (a run cut in two where a
        group ends): each group is what one ``encode`` makes its messages of."""
        out: list[list[Run]] = []
        group: list[Run] = []
        room = size
        for _, _, runs in self.parts:
            for run in runs:
                while len(run) > room:
                    head, run = run.split(room)
                    group.append(head)
                    out.append(group)
                    group, room = [], size
                if len(run):
                    group.append(run)
                    room -= len(run)
                if not room:
                    out.append(group)
                    group, room = [], size
        if group:
            out.append(group)
        return out


def collect_urgent(journal: Journal, link: str, batch: int, urgent: Cursors, pull: Pull | None = None,
                   wire: bool = True) -> Pull:
    """Alarms, evidence, events not yet pulled, class first, oldest first (on the journal thread)."""
    out = Pull(wire) if pull is None else pull
    for cls in URGENT:
        out.add("urgent", cls, journal.owed_runs(link, cls, urgent[cls], MAX_SEQ, batch - out.count))
    return out


def collect(journal: Journal, link: str, batch: int, floor: int, urgent: Cursors, live: Cursors,
            replay: Cursors, replay_budget: int, wire: bool = True) -> Pull:
    """One pull, on the journal thread: up to ``batch`` records in sending order."""
    out = collect_urgent(journal, link, batch, urgent, wire=wire)
    for cls in REPLAYABLE:
        out.add("live", cls, journal.owed_runs(link, cls, max(live[cls], floor), MAX_SEQ, batch - out.count))
    budget = min(replay_budget, batch - out.count)
    for cls in REPLAYABLE:
        budget -= out.add("replay", cls, journal.owed_runs(link, cls, replay[cls], floor, budget))
    return out


@runtime_checkable
class ConnectWaiter(Protocol):
    """A link that can say when it is connected (MQTT): the runner waits for that instead of polling."""

    async def until_connected(self) -> None: ...


def encoder(profile: Profile) -> Callable[[Sequence[Run]], list[OutboundMessage]]:
    """The profile's encoding of a group of runs: its own ``encode_runs`` if it has one (no object per record),
    else ``encode`` of the runs' records."""
    if isinstance(profile, RunProfile):
        return profile.encode_runs
    return lambda runs: profile.encode([record for run in runs for record in run.records()])


class AckBatcher:
    """Acknowledgements into the journal, the PUBACKs that arrive while one is being written merged into the
    next: one executor round trip and one transaction for several messages during a drain (was one per
    PUBACK), and at once when the link is quiet. ``ack`` returns when that message's seqs are written (or
    raises what the journal raised), as a direct call did."""

    def __init__(self, journal: AsyncJournal, link: str) -> None:
        self.journal = journal
        self.link = link
        self.writes = 0
        self._seqs: list[int] = []
        self._round: asyncio.Future[None] | None = None
        self._writer: asyncio.Task[None] | None = None

    async def ack(self, seqs: Sequence[int]) -> None:
        loop = asyncio.get_running_loop()
        if self._round is None:
            self._round = loop.create_future()
        self._seqs += seqs
        done = self._round
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write())
        await asyncio.shield(done)  # a cancelled sender leaves the others' acknowledgement to finish

    async def _write(self) -> None:
        while self._round is not None:
            done, seqs = self._round, self._seqs
            self._round, self._seqs = None, []
            try:
                await self.journal.call(self.journal.journal.ack, self.link, seqs)
            except asyncio.CancelledError:
                done.cancel()
                if self._round is not None:
                    self._round.cancel()
                    self._round, self._seqs = None, []
                raise
            except Exception as exc:
                done.set_exception(exc)
                done.exception()  # retrieved: its waiters may all have been cancelled meanwhile
            else:
                done.set_result(None)
            self.writes += 1

    async def settled(self) -> None:
        """Until every acknowledgement handed in so far is written."""
        while self._writer is not None and not self._writer.done():
            await asyncio.wait([self._writer])


class LinkRunner:
    def __init__(
        self, link: JournalLink, journal: AsyncJournal, profile: Profile, *, batch: int = 200, max_inflight: int = 8,
        replay_rate: float | None = None,
    ) -> None:
        self.link = link
        self.journal = journal
        self.profile = profile
        self._encode = encoder(profile)
        self._wire = isinstance(profile, RunProfile)
        self.batch = batch
        self.max_inflight = max_inflight
        # Backlog replay (gateway/links_pacing.py): a fixed rate, or (None) adaptive to the PUBACKs.
        self.bucket = TokenBucket(replay_rate, burst=max(batch, int(replay_rate or 0)))
        self.pacer = AdaptivePacer(batch) if replay_rate is None else None
        self._new = journal.subscribe()
        self._acks = AckBatcher(journal, link.name)
        self._inflight = 0
        self._slot_freed = asyncio.Event()
        self._rewind = True
        # The last pull took everything this link was owed up to the cursors: until a commit (or a failed
        # send) there is nothing to pull, so neither the runner nor an acknowledgement asks the journal
        # thread again (each ask is an executor round trip and a few SQL reads, bench/RESULTS.md).
        self._drained = False
        self._floor = 0
        self._urgent: Cursors = dict.fromkeys(URGENT, 0)
        self._live: Cursors = dict.fromkeys(REPLAYABLE, 0)
        self._replay: Cursors = dict.fromkeys(REPLAYABLE, 0)
        self.sent_messages = 0
        self.sent_records = 0
        self.replayed_records = 0
        self.failed_sends = 0

    def stats(self) -> dict[str, int]:
        return {"sent_messages": self.sent_messages, "sent_records": self.sent_records,
                "replayed_records": self.replayed_records, "failed_sends": self.failed_sends,
                "inflight": self._inflight}

    def rewind(self) -> None:
        """Re-read what is pending from the start (the journal under the runner was replaced)."""
        self._rewind = True

    async def run(self, progress: Progress) -> None:
        # A restart after a crash: the cursors may have moved past records that were pulled but never
        # sent (or whose sends were cancelled); start again from what is still pending.
        self._rewind = True
        async with asyncio.TaskGroup() as senders:
            while True:
                progress.beat()
                if not self.link.connected:
                    self._rewind = True  # after a drop: re-read what is still pending, new live/backlog split
                    await self._until_connected()
                    continue
                if self._rewind:
                    await self._restart_cursors()
                    continue
                self._new.clear()
                budget = self.bucket.available() if self.pacer is None else self.pacer.budget(self._window())
                limit = self.batch * self._messages_per_pull()
                pull = await self.journal.call(
                    collect, self.journal.journal, self.link.name, limit, self._floor,
                    dict(self._urgent), dict(self._live), dict(self._replay), budget, self._wire)
                if not pull.count:
                    # Nothing, or only backlog beyond the budget: a commit, or a PUBACK that frees some of the
                    # pacer's share, wakes the runner (it asked the journal again at once, an empty pull per
                    # turn of the loop while the share was in flight); a fixed rate waits for its next token.
                    await self._wait_for_news(1.0 if budget > 0 or self.pacer is not None
                                              else self.bucket.wait_for_one())
                    continue
                replayed = self._advance(pull)
                self._drained = pull.count < limit and replayed < budget
                if self.pacer is not None:  # how long live data waited in the journal: the pacer's second signal
                    self.pacer.live_waited(max((time.time() - got[0].created for kind, _, got in pull.parts
                                                if kind == "live"), default=0.0))
                urgent = {seq for kind, _, got in pull.parts if kind == "urgent" for run in got for seq in run.seqs}
                for group in pull.messages(self.batch):  # messages of at most ``batch`` records
                    for message in self._encode(group):
                        is_urgent = bool(urgent) and not urgent.isdisjoint(message.seqs)
                        await self._take_slot(is_urgent, senders)
                        self._start_send(senders, message, replayed > 0 and self._carries_backlog(message, urgent))
                if self._drained:
                    await self._wait_for_news(1.0)

    async def _until_connected(self) -> None:
        # Polled every 0.2 s before the fifth pass: up to 0.2 s after a reconnect before the first send (half of a
        # 100 000-record drain's time in bench/journal.py). A link that can say so is waited for (at most 1 s:
        # the progress beat).
        if not isinstance(self.link, ConnectWaiter):
            await asyncio.sleep(0.2)
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await self.link.until_connected()

    def _messages_per_pull(self) -> int:
        """Messages' worth one pull takes: PULL_MESSAGES, fewer in a narrow window (records pulled wait for a
        slot; the backlog's part is bounded by the pacer's budget, i.e. by its share of the window, anyway)."""
        return max(1, min(PULL_MESSAGES, self._window() - 2))

    def _carries_backlog(self, message: OutboundMessage, urgent: set[int]) -> bool:
        # Backlog: not urgent, at or below the floor (live records are above it). A message without records
        # (ThingsBoard's device connects and attributes) is not backlog.
        if not urgent:
            return bool(message.seqs) and min(message.seqs) <= self._floor
        return any(s <= self._floor and s not in urgent for s in message.seqs)

    async def _restart_cursors(self) -> None:
        while self._inflight:
            self._slot_freed.clear()
            await self._slot_freed.wait()
        await self._acks.settled()  # what was acknowledged is not read back as owed
        self._floor = await self.journal.call(self.journal.journal.last_seq)
        self._urgent = dict.fromkeys(URGENT, 0)
        self._live = dict.fromkeys(REPLAYABLE, self._floor)
        self._replay = dict.fromkeys(REPLAYABLE, 0)
        self._rewind = False
        self._drained = False

    def _advance(self, pull: Pull) -> int:
        """Move the cursors past ``pull``'s records; returns how many were backlog (replayed)."""
        replayed = 0
        for kind, cls, got in pull.parts:  # each part oldest first: its last record is its highest seq
            cursors = self._urgent if kind == "urgent" else self._live if kind == "live" else self._replay
            cursors[cls] = max(cursors[cls], got[-1].last)
            if kind == "replay":
                replayed += sum(map(len, got))
        self.bucket.take(replayed)
        self.replayed_records += replayed
        return replayed

    def _window(self) -> int:
        """In flight at once: ``max_inflight``, or the link's own window if that is smaller (MQTT lowers
        it to the broker's Receive Maximum; counting more here would queue telemetry inside the link)."""
        window = self.link.window
        if 0 < window < self.max_inflight:
            return window
        return self.max_inflight

    async def _take_slot(self, urgent: bool, senders: asyncio.TaskGroup | None = None) -> None:
        # Non-urgent traffic leaves one slot free, so an alarm can always go out at once.
        while True:
            window = self._window()
            limit = window if urgent or window == 1 else window - 1
            if self._inflight < limit:
                break
            self._slot_freed.clear()
            if urgent or senders is None:
                await self._slot_freed.wait()
                continue
            # We hold telemetry already pulled: an alarm committed meanwhile must not wait behind it for a
            # PUBACK. Wake on a freed slot or on news in the journal, and send any new urgent records first.
            self._new.clear()
            await _first_of(self._slot_freed, self._new)
            if self._new.is_set():
                self._drained = False  # the news is consumed here: what it brought beyond alarms is pulled next
                await self._send_urgent(senders)
        self._inflight += 1

    async def _send_urgent(self, senders: asyncio.TaskGroup) -> None:
        pull = await self.journal.call(collect_urgent, self.journal.journal, self.link.name, self.batch,
                                       dict(self._urgent), None, self._wire)
        if not pull.count:
            return
        self._advance(pull)
        for message in self._encode([run for _, _, runs in pull.parts for run in runs]):
            await self._take_slot(True)
            self._start_send(senders, message, False)

    def _start_send(self, senders: asyncio.TaskGroup, message: OutboundMessage, backlog: bool) -> None:
        if self.pacer is not None:
            self.pacer.sent(backlog)
        senders.create_task(self._send(message, backlog))

    async def _wait_for_news(self, seconds: float) -> None:
        # asyncio.timeout, not wait_for: in 3.11 wait_for swallows a cancel that lands in the same step
        # as the wake-up (Gateway.run's flush notifies, then cancels us), and the runner would run on.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._new.wait()

    async def _send(self, message: OutboundMessage, backlog: bool = False) -> None:
        started = time.monotonic()
        rtt = float("inf")  # a failed send counts as a very late PUBACK for the pacer
        try:
            await self.link.send(message)
            rtt = time.monotonic() - started
            await self._acks.ack(message.seqs)
            self.sent_messages += 1
            self.sent_records += len(message.seqs)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failed_sends += 1
            self._rewind = True
            log.info("link %s: %d records not acknowledged (%s); they stay in the journal",
                     self.link.name, len(message.seqs), exc or type(exc).__name__, extra={"link": self.link.name})
            # Give the link time to notice it is down before the runner tries again.
            await asyncio.sleep(0.5)
        finally:
            if self.pacer is not None:
                self.pacer.acknowledged(backlog, rtt, self._window())
            self._inflight -= 1
            self._slot_freed.set()
            if self._rewind or not self._drained:  # an ack makes nothing new to pull once drained
                self._new.set()


async def _first_of(*events: asyncio.Event) -> None:
    """Until one of ``events`` is set."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
