"""Link scheduler: moves journal records onto a link and acknowledges them in the journal.

One runner per link. It reads what the link still owes from the journal (alarms
first, then oldest first), encodes it with the link's payload profile, keeps at most
``max_inflight`` messages awaiting acknowledgement, and acks a record in the journal
only after the far side acknowledged it. A failed send leaves the records pending:
they are sent again (same seq) once the link is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Protocol

from gateway.journal import AsyncJournal, JournalRecord
from gateway.shared import Link, OutboundMessage, Progress

log = logging.getLogger("fieldgate.links")


class Profile(Protocol):
    def encode(self, records: Sequence[JournalRecord], now: float | None = None) -> list[OutboundMessage]: ...


class LinkRunner:
    def __init__(
        self, link: Link, journal: AsyncJournal, profile: Profile, *, batch: int = 200, max_inflight: int = 8
    ) -> None:
        self.link = link
        self.journal = journal
        self.profile = profile
        self.batch = batch
        self.max_inflight = max_inflight
        self._inflight: set[int] = set()
        self._slots = asyncio.Semaphore(max_inflight)
        self._new = journal.subscribe()
        self.sent_messages = 0
        self.failed_sends = 0

    async def run(self, progress: Progress) -> None:
        async with asyncio.TaskGroup() as senders:
            while True:
                progress.beat()
                if not self.link.connected:
                    await asyncio.sleep(0.2)
                    continue
                self._new.clear()
                records: list[JournalRecord] = await self.journal.call(
                    self.journal.journal.pending, self.link.name, self.batch, frozenset(self._inflight)
                )
                if not records:
                    await self._wait_for_news()
                    continue
                for message in self.profile.encode(records):
                    await self._slots.acquire()
                    self._inflight.update(message.seqs)
                    senders.create_task(self._send(message))

    async def _wait_for_news(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._new.wait(), timeout=1.0)

    async def _send(self, message: OutboundMessage) -> None:
        try:
            await self.link.send(message)
            await self.journal.call(self.journal.journal.ack, self.link.name, message.seqs)
            self.sent_messages += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failed_sends += 1
            log.info("link %s: %d records not acknowledged (%s); they stay in the journal",
                     self.link.name, len(message.seqs), exc or type(exc).__name__, extra={"link": self.link.name})
            # Give the link time to notice it is down before the runner tries again.
            await asyncio.sleep(0.5)
        finally:
            self._inflight.difference_update(message.seqs)
            self._slots.release()
            self._new.set()
