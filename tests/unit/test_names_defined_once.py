"""Record-class and payload-profile names are spelled once (gateway/shared.py) and used from there.

``RecordClassName`` / ``PayloadProfileName`` are the Literals config models validate against;
these tests keep them in step with ``RecordClass`` and the profile classes, and an AST scan fails
on a second hand-written list of the names anywhere in gateway/, drivers/ or sim/.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args

import pytest

from drivers.mqtt.config import MqttLinkConfig
from gateway.profiles import PROFILES, FieldgateSessionProfile, ThingsboardProfile, get_profile
from gateway.shared import RECORD_CLASS_NAMES, PayloadProfileName, RecordClass, RecordClassName

ROOT = Path(__file__).resolve().parents[2]
DEFINED_IN = ROOT / "gateway" / "shared.py"


def test_record_class_names_are_the_enum_names_in_priority_order() -> None:
    assert get_args(RecordClassName) == RECORD_CLASS_NAMES
    assert tuple(cls.name.lower() for cls in RecordClass) == RECORD_CLASS_NAMES
    for cls in RecordClass:
        assert RecordClass.named(cls.label) is cls


@pytest.mark.parametrize("label", ["ALARM", "alarms", "", "Telemetry"])
def test_only_the_lower_case_names_name_a_class(label: str) -> None:
    with pytest.raises(KeyError):
        RecordClass.named(label)


def test_every_profile_name_has_a_profile_and_no_more() -> None:
    assert get_args(PayloadProfileName) == PROFILES
    assert set(PROFILES) == {FieldgateSessionProfile.name, ThingsboardProfile.name}
    for name in PROFILES:
        config = MqttLinkConfig.model_validate({"type": "mqtt", "name": "up", "host": "broker", "profile": name})
        assert get_profile(config.profile, "gw-1", config).name == name


def _strings(node: ast.AST) -> set[str]:
    parts = node.elts if isinstance(node, ast.Tuple | ast.List | ast.Set) else []
    if isinstance(node, ast.Dict):
        parts = [key for key in node.keys if key is not None] + list(node.values)
    return {p.value for p in parts if isinstance(p, ast.Constant) and isinstance(p.value, str)}


def test_no_second_list_of_the_names() -> None:
    classes, profiles = set(RECORD_CLASS_NAMES), set(PROFILES)
    found = []
    for package in ("gateway", "drivers", "sim", "centre"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == DEFINED_IN:
                continue
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                strings = _strings(node)  # a list, set, dict, or the tuple inside Literal[...]
                # A list *of* the names: mostly class names (a dict of page words that happens to have
                # "alarm", "event" and "state" among fifty others is not one).
                named = strings & classes
                if (len(named) >= 3 and len(strings - classes) <= len(named) // 2) or strings >= profiles:
                    found.append(f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}: {sorted(strings)}")
    assert not found, "spell the names through gateway.shared instead:\n" + "\n".join(found)
