"""The import rules of docs/architecture.md, checked on the source (an AST walk: no import-linter dependency,
and the rule for drivers needs the list of contract modules below, which is easier to state here than in its
configuration).

1. The core names drivers in two places only: gateway/registry.py (the table of drivers) and
   gateway/config/site.py (the site config).
2. A driver imports from the core only contract modules, and those import nothing else from the core, so a
   driver never drags the daemon in. (Importing ``gateway.profiles.options`` runs ``gateway/profiles/__init__``,
   which imports the profiles; none of them imports a driver.)
3. No import cycles among gateway modules.

Every import counts: at module level, inside functions and under ``if TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

MAY_IMPORT_DRIVERS = {"gateway.registry", "gateway.config.site"}
CONTRACTS = {
    "gateway.shared",  # readings, record classes, the config base model and field types
    "gateway.contracts",  # what the core uses of a bus, a link, a satellite link, a camera, an inference backend
    "gateway.alerts.contract",  # the broadcast contract: Activation, OutputResult, BroadcastOutput
    "gateway.vision.config",  # what a camera section configures of the vision pipeline
    "gateway.profiles.options",  # payload-profile settings configured on an MQTT link
    "gateway.credentials",  # secrets as files or systemd credentials
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules(*packages: str) -> dict[str, Path]:
    return {module_name(p): p for package in packages for p in sorted((ROOT / package).rglob("*.py"))}


MODULES = all_modules("gateway", "drivers")


def imports(module: str) -> set[str]:
    """Every module ``module`` imports (``from a import b`` counts as ``a.b`` when that is a module)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return found


def within(names: set[str], top: str) -> set[str]:
    return {n for n in names if n == top or n.startswith(top + ".")}


def test_only_the_registry_and_the_site_config_import_drivers() -> None:
    offenders = {m: sorted(within(imports(m), "drivers")) for m in MODULES
                 if m.startswith("gateway") and m not in MAY_IMPORT_DRIVERS and within(imports(m), "drivers")}
    assert offenders == {}, f"core modules that name drivers (add a row to gateway/registry.py instead): {offenders}"


def test_drivers_import_only_contract_modules_of_the_core() -> None:
    offenders = {m: sorted(within(imports(m), "gateway") - CONTRACTS) for m in MODULES
                 if m.startswith("drivers") and within(imports(m), "gateway") - CONTRACTS}
    assert offenders == {}, f"drivers importing core modules that are not contracts: {offenders}"


def test_the_daemon_never_imports_the_centre_programs() -> None:
    """centre/ (sat-centre, sl651-centre) runs beside the platform; only the command line adds its subcommands."""
    offenders = {m: sorted(within(imports(m), "centre")) for m in MODULES
                 if m != "gateway.cli" and within(imports(m), "centre")}
    assert offenders == {}, offenders


def test_contract_modules_import_only_contract_modules() -> None:
    assert set(MODULES) >= CONTRACTS
    offenders = {m: sorted(within(imports(m), "gateway") - CONTRACTS) for m in CONTRACTS
                 if within(imports(m), "gateway") - CONTRACTS}
    assert offenders == {}, offenders
    assert not any(within(imports(m), "drivers") for m in CONTRACTS)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_among_gateway_modules() -> None:
    graph = {m: {n for n in within(imports(m), "gateway") if n in MODULES and n != m}
             for m in MODULES if m.startswith("gateway")}
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
