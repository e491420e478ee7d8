"""Unit tests run in this process only: a unit test that starts another program (a broker, socat, espeak-ng,
bash, `python -m gateway.cli`) fails where it starts it. Tests of real programs live in tests/hil/.

An audit hook sees every process Python starts (subprocess, asyncio subprocesses, os.system, posix_spawn,
exec). The gateway's own vision worker (multiprocessing) is the unit under test there and is not refused.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

STARTS_A_PROCESS = frozenset({"subprocess.Popen", "os.system", "os.posix_spawn", "os.exec", "os.spawn"})
UNIT = Path(__file__).resolve().parent
_running: list[str] = []  # the unit test running now, if any


def _refuse_processes(event: str, args: tuple[Any, ...]) -> None:
    if _running and event in STARTS_A_PROCESS:
        raise RuntimeError(f"{_running[0]} started a process ({event}: {str(args[:2])[:200]}); unit tests run in "
                           "this process only, tests of real programs belong in tests/hil/")


sys.addaudithook(_refuse_processes)  # an audit hook cannot be removed: it acts only while a unit test runs


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    # Called for every test of the session, wherever its conftest is: act on the ones in this folder.
    if UNIT in item.path.parents:
        _running.append(item.nodeid)
    try:
        yield
    finally:
        _running.clear()


@pytest.fixture
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """$RUNTIME_DIRECTORY of the test: where the daemon's temporary journal and audit log go when degraded."""
    run = tmp_path / "run"
    run.mkdir()
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(run))
    return run
