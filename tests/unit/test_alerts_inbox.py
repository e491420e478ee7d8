"""The alert inbox never crashes on garbage, takes only complete files, and stays bounded."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.alerts.audit import AuditLog
from gateway.alerts.config import BroadcastConfig
from gateway.alerts.inbox import InboxLimits, InboxOutcome, InboxWatcher, RequestRefused, submit
from gateway.alerts.subsystem import BroadcastSubsystem

GOOD_ALERT = {"identifier": "op.1", "sender": "console", "sent": "2026-05-12T02:00:00+00:00", "status": "Actual",
              "event": "洪水预警", "areas": ["dam"], "expires": "2026-05-12T03:00:00+00:00"}


class Box:
    """A real subsystem (no outputs) behind a real watcher, on a temporary inbox."""

    def __init__(self, tmp: Path, **limits: Any) -> None:
        self.inbox = tmp / "inbox"
        self.config = BroadcastConfig.model_validate({"audit_path": str(tmp / "audit.log"),
                                                      "inbox_dir": str(self.inbox)})
        self.audit = AuditLog(self.config.audit_path)
        self.evidence: list[dict[str, Any]] = []
        self.subsystem = BroadcastSubsystem(self.config, self.audit, {}, on_evidence=self._evidence)
        self.now = time.time() + 60  # files written now are already "settled"
        self.watcher = InboxWatcher(self.config, self.subsystem, limits=InboxLimits(**limits),
                                    clock=lambda: self.now)
        self.inbox.mkdir(parents=True)

    async def _evidence(self, record: dict[str, Any]) -> None:
        self.evidence.append(record)

    def drop(self, name: str, content: bytes | str) -> Path:
        path = self.inbox / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path

    def scan(self) -> list[InboxOutcome]:
        return asyncio.run(self.watcher.scan_once())

    def sidecar(self, outcome: InboxOutcome) -> dict[str, Any]:
        assert outcome.moved_to is not None
        data: dict[str, Any] = json.loads(Path(outcome.moved_to[: -len(".json")] + ".result.json").read_text())
        return data


@pytest.mark.parametrize(("content", "reason"), [
    (b"{not json", "not UTF-8 JSON"),
    (b"\xff\xfe\x00garbage", "not UTF-8 JSON"),
    ("[1, 2]", "not an alert request"),
    ('{"signatures": []}', "not an alert request"),
    (json.dumps({"alert": GOOD_ALERT, "signatures": "x"}), "signatures must be a list"),
    (json.dumps({"alert": GOOD_ALERT, "signatures": [{}] * 9}), "at most 8"),
    (json.dumps({"alert": {**GOOD_ALERT, "status": "Panic"}, "signatures": []}), "invalid request"),
    (json.dumps({"alert": GOOD_ALERT, "signatures": [{"operator": "x"}]}), "invalid request"),
])
def test_garbage_is_refused_with_a_reason(tmp_path: Path, content: bytes | str, reason: str) -> None:
    box = Box(tmp_path)
    box.drop("req.json", content)
    [outcome] = box.scan()
    assert outcome.outcome == "refused" and reason in outcome.reason
    assert not (box.inbox / "req.json").exists() and not list((box.inbox / "work").iterdir())
    side = box.sidecar(outcome)
    assert side["file"] == "req.json" and side["outcome"] == "refused" and reason in side["reason"]
    assert [e["type"] for e in box.evidence] == ["broadcast_inbox"]  # audited, sent upstream


def test_a_well_formed_unsigned_actual_alert_reaches_the_interlock_and_is_refused(tmp_path: Path) -> None:
    box = Box(tmp_path)
    box.drop("req.json", json.dumps({"alert": GOOD_ALERT, "signatures": []}))
    [outcome] = box.scan()
    assert outcome.outcome == "refused" and outcome.alert_id == "op.1"
    assert [e["type"] for e in box.evidence] == ["broadcast_decision", "broadcast_inbox"]


def test_oversized_symlinked_hidden_and_other_files(tmp_path: Path) -> None:
    box = Box(tmp_path, max_file_bytes=100)
    box.drop("big.json", "x" * 101)
    os.symlink("/etc/passwd", box.inbox / "link.json")
    box.drop(".half.json.part", "{")
    box.drop("notes.txt", "hello")
    by_file = {o.file: o for o in box.scan()}
    assert set(by_file) == {"big.json", "link.json"}
    assert "more than 100" in by_file["big.json"].reason
    assert "not a regular file" in by_file["link.json"].reason
    assert (box.inbox / ".half.json.part").exists() and (box.inbox / "notes.txt").exists()
    assert Path("/etc/passwd").exists()  # the link itself was moved, not its target


def test_a_file_still_being_copied_is_left_until_it_settles(tmp_path: Path) -> None:
    box = Box(tmp_path, settle_s=2.0)
    path = box.drop("req.json", '{"alert": {"identif')
    box.now = path.stat().st_mtime + 0.5
    assert box.scan() == [] and path.exists()
    box.now = path.stat().st_mtime + 5
    [outcome] = box.scan()
    assert outcome.outcome == "refused" and "not UTF-8 JSON" in outcome.reason


def test_bounded_per_scan_and_kept_files_pruned(tmp_path: Path) -> None:
    box = Box(tmp_path, max_files_per_scan=4, keep=3)
    for i in range(10):
        path = box.drop(f"r{i:02}.json", "garbage")
        os.utime(path, (box.now - 100 + i, box.now - 100 + i))  # oldest first
    assert [o.file for o in box.scan()] == ["r00.json", "r01.json", "r02.json", "r03.json"]
    assert len(list(box.inbox.glob("*.json"))) == 6
    box.scan()
    box.scan()
    refused = sorted(p.name for p in (box.inbox / "refused").iterdir())
    assert len([n for n in refused if not n.endswith(".result.json")]) == 3
    assert len([n for n in refused if n.endswith(".result.json")]) == 3


def test_a_request_interrupted_by_a_restart_is_refused_not_replayed(tmp_path: Path) -> None:
    box = Box(tmp_path)
    (box.inbox / "work").mkdir()
    (box.inbox / "work" / "req.json").write_text(json.dumps({"alert": GOOD_ALERT, "signatures": []}))
    [outcome] = box.scan()
    assert outcome.outcome == "refused" and "interrupted" in outcome.reason
    assert [e["type"] for e in box.evidence] == ["broadcast_inbox"]  # never reached the interlock


def test_submit_is_atomic_and_refuses_garbage(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    request = tmp_path / "req.json"
    request.write_text(json.dumps({"alert": GOOD_ALERT, "signatures": []}))
    first, second = submit(request, inbox), submit(request, inbox)
    assert (first.name, second.name) == ("req.json", "req.1.json")
    assert sorted(p.name for p in inbox.iterdir()) == ["req.1.json", "req.json"]  # no .part left
    request.write_text("{")
    with pytest.raises(RequestRefused):
        submit(request, inbox)
