"""The gateway under test as systemd would run it: ``fieldgate run CONFIG`` in a child process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "raspberrypi" / "fieldgate.service"


def unit_environment(unit: Path = UNIT) -> dict[str, str]:
    """The ``Environment=`` assignments of the systemd unit (PYTHONOPTIMIZE, ...): the daemon under test runs
    with what the box's service runs with. Only the unit's plain ``KEY=VALUE`` words (no quoting: it has none)."""
    env: dict[str, str] = {}
    for line in unit.read_text().splitlines():
        if line.startswith("Environment="):
            for word in line.removeprefix("Environment=").split():
                key, _, value = word.partition("=")
                env[key] = value
    return env


class GatewayProcess:
    """`fieldgate run CONFIG` as a real child process (what systemd would run)."""

    def __init__(self, config_path: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.env = env or {}  # on top of ours (e.g. libfaketime for the daemon only: sim/faketime.py)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> GatewayProcess:
        env = dict(os.environ, **unit_environment(), PYTHONPATH=str(ROOT))
        env.update(self.env)
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", str(self.config_path)],
                                     cwd=ROOT, env=env, stdout=log, stderr=log)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"gateway did not stop within {timeout}s; log:\n{self.log()}") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]
