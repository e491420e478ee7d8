"""What commands and technicians may do to a running gateway: the CommandTarget of the command plane
and the actions of the status page. Every path goes through the owner of the thing it touches
(a bus write through its scheduler task, a broadcast through the interlock)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.alerts.interlock import point_owners
from gateway.commands import CommandFailed
from gateway.shared import Value
from gateway.state import GatewayState

if TYPE_CHECKING:
    from gateway.alerts.model import Alert
    from gateway.alerts.signing import OperatorSignature
    from gateway.fleet.rollout import RolloutManager

log = logging.getLogger("fieldgate.control")


class GatewayControl:
    def __init__(self, gateway: GatewayState) -> None:
        self.gateway = gateway
        # Set by the daemon (gateway/daemon.py), which owns reloads; None when nothing can reload this gateway.
        self.reload: Callable[[], Awaitable[dict[str, Any]]] | None = None
        # Set by the daemon too: the roll-out outlives this gateway (gateway/fleet/rollout.py).
        self.fleet: RolloutManager | None = None

    def snapshot(self) -> dict[str, Any]:
        return self.gateway.snapshot()

    async def commission(self, *, by: str, wait_s: float, request: tuple[Alert, list[OperatorSignature]] | None,
                         language: str) -> dict[str, Any]:
        """The status page's commissioning action (gateway/commission): loaded only when a technician runs it."""
        from gateway.commission import commission

        return await commission(self.gateway, by=by, wait_s=wait_s, request=request, language=language)

    def commission_reports(self) -> Path:
        """Where this gateway's commissioning reports are written."""
        from gateway.commission import report_dir

        return report_dir(self.gateway)

    async def read_point(self, point_id: str) -> dict[str, Any]:
        reading = self.gateway.latest.get(point_id)
        if reading is None:
            raise CommandFailed(f"no reading of '{point_id}' yet")
        return reading.to_json()

    async def write_point(self, point_id: str, value: Value) -> dict[str, Any]:
        # The config loader refuses such write_points already; this holds even for a config that
        # slipped past it: a relay board's unit is reached only through the interlock.
        config = self.gateway.config
        outputs = point_owners(config.broadcast, config.buses).get(point_id)
        if outputs:
            raise CommandFailed(f"'{point_id}' is on the relay board of broadcast output(s) {', '.join(outputs)}; "
                                "use trigger_broadcast")
        for bus in self.gateway.buses:
            if bus.writable and point_id in {p.id for p in bus.points()}:
                if value is None:
                    raise CommandFailed("no value given")
                try:
                    confirmed = await bus.write_point(point_id, value, True)
                except Exception as exc:
                    raise CommandFailed(f"write refused: {exc}") from exc
                return {"point": point_id, "value": confirmed, "verified": True}
        raise CommandFailed(f"no writable point '{point_id}' on any bus")

    async def trigger_broadcast(self, request: dict[str, Any]) -> dict[str, Any]:
        from gateway.alerts.model import Alert
        from gateway.alerts.signing import OperatorSignature

        broadcast = self.gateway.broadcast
        if broadcast is None:
            raise CommandFailed("no broadcast outputs on this site")
        try:
            alert = Alert.model_validate(request.get("alert"))
            signatures = [OperatorSignature.model_validate(s) for s in request.get("signatures", [])]
        except ValueError as exc:
            raise CommandFailed(f"bad alert request: {exc}") from exc
        results = await broadcast.handle(alert, origin="remote", signatures=signatures)
        outcome = [r.to_json() for r in results]
        if not results or not all(r.ok for r in results):
            raise CommandFailed(f"broadcast refused or failed: {outcome[:3]}")
        return {"alert": alert.identifier, "results": outcome}

    async def cancel_broadcast(self, alert_id: str) -> dict[str, Any]:
        broadcast = self.gateway.broadcast
        if broadcast is None:
            raise CommandFailed("no broadcast outputs on this site")
        results = await broadcast.cancel(alert_id, "remote")
        return {"alert": alert_id, "results": [r.to_json() for r in results]}

    async def request_snapshot(self, camera: str) -> dict[str, Any]:
        latest = self.gateway.latest_snapshot
        if latest is None or latest.get("camera") != camera:
            raise CommandFailed(f"no snapshot of camera '{camera}' yet (snapshots are taken on detections)")
        return dict(latest)

    async def reload_config(self) -> dict[str, Any]:
        # The daemon validates the file, keeps the running config on any failure and says why (the reply).
        if self.reload is None:
            raise CommandFailed("nothing can reload this gateway: it was not started by `fieldgate run`")
        return await self.reload()

    async def config_chunk(self, sha256: str, index: int, total: int, data: str) -> dict[str, Any]:
        return await self._fleet().chunk(sha256, index, total, data)

    async def config_apply(self, sha256: str, label: str | None, window_s: float, max_wait_s: float,
                           signatures: list[OperatorSignature], command_id: int | None) -> dict[str, Any]:
        return await self._fleet().apply(sha256, label, window_s, max_wait_s, signatures, command_id)

    async def update_chunk(self, sha256: str, index: int, total: int, data: str) -> dict[str, Any]:
        return await self._fleet().update_chunk(sha256, index, total, data)

    async def update_apply(self, sha256: str, window_s: float, max_wait_s: float,
                           command_id: int | None) -> dict[str, Any]:
        return await self._fleet().update_apply(sha256, window_s, max_wait_s, command_id)

    def _fleet(self) -> RolloutManager:
        if self.fleet is None:
            raise CommandFailed("no configuration roll-out here: the gateway was not started by `fieldgate run`")
        return self.fleet

    async def action(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        """Technician actions from the status page (behind its login)."""
        if name == "selftest":
            broadcast = self.gateway.broadcast
            if broadcast is None:
                raise LookupError("no broadcast outputs configured")
            results = await broadcast.selftest()
            wanted = args.get("output")
            chosen = [r for r in results if wanted in (None, r.output)]
            return {"ok": all(r.ok for r in chosen), "results": [r.to_json() for r in chosen]}
        if name == "probe":
            bus = next((b for b in self.gateway.buses if b.name == args.get("bus") and b.writable), None)
            if bus is None:
                raise LookupError(f"no Modbus bus named '{args.get('bus')}'")
            registers = await bus.probe(int(args["unit_id"]), str(args["table"]), int(args["address"]),
                                    int(args.get("count", 1)))
            return {"bus": bus.name, **args, "registers": registers}
        raise LookupError(f"unknown action '{name}'")
