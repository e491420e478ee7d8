"""An active alarm outlives a restart and a reload: same id, cleared once; an alarm whose rule a reload removed
is cleared upstream with a reason (gateway/rules/continuity.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway
from gateway.config import load_site_text
from gateway.daemon import carried_rules
from gateway.shared import Quality, Reading, RecordClass

pytestmark = pytest.mark.usefixtures("runtime_dir")

SITE = """
gateway: {{id: cont-gw, state_dir: {state}}}
links:
  - {{type: mqtt, name: county, host: 127.0.0.1, port: 9, reconnect_min: 5, reconnect_max: 5}}
rules:
{rules}
"""
DANGER = "  - {type: threshold, id: level.danger, point: dam.level, above: %s}"


def site(tmp: Path, rules: str) -> Any:
    return load_site_text(SITE.format(state=tmp / "state", rules=rules or "  []"), "site.yaml")


def run(gateway: Gateway, *levels: float) -> list[dict[str, Any]]:
    """Start, feed the levels, stop; the alarm records the journal holds afterwards (nothing was delivered)."""

    async def scenario() -> list[dict[str, Any]]:
        stop = asyncio.Event()
        task = asyncio.create_task(gateway.run(stop))
        await asyncio.wait_for(gateway.ready.wait(), 10)
        for i, level in enumerate(levels):
            await gateway.datapath.ingest([Reading("dam.level", level, Quality.GOOD, 1000.0 + i)])
        owed = await gateway.journal.call(gateway.journal.journal.owed, "county", RecordClass.ALARM, 0, 2**62, 100)
        stop.set()
        await asyncio.wait_for(task, 20)
        return [r.body for r in owed if r.body.get("kind") == "alarm"]

    return asyncio.run(scenario())


def episodes(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["alarm_id"], r["transition"]) for r in records]


def test_restart_resumes_the_active_alarm_under_its_id(tmp_path: Path) -> None:
    config = site(tmp_path, DANGER % 150)
    first = run(Gateway(config), 151.0)
    [(alarm_id, _)] = episodes(first)
    after = run(Gateway(config), 152.0, 140.0)  # today: raised again under a new id, the old one never cleared
    assert episodes(after) == [(alarm_id, "raised"), (alarm_id, "cleared")]  # the raise is still undelivered


def test_reload_that_changes_the_rule_keeps_the_alarm(tmp_path: Path) -> None:
    before = Gateway(site(tmp_path, DANGER % 150))
    [(alarm_id, _)] = episodes(run(before, 151.0))
    changed = site(tmp_path, DANGER % 145)
    assert carried_rules(before, changed) is None  # a changed rule set starts a fresh engine
    after = run(Gateway(changed, rules=carried_rules(before, changed)), 146.0, 140.0)
    assert episodes(after) == [(alarm_id, "raised"), (alarm_id, "cleared")]


def test_reload_that_removes_the_rule_clears_its_alarm_with_a_reason(tmp_path: Path) -> None:
    [(alarm_id, _)] = episodes(run(Gateway(site(tmp_path, DANGER % 150)), 151.0))
    after = run(Gateway(site(tmp_path, "")), 151.0)
    assert episodes(after) == [(alarm_id, "raised"), (alarm_id, "cleared")]
    assert after[-1]["reason"] == "rule removed from the configuration"
    assert run(Gateway(site(tmp_path, "")), 151.0) == after  # cleared once, not at every start


def test_transition_not_committed_before_a_crash_is_committed_at_the_next_start(tmp_path: Path) -> None:
    config = site(tmp_path, DANGER % 150)
    gateway = Gateway(config)

    async def refuse(*_args: object) -> int:
        raise OSError("disk I/O error")

    gateway.journal.append_now = refuse  # type: ignore[method-assign]
    assert run(gateway, 151.0) == []  # the raise could not be journalled (the siren was not held up)
    after = run(Gateway(config))
    assert [r["transition"] for r in after] == ["raised"]
