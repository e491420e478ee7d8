"""What the status page, /metrics, `fieldgate status` and the health message see: one snapshot of the daemon.

Cheap by construction (it is built on the event loop for every page refresh): it reads what the
owners keep current (latest readings, device states, cached journal figures), never the journal itself.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from gateway.shared import BusDriver

if TYPE_CHECKING:
    from gateway.app import Gateway
    from gateway.links import LinkRunner


def build_snapshot(gw: Gateway) -> dict[str, Any]:
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
            {"name": link.name, "type": cfg.type, "connected": link.connected,
             "sent_messages": runner.sent_messages if runner else 0,
             "failed_sends": runner.failed_sends if runner else 0,
             "backlog": gw.journal_stats.get("links", {}).get(link.name, {}).get("pending"),
             "commands_dropped": dict(getattr(link, "commands_dropped", {}))}
            for link, cfg, runner in zip(gw.links, gw.mqtt_configs, _runner_list(gw), strict=True)
        ] + [
            {"name": sat.name, "type": cfg.type, "connected": sat.connected,
             "active": bool(runner and runner.active),
             "sent_messages": runner.sent_messages if runner else 0,
             "refused_acks": runner.refused_acks if runner else 0,
             "suppressed_replies": runner.suppressed_replies if runner else 0,
             "foreign_messages": getattr(sat, "foreign_count", None),  # BeiDou: from other cards
             "backlog": gw.journal_stats.get("links", {}).get(sat.name, {}).get("pending")}
            for sat, cfg in gw.satellites for runner in [gw.satellite_runners.get(sat.name)]
        ],
        "journal": {"committed": gw.journal.committed, "path": str(journal.path),
                    "backlog": gw.journal_stats.get("records"),
                    "oldest_age_s": gw.journal_stats.get("oldest_age_s"),
                    "drops": sum(gw.journal_stats.get("dropped", {}).values()),
                    "bytes": gw.journal_stats.get("bytes")},
        "loops": gw._loop_states(),
        "alarms": gw.rules.active_alarms(),
        "degraded": gw.degraded.status(),  # parts running on their temporary stand-ins (gateway/degraded.py)
        "evidence": list(gw.evidence),
        "snapshot": gw.latest_snapshot,
        "cameras": [guard.health.to_json() for guard in gw.cameras],
        "counters": dict(gw.counters),
    }


def _runner_list(gw: Gateway) -> list[LinkRunner | None]:
    by_name = {r.link.name: r for r in gw.runners}
    return [by_name.get(link.name) for link in gw.links]


def _device_states(bus: BusDriver) -> list[dict[str, Any]]:
    """Per-device state of buses that keep one (Modbus: online / suspect / offline, poll counts)."""
    out = []
    for state in getattr(bus, "devices", []):
        config = getattr(state, "config", None)
        mode = str(getattr(state, "mode", "online"))
        polls, good = int(getattr(state, "polls", 0)), int(getattr(state, "good_polls", 0))
        out.append({"bus": bus.name, "device": getattr(config, "name", "?"),
                    "unit_id": getattr(config, "unit_id", None), "online": mode != "offline", "mode": mode,
                    "polls": polls, "errors": polls - good})
    return out
