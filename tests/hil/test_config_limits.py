"""Hostile config files (issue #12): `fieldgate validate` in a child process under a 1 GiB address-space cap
refuses each in bounded time and memory (its own peak RSS). What the loader refuses, and where, is in
tests/unit/test_config_limits.py."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_config_limits import HOSTILE

pytestmark = pytest.mark.hil
ROOT = Path(__file__).resolve().parents[2]


# The child reports its own peak RSS: VmHWM belongs to the process image since exec, whereas
# ru_maxrss also keeps the high-water mark of the forked copy of this (large) pytest process.
CHILD = """
import sys
from gateway.cli import main
code = main(["validate", sys.argv[1]])
status = open("/proc/self/status").read().splitlines()
print("PEAK_RSS_KB", next(line.split()[1] for line in status if line.startswith("VmHWM:")), file=sys.stderr)
sys.exit(code)
"""


def _address_space_cap() -> None:
    # A safety net for the machine running the test (the bomb took 3.8 GB before): 1 GiB of address
    # space, far above the 100 MB the loader may use, far below what an unbounded expansion takes.
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


@pytest.mark.parametrize("name", ["alias-bomb", "recursive-alias", "deep-flow", "integer-100000-digits",
                                  "many-values"])
def test_fieldgate_validate_refuses_in_bounded_time_and_memory(name: str, tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(HOSTILE[name][0])
    run = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), preexec_fn=_address_space_cap,
                         timeout=120)  # "finished at all": a hang or an expansion would not
    assert run.returncode == 1, run.stderr[-2000:]
    lines = run.stderr.splitlines()
    assert "Traceback" not in run.stderr and lines[0].startswith(f"{path}:"), run.stderr[-2000:]
    assert "limit" in lines[0] or "recursive alias" in lines[0], lines[0]
    peak_kb = int(next(line for line in lines if line.startswith("PEAK_RSS_KB")).split()[1])
    assert peak_kb < 100 * 1024, f"validate peaked at {peak_kb // 1024} MB"
