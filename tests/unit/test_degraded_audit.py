"""An audit log that cannot be opened does not stop the site: broadcast decisions are audited to a temporary
log, an ``audit_unavailable`` fault alarm goes upstream, and the temporary records join the real chain later."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gateway.alerts.audit import verify_chain
from gateway.alerts.fallback import ResilientAudit
from gateway.app import Gateway
from gateway.config import load_site_text
from gateway.shared import RecordClass

SITE = """
gateway: {{id: aud-gw, state_dir: {state}}}
links:
  - {{type: mqtt, name: county, host: 127.0.0.1, port: 9, reconnect_min: 5, reconnect_max: 5}}
broadcast:
  audit_path: {audit}
  outputs:
    siren1: {{type: modbus_relay_siren, board: {{host: 127.0.0.1, port: 9, device_id: 3}}, coil: 4}}
  zones: {{valley: {{outputs: [siren1]}}}}
  clips: {{ex: {{file: /c/ex.wav}}, test: {{file: /c/test.wav}}, clear: {{file: /c/clear.wav}}}}
  patterns: {{flood: {{steps: [[2, 1]]}}, drill: {{steps: [[1, 2]]}}}}
  status_patterns: {{actual: flood, exercise: drill}}
  announce: {{exercise: ex, test: test}}
  all_clear_clip: clear
"""


pytestmark = pytest.mark.usefixtures("runtime_dir")  # tests/unit/conftest.py: temporary files here


def test_audit_log_that_cannot_be_opened_audits_to_ram_then_merges(tmp_path: Path) -> None:
    blocker = tmp_path / "audit"
    blocker.write_text("a file where the audit directory should be\n")
    audit_path = blocker / "broadcast.log"
    site = load_site_text(SITE.format(state=tmp_path / "state", audit=audit_path), "site.yaml")
    gateway = Gateway(site)

    async def scenario() -> list[dict[str, object]]:
        gateway.degraded.RETRY_FIRST = 0.2
        stop = asyncio.Event()
        run = asyncio.create_task(gateway.run(stop))  # today: FileExistsError from the audit log, nothing runs
        await asyncio.wait_for(gateway.ready.wait(), 10)
        assert "audit_unavailable" in (gateway.degraded.status_text() or "")
        assert gateway.broadcast is not None
        await gateway.broadcast.selftest()  # acts on the outputs: audited somewhere
        blocker.unlink()
        for _ in range(200):
            if not gateway.degraded.problems:
                break
            await asyncio.sleep(0.05)
        owed = await gateway.journal.call(gateway.journal.journal.owed, "county", RecordClass.ALARM, 0, 2**62, 50)
        stop.set()
        await asyncio.wait_for(run, 20)
        return [r.body for r in owed]

    alarms = asyncio.run(scenario())
    faults = [a for a in alarms if a.get("type") == "audit_unavailable"]
    assert [f["transition"] for f in faults] == ["raised", "cleared"]
    records = [json.loads(line) for line in audit_path.read_bytes().splitlines()]
    kinds = [r["kind"] for r in records]
    assert "fallback_record" in kinds and kinds[-1] == "fallback_merged"
    merged = [r["data"]["record"]["kind"] for r in records if r["kind"] == "fallback_record"]
    assert "output" in merged  # the selftest's output results, audited while degraded
    assert verify_chain(audit_path).ok


def test_audit_append_failure_switches_to_the_temporary_log(tmp_path: Path) -> None:
    audit = ResilientAudit(tmp_path / "audit" / "broadcast.log", tmp_path / "spare" / "broadcast.log")
    audit.append("decision", {"n": 1})
    audit._log._file.close()
    audit._log._file = open("/dev/full", "ab")  # noqa: SIM115 - the card is full: every write fails with ENOSPC
    entry = audit.append("decision", {"n": 2})  # not raised: audited in the temporary log
    assert audit.degraded and entry["data"]["n"] == 2
    assert (tmp_path / "spare" / "broadcast.log").exists()
    assert audit.retry()
    kinds = [json.loads(line)["kind"] for line in (tmp_path / "audit" / "broadcast.log").read_bytes().splitlines()]
    assert kinds == ["decision", "fallback_record", "fallback_merged"]
