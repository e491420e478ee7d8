"""The compact health message the daemon publishes upstream on a period.

Small enough for a satellite budget when it has to be: a few numbers, one flag per link, and
absent facts as null (a box without a thermal sensor, a disk that cannot be read) rather than
made-up values. Built from ``Gateway.snapshot()`` so it says what the status page says.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

THERMAL_DIR = Path("/sys/class/thermal")
# Zone types that measure the SoC/CPU, most specific first (Raspberry Pi, generic ARM, x86).
_CPU_ZONE_TYPES = ("cpu-thermal", "cpu_thermal", "soc-thermal", "x86_pkg_temp", "cpu")
_MAX_ZONES = 32


def _read_small(path: Path) -> str | None:
    try:
        with path.open("rb") as handle:
            return handle.read(64).decode("ascii", "replace").strip()
    except OSError:
        return None


def cpu_temperature_c(thermal_dir: Path = THERMAL_DIR) -> float | None:
    """The CPU temperature in °C from the kernel's thermal zones, or None when there is none."""
    try:
        zones = sorted(p for p in thermal_dir.glob("thermal_zone*") if p.name[12:].isdigit())[:_MAX_ZONES]
    except OSError:
        return None
    readings: dict[str, float] = {}
    first: float | None = None
    for zone in zones:
        raw = _read_small(zone / "temp")
        if raw is None:
            continue
        try:
            celsius = int(raw) / 1000.0
        except ValueError:
            continue
        if not -60.0 < celsius < 200.0:  # a disconnected sensor reads absurd values
            continue
        readings.setdefault((_read_small(zone / "type") or "").lower(), celsius)
        if first is None:
            first = celsius
    for kind in _CPU_ZONE_TYPES:
        if kind in readings:
            return round(readings[kind], 1)
    return None if first is None else round(first, 1)


def disk_free(path: Path) -> tuple[int, float] | None:
    """(free bytes, free percent) of the filesystem holding ``path``, or None if it cannot be read."""
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return None
    if usage.total <= 0:
        return None
    return usage.free, round(100.0 * usage.free / usage.total, 1)


def _dicts(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _number(value: Any) -> float | int | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def health_message(snapshot: Mapping[str, Any], disk_path: str | os.PathLike[str],
                   *, thermal_dir: Path = THERMAL_DIR, clock: Any = time.time) -> dict[str, Any]:
    """``{"ts", "uptime_s", "backlog", "oldest_age_s", "drops", "links": {name: 0|1}, "devices_online",
    "devices_total", "alarms", "overdue": [...], "cpu_temp_c", "disk_free_mb", "disk_free_pct",
    "cameras": {name: 0|1}}`` (only with cameras; 0 while its model is refused as a configuration fault).

    ``disk_path`` is where the journal lives (the state directory): the disk that fills up.
    """
    journal = _mapping(snapshot.get("journal"))
    devices = _dicts(snapshot.get("devices"))
    links = {str(link.get("name")): int(bool(link.get("connected"))) for link in _dicts(snapshot.get("links"))
             if link.get("name")}
    free = disk_free(Path(disk_path))
    uptime = _number(_mapping(snapshot.get("gateway")).get("uptime_s"))
    message: dict[str, Any] = {
        "ts": round(float(clock()), 1),
        "uptime_s": None if uptime is None else int(uptime),
        "backlog": _number(journal.get("backlog")),
        "oldest_age_s": _number(journal.get("oldest_age_s")),
        "drops": _number(journal.get("drops")),
        "links": links,
        "devices_online": sum(1 for d in devices if d.get("online")),
        "devices_total": len(devices),
        "alarms": len(_dicts(snapshot.get("alarms"))),
        "overdue": [str(loop.get("name")) for loop in _dicts(snapshot.get("loops")) if loop.get("overdue")],
        "cpu_temp_c": cpu_temperature_c(thermal_dir),
        "disk_free_mb": None if free is None else free[0] // (1024 * 1024),
        "disk_free_pct": None if free is None else free[1],
    }
    cameras = {str(c.get("name")): int(c.get("state") != "failed") for c in _dicts(snapshot.get("cameras"))
               if c.get("name")}
    degraded = [str(d.get("fault")) for d in _dicts(snapshot.get("degraded"))]
    if degraded:  # parts on their temporary stand-ins (gateway/degraded.py): only when there are some
        message["degraded"] = degraded
    if cameras:  # a site without cameras pays nothing for them (the message may travel by satellite)
        message["cameras"] = cameras
    inventory = _mapping(snapshot.get("inventory"))
    if inventory:
        message["inventory"] = compact_inventory(inventory)
    return message


def compact_inventory(inventory: Mapping[str, Any]) -> dict[str, Any]:
    """What the platform lists gateways by: versions, config hash (first 16 hex digits) and label,
    hardware model and serial, modems, and the last roll-out's phase."""
    config = _mapping(inventory.get("config"))
    hardware = _mapping(inventory.get("hardware"))
    rollout = _mapping(inventory.get("rollout"))
    sha = config.get("sha256")
    return {
        "sw": _mapping(inventory.get("software")).get("version"),
        "cfg": sha[:16] if isinstance(sha, str) else None,
        "label": config.get("label"),
        "model": hardware.get("model"),
        "serial": hardware.get("serial"),
        "modems": _dicts(inventory.get("modems")),
        "rollout": {"phase": rollout.get("phase"), "cfg": (rollout.get("sha256") or "")[:16] or None,
                    "reason": rollout.get("reason") or None} if rollout else None,
    }
