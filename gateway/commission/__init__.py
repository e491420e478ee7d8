"""Commissioning: the guided check a technician runs at handover, its report, and its audit record.

``fieldgate commission site.yaml`` (gateway/commission/cli.py) runs it on a gateway it starts for the
purpose; the status page's Commission action runs it on the running daemon. Both call ``commission()``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.alerts.audit import AuditLog
from gateway.alerts.model import Alert
from gateway.alerts.signing import OperatorSignature
from gateway.commission.checks import run_checks
from gateway.commission.report import Commissioning, config_sha256, versions, write_report

if TYPE_CHECKING:
    from gateway.state import GatewayState


def report_dir(gw: GatewayState) -> Path:
    return gw.config.gateway.state_dir / "commission"


async def commission(gw: GatewayState, *, by: str, wait_s: float, request: tuple[Alert, list[OperatorSignature]] | None,
                     language: str, out_dir: Path | None = None) -> dict[str, Any]:
    """Run every check, write the report (HTML, PDF), record it in the broadcast audit chain; the record."""
    started = time.time()
    checks = await run_checks(gw, wait_s=wait_s, request=request)
    run = Commissioning(gw.config.gateway.id, gw.config.gateway.name, str(gw.config_path or "-"),
                        config_sha256(gw.config_path, gw.config.model_dump_json().encode()), by, started,
                        time.time(), checks, versions())
    files = await asyncio.to_thread(write_report, run, out_dir or report_dir(gw), language)
    record = {"report": Path(files["html"]).name, "passed": run.passed, "by": by,
              "config_sha256": run.config_sha256, "html_sha256": files["html_sha256"],
              "pdf_sha256": files["pdf_sha256"], "versions": run.versions,
              "checks": {"pass": sum(c.ok is True for c in checks), "fail": sum(c.ok is False for c in checks),
                         "unknown": sum(c.ok is None for c in checks)}}
    if gw.broadcast is not None:
        await gw.broadcast.note("commission", record)  # audit chain + evidence upstream
    else:
        audit = AuditLog(gw.config.audit_path)
        try:
            audit.append("commission", record)
        finally:
            audit.close()
    return {**record, **files, "results": [c.to_json() for c in checks]}
