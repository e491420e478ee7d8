"""Every file the daemon writes is created without following links, with its own mode whatever the umask.

Before: a symbolic link planted at the inbox's predictable ``.<utc>-<name>.result.json.part`` in
``done/`` (writable by the operators' group) made the result JSON overwrite the link's target; the
journal's seq file, the audit log and the satellite budget file were written the same way.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.alerts.audit import AuditLog
from gateway.alerts.inbox import InboxWatcher
from gateway.commands.replay import ReplayCache
from gateway.fsutil import LinkRefused, prepare_database, write_atomic
from gateway.journal import Journal, JournalSettings


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


class Subsystem:
    """What the inbox hands a request to: refuses everything (the file handling is under test)."""

    def __init__(self) -> None:
        self.notes: list[dict[str, Any]] = []

    async def handle(self, *_a: Any, **_k: Any) -> list[Any]:
        return []

    async def note(self, kind: str, data: dict[str, Any]) -> None:
        self.notes.append(data)


def test_a_planted_link_in_done_does_not_redirect_the_result(tmp_path: Path, permissive_umask: None) -> None:
    inbox = tmp_path / "inbox"
    victim = tmp_path / "victim.conf"
    victim.write_text("precious\n")
    watcher = InboxWatcher(None, Subsystem(), inbox_dir=inbox)  # type: ignore[arg-type]
    for sub in ("work", "done", "refused"):
        (inbox / sub).mkdir(parents=True)
    now = dt.datetime.now(dt.UTC)
    for second in range(-2, 30):  # every name the sidecar could get in the next half minute
        stamp = (now + dt.timedelta(seconds=second)).strftime("%Y%m%dT%H%M%SZ")
        for sub in ("done", "refused"):
            (inbox / sub / f".{stamp}-req.result.json.part").symlink_to(victim)
    (inbox / "req.json").write_text("not json")
    os.utime(inbox / "req.json", (0, 0))  # old enough to be refused, not waited for
    outcomes = asyncio.run(watcher.scan_once())
    assert [o.outcome for o in outcomes] == ["refused"]
    assert victim.read_text() == "precious\n"
    sidecar = next((inbox / "refused").glob("*-req.result.json"))
    assert not sidecar.is_symlink() and json.loads(sidecar.read_text())["outcome"] == "refused"
    assert mode(sidecar) == 0o640


def test_the_audit_log_refuses_a_link_and_has_its_own_mode(tmp_path: Path, permissive_umask: None) -> None:
    victim = tmp_path / "victim"
    victim.write_text("x")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "broadcast.log").symlink_to(victim)
    with pytest.raises(LinkRefused):
        AuditLog(tmp_path / "a" / "broadcast.log")
    assert victim.read_text() == "x"
    log = AuditLog(tmp_path / "b" / "broadcast.log")
    log.append("decision", {})
    log.close()
    assert mode(tmp_path / "b" / "broadcast.log") == 0o640
    assert mode(tmp_path / "b") == 0o750


def test_databases_refuse_links_and_have_their_own_mode(tmp_path: Path, permissive_umask: None) -> None:
    victim = tmp_path / "victim"
    victim.write_text("x")
    link = tmp_path / "replay.sqlite"
    link.symlink_to(victim)
    with pytest.raises(LinkRefused):
        prepare_database(link)
    (tmp_path / "j-wal").parent.mkdir(exist_ok=True)
    Path(f"{tmp_path / 'journal.sqlite'}-wal").symlink_to(victim)
    with pytest.raises(LinkRefused):
        Journal(tmp_path / "journal.sqlite", {}, JournalSettings())
    assert victim.read_text() == "x"
    cache = ReplayCache(tmp_path / "c" / "replay.sqlite", max_entries=100, max_clock_skew=1)
    cache.close()
    assert mode(tmp_path / "c" / "replay.sqlite") == 0o640
    journal = Journal(tmp_path / "d" / "journal.sqlite", {}, JournalSettings())
    journal.close()
    assert mode(tmp_path / "d" / "journal.sqlite") == 0o640
    assert all(mode(p) == 0o640 for p in (tmp_path / "d").glob("journal.sqlite*") if p.suffix != ".reserve")


def test_write_atomic_replaces_a_link_instead_of_writing_through_it(tmp_path: Path, permissive_umask: None) -> None:
    victim = tmp_path / "victim"
    victim.write_text("x")
    state = tmp_path / "satellite-budget.json"
    state.symlink_to(victim)
    write_atomic(state, b"[]")
    assert victim.read_text() == "x"
    assert not state.is_symlink() and state.read_bytes() == b"[]" and mode(state) == 0o640


@pytest.mark.timeout(20)
def test_a_planted_sidecar_name_does_not_hang_the_inbox(tmp_path: Path) -> None:
    """Before: ``_unique`` re-checked the first sidecar name forever once it existed (the inbox hung)."""
    inbox = tmp_path / "inbox"
    watcher = InboxWatcher(None, Subsystem(), inbox_dir=inbox)  # type: ignore[arg-type]
    for sub in ("work", "done", "refused"):
        (inbox / sub).mkdir(parents=True)
    now = dt.datetime.now(dt.UTC)
    for second in range(-2, 15):
        stamp = (now + dt.timedelta(seconds=second)).strftime("%Y%m%dT%H%M%SZ")
        (inbox / "refused" / f"{stamp}-req.result.json").write_text("planted")
    (inbox / "req.json").write_text("not json")
    os.utime(inbox / "req.json", (0, 0))
    outcomes = asyncio.run(asyncio.wait_for(watcher.scan_once(), 10))
    assert [o.outcome for o in outcomes] == ["refused"] and outcomes[0].moved_to is not None
    assert outcomes[0].moved_to.endswith("-req.1.json")
