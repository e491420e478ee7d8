"""The alarm book's spare (its copy in RAM while the state disk cannot be written) must never outlive the real
book's recovery in a way that brings back a stale active set (issue 14, continuity; found by `bench/soak.py
--seed 11`: a disk-full spare written while the clock was ahead beat the newer real book at the next start, an
alarm was cleared twice upstream and another never)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gateway.rules import continuity
from gateway.rules.continuity import AlarmBook


def _active(rule: str) -> list[dict[str, object]]:
    return [{"rule": rule, "alarm_id": f"{rule}-1", "severity": "severe", "class": "alarm"}]


def test_the_book_written_last_wins_whatever_the_clock_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "state"
    state.write_text("a file where the state directory should be: the real book cannot be written")
    book = AlarmBook(state / "alarms.json", tmp_path / "shm" / "alarms.json")
    true_time = time.time
    monkeypatch.setattr(continuity.time, "time", lambda: true_time() + 3600.0)  # the clock an hour ahead

    async def scenario() -> None:
        await book.pending(_active("level.danger"), {"alarm_id": "level.danger-1", "event": "raised"})
        assert book.spare is not None and book.spare.exists() and not book.path.exists()
        state.unlink()  # space again: the real book can be written
        monkeypatch.setattr(continuity.time, "time", true_time)  # NTP sets the clock back
        await book.pending(_active("rain.heavy"), {"alarm_id": "rain.heavy-1", "event": "raised"})

    asyncio.run(scenario())
    assert book.path.exists()
    loaded = AlarmBook(book.path, book.spare).load()  # the next start
    assert set(loaded.rules) == {"rain.heavy"}, "a stale spare beat the real book written after it"


def test_the_spare_goes_once_the_real_book_is_written(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("not a directory")
    book = AlarmBook(state / "alarms.json", tmp_path / "shm" / "alarms.json")

    async def scenario() -> None:
        await book.pending(_active("level.danger"), {"alarm_id": "level.danger-1", "event": "raised"})
        assert book.spare is not None and book.spare.exists()
        state.unlink()
        await book.committed(1)

    asyncio.run(scenario())
    assert book.path.exists() and book.spare is not None and not book.spare.exists()
