"""What a gateway is and runs, for the platform's fleet list: software, config, hardware, modem ids.

Hardware facts are read once (they do not change while the daemon runs) from the device tree
(ARM boards) or DMI (x86), and absent facts are null, never made up.
"""

from __future__ import annotations

import functools
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

DEVICE_TREE = Path("/proc/device-tree")
DMI = Path("/sys/class/dmi/id")


def _read(path: Path, limit: int = 128) -> str | None:
    try:
        with path.open("rb") as handle:
            text = handle.read(limit).replace(b"\0", b"").decode("utf-8", "replace").strip()
    except OSError:
        return None
    return text or None


@functools.cache
def software_version() -> str:
    try:
        return metadata.version("fieldgate")
    except metadata.PackageNotFoundError:
        return "unknown"


@functools.cache
def hardware(device_tree: Path = DEVICE_TREE, dmi: Path = DMI) -> dict[str, Any]:
    """``{"model", "serial", "machine"}``: device tree first (Raspberry Pi and other ARM boards), then DMI."""
    model = _read(device_tree / "model") or _join(_read(dmi / "sys_vendor"), _read(dmi / "product_name"))
    # product_serial is readable by root only; the daemon runs as its own user and reports null then.
    serial = _read(device_tree / "serial-number") or _read(dmi / "product_serial")
    return {"model": model, "serial": serial, "machine": platform.machine() or None}


def _join(*parts: str | None) -> str | None:
    words = [p for p in parts if p]
    return " ".join(words) if words else None


def inventory(config_sha256: str | None, label: str | None, modems: list[dict[str, Any]],
              rollout: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "software": {"version": software_version(), "python": sys.version.split()[0]},
        "config": {"sha256": config_sha256, "label": label},
        "hardware": hardware(),
        "modems": modems,
        "rollout": rollout,
    }
