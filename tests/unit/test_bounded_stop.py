"""Stop completes within its documented bound whatever the journal holds (docs/durability.md, "Stop").

A journal full of alarms cannot take another alarm; the stop path used to retry that commit until
systemd's stop timeout killed the daemon. Now it gives up after ``STOP_COMMIT_BOUND`` and spills what it
holds to the temporary journal, which the next start merges.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.config import load_site_text
from gateway.journal import Journal, JournalFull
from gateway.journal.fallback import fallback_path
from gateway.journal.writer import STOP_COMMIT_BOUND
from gateway.shared import EventRecord, RecordClass

pytestmark = pytest.mark.usefixtures("runtime_dir")

SITE = """
gateway: {{id: stop-gw, state_dir: {state}}}
links:
  - {{type: mqtt, name: county, host: 127.0.0.1, port: 9, reconnect_min: 5, reconnect_max: 5}}
"""


def fill_with_alarms(journal: Journal) -> None:
    """On the journal thread: alarms until SQLite itself says the database is full (max_page_count)."""
    pages = int(journal.db.execute("PRAGMA page_count").fetchone()[0])
    journal.db.execute(f"PRAGMA max_page_count = {pages + 40}")
    journal.files.release_ballast()
    for i in range(10_000):
        try:
            journal.append([(RecordClass.ALARM, EventRecord("alarm", f"r{i}", {"pad": "x" * 500}, 1.0))])
        except JournalFull:
            return
    raise AssertionError("the journal never filled up")


def test_stop_with_a_journal_full_of_alarms_is_bounded(tmp_path: Path) -> None:
    config = load_site_text(SITE.format(state=tmp_path / "state"), "site.yaml")
    gateway = Gateway(config)

    async def scenario() -> float:
        stop = asyncio.Event()
        run = asyncio.create_task(gateway.run(stop))
        await asyncio.wait_for(gateway.ready.wait(), 10)
        await gateway.journal.call(fill_with_alarms, gateway.journal.journal)
        for i in range(3):  # alarms the writer holds and retries: there is no room for them
            await gateway.journal.put(RecordClass.ALARM, EventRecord("alarm", f"late{i}", {"n": i}, 2.0))
        await asyncio.sleep(1.0)
        started = time.monotonic()
        stop.set()
        # Generous: a bounded wait for the stop, not a performance figure (today it never ends).
        await asyncio.wait_for(run, STOP_COMMIT_BOUND + 20)
        return time.monotonic() - started

    took = asyncio.run(scenario())
    assert took < STOP_COMMIT_BOUND + 20
    # Nothing is lost: what could not be committed waits in the temporary journal for the next start. (With
    # the batch layout of the footprint work the journal's own drops can leave room for them at stop, so
    # some or all may be in the journal itself.)
    points: set[str] = set()
    for path in (fallback_path(config.journal_path, "stop-gw"), config.journal_path):
        held = Journal(path, {"county": set(RecordClass)})
        try:
            points |= {r.body["key"] for r in held.owed("county", RecordClass.ALARM, 0, 2**62, 100_000)}
        finally:
            held.close()
    assert {"late0", "late1", "late2"} <= points
