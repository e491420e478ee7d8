"""`fieldgate ...` run in this process: its exit code and what it printed, with no child process."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from unittest import mock

from gateway.cli import main


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def fieldgate(*args: str) -> Ran:
    """``fieldgate ARGS`` as the operator types it; an exception it lets out fails the test where it happens."""
    out, err = io.StringIO(), io.StringIO()
    # main() points the root logger at stderr, which would take pytest's log capture away from later tests.
    with mock.patch("gateway.cli.setup_logging"), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 1
    return Ran(code, out.getvalue(), err.getvalue())
