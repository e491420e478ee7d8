"""When a roll-out or an update may restart the gateway: never while a broadcast is being decided or is
active, nor while an alarm that triggers one is raised (docs/fleet.md, "Safe moment")."""

from __future__ import annotations

import asyncio
from typing import Protocol

from gateway.state import GatewayState


class RolloutGateway(GatewayState, Protocol):
    @property
    def ready(self) -> asyncio.Event: ...

    @property
    def commands_running(self) -> bool: ...



def unsafe_reason(gw: GatewayState) -> str | None:
    """Why this is not the moment to restart the gateway, or None."""
    broadcast = gw.broadcast
    if broadcast is not None:
        busy = broadcast.busy()
        if busy:
            return busy
    plan = {entry.rule for entry in gw.config.broadcast.automatic}
    raised = [a["rule"] for a in gw.rules.active_alarms() if a["rule"] in plan]
    if raised:
        return f"alarm(s) that trigger a broadcast are raised: {', '.join(raised[:5])}"
    return None


