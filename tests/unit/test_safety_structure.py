"""The structure the safety case rests on (docs/safety-case.md, claim S1), checked in the code itself.

The outputs that can alert the public are built in one place and driven from one place: the broadcast
subsystem, whose only way to an output is the interlock's decision. A new path added anywhere else
(a command, a status-page action, a driver) fails here and must be argued for in the safety case.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def calls(folder: str, name: str) -> Iterator[tuple[str, ast.Call]]:
    """Every call ``x.<name>(...)`` or ``<name>(...)`` in the Python files below ``folder``."""
    for path in sorted((ROOT / folder).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if called == name:
                    yield str(path.relative_to(ROOT)), node


def test_outputs_are_activated_only_by_the_broadcast_subsystem() -> None:
    places = {path for path, _ in calls("gateway", "activate")}
    assert places == {"gateway/alerts/subsystem.py"}, f"activate() of an output called from {places}"


def test_outputs_are_built_only_by_the_daemon() -> None:
    places = {path for path, _ in calls("gateway", "build_outputs")}
    assert places == {"gateway/app.py"}, places


def test_the_subsystem_is_always_told_the_origin_by_its_caller() -> None:
    origins = {}
    for path, call in calls("gateway", "handle"):
        keywords = {k.arg: k.value for k in call.keywords}
        if "origin" not in keywords and path != "gateway/alerts/subsystem.py":
            continue  # another object's handle() (e.g. a link); the subsystem's has origin keyword-only
        origin = keywords.get("origin")
        assert isinstance(origin, ast.Constant), f"{path}: handle() with an origin that is not a literal"
        origins[path] = origin.value
    assert origins == {"gateway/alerts/subsystem.py": "rule", "gateway/alerts/inbox.py": "manual",
                       "gateway/control.py": "remote", "gateway/commission/checks.py": "manual"}, origins


def test_bus_writes_come_only_from_the_guarded_command_and_the_relay_boards() -> None:
    places = {path for path, _ in calls("gateway", "write_point")} | {
        path for path, _ in calls("drivers", "write_point")}
    # gateway/control.py refuses points of relay boards (point_owners); drivers/broadcast/busboard.py is the
    # relay boards' own route; the command dispatch only names control's method.
    assert places <= {"gateway/control.py", "gateway/commands/dispatch.py", "drivers/broadcast/busboard.py"}, places
