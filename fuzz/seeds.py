"""Where harnesses find their seeds: the public vectors beside the repository, and its test cases.

Light on purpose (no gateway/drivers imports): under atheris, the parser modules must be
imported first inside the instrumentation block, which only instruments modules not yet loaded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
VECTORS = REPO.parent / "shared" / "vectors"  # ../shared/vectors, next to the repository
CASES = REPO / "tests" / "cases"


def vectors(name: str) -> dict[str, Any]:
    """``../shared/vectors/<name>`` as JSON, or {} when the vectors are not beside this checkout
    (a harness then falls back to its built-in seeds)."""
    path = VECTORS / name
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data


def case_folders() -> list[Path]:
    """The decoding cases of tests/cases/ that describe a working site (not the config-error ones)."""
    if not CASES.is_dir():
        return []
    return sorted(p for p in CASES.iterdir() if (p / "registers.yaml").is_file() and (p / "site.yaml").is_file())
