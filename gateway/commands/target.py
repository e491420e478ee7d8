"""What the command plane needs from the gateway: the ``CommandTarget`` protocol."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from gateway.shared import Value

if TYPE_CHECKING:
    from gateway.alerts.signing import OperatorSignature


class CommandFailed(Exception):
    """Raised by a target for an expected refusal (unknown point, device error, no camera...).

    The message goes to the reply as the detail, so keep it short and free of secrets.
    """


class CommandTarget(Protocol):
    """Implemented by the daemon's Gateway. Every method returns a JSON-able dict (the reply's result)."""

    def snapshot(self) -> dict[str, Any]: ...

    async def read_point(self, point_id: str) -> dict[str, Any]: ...

    async def write_point(self, point_id: str, value: Value) -> dict[str, Any]: ...

    async def trigger_broadcast(self, request: dict[str, Any]) -> dict[str, Any]:
        """``request`` = ``{"alert": {...}, "signatures": [...]}`` as in `fieldgate alert` request files;
        the broadcast interlock still applies (two-person rule for manual Actual alerts)."""
        ...

    async def cancel_broadcast(self, alert_id: str) -> dict[str, Any]: ...

    async def request_snapshot(self, camera: str) -> dict[str, Any]: ...

    async def reload_config(self) -> dict[str, Any]: ...

    async def config_chunk(self, sha256: str, index: int, total: int, data: str) -> dict[str, Any]:
        """Keep one piece of a site file; the last one stages and validates it (docs/fleet.md)."""
        ...

    async def config_apply(self, sha256: str, label: str | None, window_s: float, max_wait_s: float,
                           signatures: list[OperatorSignature], command_id: int | None) -> dict[str, Any]:
        """Start the roll-out of the staged file; answers once it is accepted (or refused)."""
        ...

    async def update_chunk(self, sha256: str, index: int, total: int, data: str) -> dict[str, Any]:
        """Keep one piece of an update bundle; the reply lists the pieces still missing (docs/fleet.md)."""
        ...

    async def update_apply(self, sha256: str, window_s: float, max_wait_s: float,
                           command_id: int | None) -> dict[str, Any]:
        """Install the checked bundle beside the running release, then switch at a safe moment."""
        ...
