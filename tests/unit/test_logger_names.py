"""Every logger in gateway/, drivers/ and sim/ follows the one naming scheme in docs/logging.md.

An AST scan, so it sees every ``getLogger`` call whatever it is bound to: the argument is a
string literal listed in the document's table (never ``__name__`` or a computed name), or a
library's logger that is only quietened; and every name in the table is in use.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("gateway", "drivers", "sim", "centre")
SCHEME = re.compile(r"^fieldgate(\.[a-z0-9_]+){0,2}$")
LIBRARIES = {"pymodbus", "asyncio", "fontTools"}  # third-party loggers we only set a level on
ROOT_LOGGER_ALLOWED = {"gateway/logsetup.py"}  # configures the root logger's handlers


def documented() -> set[str]:
    text = (ROOT / "docs" / "logging.md").read_text()
    return set(re.findall(r"^\| `(fieldgate[a-z0-9_.]*)` \|", text, re.MULTILINE))


def calls() -> list[tuple[str, int, ast.Call]]:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    func = node.func
                    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                    if name == "getLogger":
                        found.append((str(path.relative_to(ROOT)), node.lineno, node))
    return found


def test_every_logger_is_named_by_the_scheme_and_documented() -> None:
    names = documented()
    wrong = []
    for where, line, call in calls():
        if not call.args and not call.keywords:
            if where not in ROOT_LOGGER_ALLOWED:
                wrong.append(f"{where}:{line}: the root logger; name one from docs/logging.md")
            continue
        arg = call.args[0] if call.args else None
        literal = isinstance(arg, ast.Constant) and isinstance(arg.value, str)
        if not literal or len(call.args) + len(call.keywords) != 1:
            wrong.append(f"{where}:{line}: {ast.unparse(call)}: not one literal name")
            continue
        assert isinstance(arg, ast.Constant)
        name = arg.value
        if name in LIBRARIES:
            continue
        if not SCHEME.match(name):
            wrong.append(f"{where}:{line}: '{name}' does not follow fieldgate.<area>[.<part>]")
        elif name not in names:
            wrong.append(f"{where}:{line}: '{name}' is not in the table in docs/logging.md")
    assert not wrong, "\n".join(wrong)


def test_every_documented_logger_is_in_use() -> None:
    used = {call.args[0].value for _, _, call in calls()
            if call.args and isinstance(call.args[0], ast.Constant)}
    assert documented() - used == set(), "docs/logging.md lists loggers no code uses"


def test_the_scan_sees_the_known_loggers() -> None:
    # Guards the scan itself: a parser change that found nothing would make the first test pass vacuously.
    assert len(calls()) > 30
    assert {"fieldgate", "fieldgate.journal", "fieldgate.modbus"} <= documented()
