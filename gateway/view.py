"""What the status page, /metrics, `fieldgate status` and the health message see: one snapshot of the daemon.

Cheap by construction (it is built on the event loop for every page refresh): it reads what the
owners keep current (latest readings, device states, cached journal figures), never the journal itself.
"""

from __future__ import annotations

import time
from typing import Any

from gateway.contracts import BusDriver
from gateway.state import GatewayState


def build_snapshot(gw: GatewayState) -> dict[str, Any]:
    t = time.time()
    journal = gw.journal.journal
    return {
        "gateway": {"id": gw.config.gateway.id, "name": gw.config.gateway.name, "started": gw.started,
                    "uptime_s": round(t - gw.started, 1), "config": gw.config_path},
        "points": [
            {"point": r.point, "value": r.value, "unit": r.unit, "q": r.quality.value, "ts": r.source_time,
             "age_s": round(t - r.source_time, 1)}
            for r in sorted(gw.latest.values(), key=lambda r: r.point)
        ],
        "devices": [d for bus in gw.buses for d in _device_states(bus)],
        "links": [
            {"name": slot.link.name, "type": slot.config.type, "connected": slot.link.connected,
             "sent_messages": slot.runner.sent_messages if slot.runner else 0,
             "failed_sends": slot.runner.failed_sends if slot.runner else 0,
             "backlog": gw.journal_stats.get("links", {}).get(slot.link.name, {}).get("pending"),
             "commands_dropped": dict(slot.link.commands_dropped)}
            for slot in gw.primaries
        ] + [
            {"name": slot.link.name, "type": slot.config.type, "connected": slot.link.connected,
             "active": bool(slot.runner and slot.runner.active),
             "sent_messages": slot.runner.sent_messages if slot.runner else 0,
             "refused_acks": slot.runner.refused_acks if slot.runner else 0,
             "suppressed_replies": slot.runner.suppressed_replies if slot.runner else 0,
             "foreign_messages": slot.link.foreign_count,  # BeiDou: from other cards
             "backlog": gw.journal_stats.get("links", {}).get(slot.link.name, {}).get("pending")}
            for slot in gw.satellites
        ],
        "journal": {"committed": gw.journal.committed, "path": str(journal.path),
                    "backlog": gw.journal_stats.get("records"),
                    "oldest_age_s": gw.journal_stats.get("oldest_age_s"),
                    "drops": sum(gw.journal_stats.get("dropped", {}).values()),
                    "bytes": gw.journal_stats.get("bytes")},
        "loops": gw.loop_states(),
        "alarms": gw.rules.active_alarms(),
        "degraded": gw.degraded_status(),  # parts running on their temporary stand-ins (gateway/degraded.py)
        "evidence": list(gw.evidence),
        "snapshot": gw.latest_snapshot,
        "cameras": [guard.health.to_json() for guard in gw.cameras],
        "counters": dict(gw.counters),
        "inventory": gw.inventory(),
    }


def _device_states(bus: BusDriver) -> list[dict[str, Any]]:
    """Per-device state (Modbus: online / suspect / offline, poll counts)."""
    return [{"bus": bus.name, "device": state.name, "unit_id": state.unit_id, "online": state.mode != "offline",
             "mode": str(state.mode), "polls": state.polls, "errors": state.polls - state.good_polls}
            for state in bus.devices]
