"""When no audit log at all can be written (the card has failed and so has the RAM fallback):

* stopping an output never waits for the audit — a Cancel still switches the siren off (before: the
  Cancel's audit record raised first, and the siren sounded on until its maximum activation);
* a new activation is not taken without a record (the documented rule: a decision is audited
  before any output is driven);
* the daemon still starts, polls and raises ``audit_unavailable`` instead of failing at start
  (before: the temporary log's ``OSError`` ended ``Gateway.run``: a crash loop, nothing polled).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.alerts.audit import AuditLog, History, HistoryWanted
from gateway.alerts.model import Alert, MsgType, Status
from gateway.alerts.subsystem import BroadcastSubsystem
from gateway.app import Gateway
from gateway.config import load_site_text
from tests.unit.test_degraded_audit import SITE
from tests.unit.test_interlock_every_origin import Output, actual, config, signatures

pytestmark = pytest.mark.timeout(60)


class BreakableAudit:
    """A real audit log whose appends can be made to fail as a dead card's would."""

    def __init__(self, path: Path) -> None:
        self.log = AuditLog(path)
        self.broken = False

    def history(self, since: float, enough: HistoryWanted | None = None) -> History:
        return self.log.history(since, enough)

    async def record(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        if self.broken:
            raise OSError(5, "Input/output error")
        return await self.log.record(kind, data)

    def close(self) -> None:
        self.log.close()


class Speaker(Output):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.deactivations = 0

    async def deactivate(self) -> Any:
        self.deactivations += 1
        return await super().deactivate()


def test_a_cancel_stops_the_outputs_when_no_audit_log_can_be_written(tmp_path: Path) -> None:
    async def scenario() -> Speaker:
        cfg = config(tmp_path)
        audit = BreakableAudit(cfg.audit_path)
        pa = Speaker("pa")
        subsystem = BroadcastSubsystem(cfg, audit, {"pa": pa})
        alert = actual("a-1")
        await subsystem.handle(alert, origin="remote", signatures=signatures(alert, "zhang", "li"))
        assert pa.activations == ["a-1"]
        audit.broken = True
        await subsystem.cancel("a-1", "operator")
        cancel = Alert(identifier="c-1", sender="county", sent=alert.sent, status=Status.ACTUAL,
                       msg_type=MsgType.CANCEL, event="解除", references=("a-1",))
        await subsystem.handle(cancel, origin="remote", signatures=signatures(cancel, "zhang"))
        audit.close()
        return pa

    pa = asyncio.run(scenario())
    assert pa.deactivations == 2, "a Cancel waited for an audit log that could not be written"


def test_no_new_activation_without_an_audit_record(tmp_path: Path) -> None:
    async def scenario() -> Speaker:
        cfg = config(tmp_path)
        audit = BreakableAudit(cfg.audit_path)
        audit.broken = True
        pa = Speaker("pa")
        subsystem = BroadcastSubsystem(cfg, audit, {"pa": pa})
        alert = actual("a-2")
        with pytest.raises(OSError):
            await subsystem.handle(alert, origin="remote", signatures=signatures(alert, "zhang", "li"))
        audit.close()
        return pa

    assert asyncio.run(scenario()).activations == []


@pytest.mark.usefixtures("runtime_dir")
def test_the_daemon_runs_when_neither_audit_log_opens(tmp_path: Path) -> None:
    blocker = tmp_path / "audit"
    blocker.write_text("a file where the audit directory should be\n")
    site = load_site_text(SITE.format(state=tmp_path / "state", audit=blocker / "broadcast.log"), "site.yaml")
    gateway = Gateway(site)
    spare = gateway.degraded.spare_dir()
    spare.mkdir(parents=True, exist_ok=True)
    (spare / "audit").write_text("and a file where the temporary one should be\n")

    async def scenario() -> str:
        stop = asyncio.Event()
        run = asyncio.create_task(gateway.run(stop))
        await asyncio.wait_for(gateway.ready.wait(), 10)
        status = gateway.degraded.status_text() or ""
        stop.set()
        await asyncio.wait_for(run, 20)
        return status

    status = asyncio.run(scenario())
    assert "audit_unavailable" in status and "no audit log can be written" in status
