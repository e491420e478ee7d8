"""Shutdown turns every output off: one output that fails or hangs in close() must not leave
another (a siren) on, nor stop the daemon's stop path."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.alerts.audit import AuditLog
from gateway.alerts.config import BroadcastConfig
from gateway.alerts.contract import Activation, OutputResult, ReportsInResults
from gateway.alerts.subsystem import BroadcastSubsystem

pytestmark = pytest.mark.timeout(60)


class Output(ReportsInResults):
    kind = "siren"
    outdoor = True

    def __init__(self, name: str, on_close: str = "ok") -> None:
        self.name = name
        self.on_close = on_close
        self.closed = False

    async def prepare(self, activation: Activation) -> OutputResult:
        return OutputResult(self.name, "prepare", True)

    async def activate(self, activation: Activation) -> OutputResult:
        return OutputResult(self.name, "activate", True)

    async def deactivate(self) -> OutputResult:
        return OutputResult(self.name, "deactivate", True)

    async def selftest(self) -> OutputResult:
        return OutputResult(self.name, "selftest", True)

    def status(self) -> dict[str, Any]:
        return {}

    async def close(self) -> None:
        if self.on_close == "raise":
            raise OSError("amplifier GPIO gone")
        if self.on_close == "hang":
            await asyncio.Event().wait()
        self.closed = True


@pytest.mark.parametrize("first", ["raise", "hang"])
def test_every_output_is_closed_when_one_fails_or_hangs(tmp_path: Path, first: str) -> None:
    async def scenario() -> bool:
        config = BroadcastConfig.model_validate({"audit_path": str(tmp_path / "audit.log"), "output_timeout": 0.5})
        audit = AuditLog(config.audit_path)
        bad, siren = Output("pa", on_close=first), Output("siren")
        subsystem = BroadcastSubsystem(config, audit, {"pa": bad, "siren": siren})
        try:
            await asyncio.wait_for(subsystem.close(), 10.0)  # a hang guard, not a performance figure
        finally:
            audit.close()
        return siren.closed

    assert asyncio.run(scenario()), "the siren after a failing output was never switched off"
