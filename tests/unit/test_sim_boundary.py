"""The virtual field (sim/) stays on its side: the daemon never imports it, it imports no test, the benchmarks
import no test module, and it ships in the wheel that `make demo` and the tools run from."""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(folder: str) -> Iterator[tuple[str, str]]:
    """(file relative to the repository, module) for every import in ``folder``'s Python files."""
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level
                     else [])
            for name in names:
                yield str(path.relative_to(ROOT)), name


def importing(folder: str, package: str) -> set[str]:
    return {path for path, module in imported_modules(folder) if module == package or module.startswith(package + ".")}


def test_the_daemon_never_imports_the_virtual_field() -> None:
    # The daemon and the drivers never import the virtual field (sim/demo.py, the developer tool, imports the gateway).
    assert importing("gateway", "sim") == set()
    assert importing("drivers", "sim") == set()


def test_the_virtual_field_and_the_benchmarks_import_no_test_module() -> None:
    assert importing("sim", "tests") == set()
    assert importing("bench", "tests") == set()


def test_the_virtual_field_ships_in_the_wheel() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "sim*" in project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert '"-m", "sim.modbus"' in (ROOT / "sim" / "demo.py").read_text()
