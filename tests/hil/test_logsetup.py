"""Logging setup in a real daemon process: JOURNAL_STREAM inherited but stderr redirected means plain lines on
stderr, not journald (the formats and the detection in-process are in tests/unit/test_logsetup.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.hil
REPO = Path(__file__).resolve().parents[2]


def test_daemon_process_logs_plain_lines_to_stderr() -> None:
    # A real process with JOURNAL_STREAM inherited but stderr redirected: must not use journald.
    code = (
        "import logging; from gateway.logsetup import setup_logging;"
        "print(setup_logging());"
        "logging.getLogger('gateway.app').info('ready', extra={'device': 'plc-1'})"
    )
    env = {**os.environ, "JOURNAL_STREAM": "1:1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "stderr"
    assert done.stderr.splitlines() == ["INFO gateway.app: ready device=plc-1"]
