"""A journal that cannot be opened does not stop the site: readings go to a temporary journal in RAM, a
``journal_unavailable`` fault alarm goes upstream, the real journal is retried and merged back (same seqs)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.config import load_site_text
from gateway.journal import Journal
from gateway.journal.fallback import fallback_path
from gateway.shared import Quality, Reading, RecordClass

SITE = """
gateway: {{id: deg-gw, state_dir: {state}}}
journal: {{path: {journal}}}
links:
  - {{type: mqtt, name: county, host: 127.0.0.1, port: 9, reconnect_min: 5, reconnect_max: 5}}
rules:
  - {{type: threshold, id: level.danger, point: dam.level, above: 150}}
"""


pytestmark = pytest.mark.usefixtures("runtime_dir")  # tests/unit/conftest.py: temporary files here


def rows(path: Path) -> list[tuple[int, int, dict[str, Any]]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [(seq, cls, json.loads(body)) for seq, cls, body in
                db.execute("SELECT seq, cls, body FROM records ORDER BY seq")]


@contextlib.contextmanager
def locked(path: Path) -> Iterator[sqlite3.Connection]:
    """Another process's exclusive lock on the journal file (what a second daemon would hold)."""
    Journal(path, {"county": set(RecordClass)}).close()
    hold = sqlite3.connect(path, isolation_level=None)
    hold.execute("PRAGMA locking_mode=EXCLUSIVE")
    hold.execute("BEGIN EXCLUSIVE")
    try:
        yield hold
    finally:
        hold.close()


async def run_degraded(gateway: Gateway, unblock: Any) -> None:
    gateway.degraded.RETRY_FIRST = 0.2
    stop = asyncio.Event()
    run = asyncio.create_task(gateway.run(stop))
    await asyncio.wait_for(gateway.ready.wait(), 10)
    assert gateway.degraded.status_text() is not None and "journal_unavailable" in gateway.degraded.status_text()
    await gateway.datapath.ingest([Reading("dam.level", 151.0, Quality.GOOD, 1000.0)])  # the rule raises
    await gateway.datapath.ingest([Reading("dam.level", 140.0, Quality.GOOD, 1001.0)])  # and clears
    assert [t["transition"] for t in _alarm_bodies(gateway)] == ["raised", "cleared"]
    unblock()
    for _ in range(200):
        if not gateway.degraded.problems:
            break
        await asyncio.sleep(0.05)
    assert not gateway.degraded.problems
    stop.set()
    await asyncio.wait_for(run, 20)


def _alarm_bodies(gateway: Gateway) -> list[dict[str, Any]]:
    journal = gateway.journal.journal
    return [r.body for r in journal.owed("county", RecordClass.ALARM, 0, 2**63 - 1, 100)
            if r.body.get("kind") == "alarm"]


def check_merged(journal_path: Path) -> None:
    stored = rows(journal_path)
    bodies = [body for _seq, _cls, body in stored]
    faults = [b for b in bodies if b.get("kind") == "fault" and b.get("type") == "journal_unavailable"]
    assert [f["transition"] for f in faults] == ["raised", "cleared"]
    assert faults[0]["alarm_id"] == faults[1]["alarm_id"]
    alarms = [b["transition"] for b in bodies if b.get("kind") == "alarm"]
    assert alarms == ["raised", "cleared"]
    assert any(b.get("point") == "dam.level" and b.get("value") == 151.0 for b in bodies)
    seqs = [seq for seq, _c, _b in stored]
    assert seqs == sorted(set(seqs))
    # The next record continues above everything the temporary journal handed out.
    journal = Journal(journal_path, {"county": set(RecordClass)})
    try:
        assert journal.append([(RecordClass.EVENT, Reading("x", 1, Quality.GOOD, 1.0))])[0] > max(seqs)
    finally:
        journal.close()


def test_unwritable_journal_directory_runs_degraded_and_merges_back(tmp_path: Path) -> None:
    blocker = tmp_path / "disk"
    blocker.write_text("a file where the journal's directory should be\n")
    journal_path = blocker / "journal.sqlite"
    site = load_site_text(SITE.format(state=tmp_path / "state", journal=journal_path), "site.yaml")
    gateway = Gateway(site)  # today: NotADirectoryError, nothing polls
    assert fallback_path(journal_path, "deg-gw").exists()

    def unblock() -> None:
        blocker.unlink()
        blocker.mkdir()

    asyncio.run(run_degraded(gateway, unblock))
    check_merged(journal_path)
    assert not fallback_path(journal_path, "deg-gw").parent.exists()


def test_locked_journal_runs_degraded_and_merges_back(tmp_path: Path) -> None:
    journal_path = tmp_path / "state" / "journal.sqlite"
    journal_path.parent.mkdir()
    site = load_site_text(SITE.format(state=tmp_path / "state", journal=journal_path), "site.yaml")
    with locked(journal_path) as hold:
        gateway = Gateway(site)  # today: JournalUnavailable (database is locked)
        asyncio.run(run_degraded(gateway, hold.close))
    check_merged(journal_path)


def test_temporary_journal_left_by_a_stopped_run_is_merged_at_start(tmp_path: Path) -> None:
    journal_path = tmp_path / "state" / "journal.sqlite"
    journal_path.parent.mkdir()
    site = load_site_text(SITE.format(state=tmp_path / "state", journal=journal_path), "site.yaml")
    with locked(journal_path):
        gateway = Gateway(site)

        async def one_reading() -> None:
            await gateway.journal.append_now(RecordClass.TELEMETRY, Reading("dam.level", 99.0, Quality.GOOD, 5.0))
            await gateway.journal.close()

        asyncio.run(one_reading())
    again = Gateway(site)
    asyncio.run(again.journal.close())
    assert [b["value"] for _s, _c, b in rows(journal_path) if b.get("point") == "dam.level"] == [99.0]
    assert not fallback_path(journal_path, "deg-gw").exists()
