"""`fieldgate rules test CONFIG --replay series.csv` (wired into gateway/cli.py by ``add_subcommands``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.config.yamlmarks import ConfigSyntaxError, load_marked
from gateway.rules.config import RulesConfig
from gateway.rules.replay import ReplayError, replay


def load_sections(path: Path) -> dict[str, Any]:
    try:
        data = load_marked(path).data
    except ConfigSyntaxError as exc:
        raise ValueError(str(exc)) from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return data


def auto_broadcast_plan(broadcast: Any) -> dict[str, str]:
    """rule id -> 'zones/status' for rules the site plan lets trigger automatically."""
    if not isinstance(broadcast, dict):
        return {}
    plan: dict[str, str] = {}
    for entry in broadcast.get("automatic", []) or []:
        if isinstance(entry, dict) and "rule" in entry:
            plan[str(entry["rule"])] = f"zones {entry.get('zones')} event {entry.get('event', '')}".strip()
    return plan


def _cmd_test(args: argparse.Namespace) -> int:
    try:
        sections = load_sections(Path(args.config))
        rules = RulesConfig.model_validate(sections.get("rules") or [])
        lines = replay(rules, Path(args.replay), auto_broadcast_plan(sections.get("broadcast")))
    except (OSError, ValueError, ReplayError) as exc:
        # ValidationError is a ValueError: pydantic's message names the rule and field.
        kind = "invalid rules" if isinstance(exc, ValidationError) else "error"
        print(f"{kind}: {exc}", file=sys.stderr)
        return 2
    for line in lines:
        print(line)
    return 0


def add_subcommands(subparsers: Any) -> None:
    """Adds ``rules test``. Each leaf sets ``handler``: a function (args) -> exit code."""
    rules = subparsers.add_parser("rules", help="local alarm rules")
    sub = rules.add_subparsers(dest="rules_command", required=True)
    test = sub.add_parser("test", help="replay a recorded series through a site's rules")
    test.add_argument("config", help="site YAML with a rules: section")
    test.add_argument("--replay", required=True, metavar="CSV", help="time,point,value[,quality][,confirmed]")
    test.set_defaults(handler=_cmd_test)
