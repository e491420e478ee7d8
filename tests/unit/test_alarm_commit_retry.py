"""An alarm record survives a passing journal I/O error: the commit is retried, not dropped."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from gateway.app import Gateway
from gateway.config import load_site_text
from gateway.shared import EventRecord, RecordClass


def test_alarm_commit_is_retried_after_an_io_error(tmp_path: Path) -> None:
    site = load_site_text(f"gateway: {{id: gw, state_dir: {tmp_path}}}\n", "site.yaml")
    gateway = Gateway(site)
    real = gateway.journal.append_now
    failures = [sqlite3.OperationalError("disk I/O error")]

    async def flaky(cls: RecordClass, record: object) -> int:
        if failures:
            raise failures.pop()
        return await real(cls, record)  # type: ignore[arg-type]

    gateway.journal.append_now = flaky  # type: ignore[method-assign]

    async def scenario() -> int:
        await gateway.datapath.commit_now(RecordClass.ALARM, EventRecord("alarm", "level.danger", {"x": 1}, 1.0))
        depth: int = await gateway.journal.call(gateway.journal.journal.last_seq)
        await gateway.journal.close()
        return depth

    assert asyncio.run(scenario()) == 1
    assert not failures
