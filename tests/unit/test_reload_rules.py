"""A reload that keeps the rules keeps their state; one that changes them starts afresh."""

from __future__ import annotations

from pathlib import Path

from gateway.app import Gateway
from gateway.config import load_site_text
from gateway.daemon import carried_rules
from gateway.shared import Quality, Reading

SITE = """
gateway: {{id: gw, state_dir: {state}}}
rules:
  - {{type: threshold, id: level.danger, point: dam.level, above: {above}}}
"""


def test_unchanged_rules_keep_their_active_alarm(tmp_path: Path) -> None:
    before = Gateway(load_site_text(SITE.format(state=tmp_path, above=152.0)))
    raised = before.rules.evaluate(Reading("dam.level", 153.0, Quality.GOOD, 1000.0))
    assert [t.kind.value for t in raised] == ["raised"]
    same = load_site_text(SITE.format(state=tmp_path, above=152.0))
    after = Gateway(same, rules=carried_rules(before, same))
    assert after.rules is before.rules
    assert after.rules.evaluate(Reading("dam.level", 153.5, Quality.GOOD, 1001.0)) == []  # not raised again
    changed = load_site_text(SITE.format(state=tmp_path, above=150.0))
    assert carried_rules(before, changed) is None
