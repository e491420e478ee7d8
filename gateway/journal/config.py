"""The `journal:` section of the site config (see docs/durability.md for what each bound means)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from gateway.shared import Seconds, StrictModel, WrittenWithUnit

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$", re.IGNORECASE)
# JSON Schema patterns have no ignore-case flag: each unit letter is spelt both ways there.
_SIZE_SCHEMA_PATTERN = _SIZE.pattern.replace("B|KB|KiB|MB|MiB|GB|GiB", "|".join(
    "".join(f"[{c.upper()}{c.lower()}]" for c in unit) for unit in ("B", "KB", "KiB", "MB", "MiB", "GB", "GiB")))
_SIZE_UNITS = {None: 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2,
               "gb": 1000**3, "gib": 1024**3}


def _parse_size(value: object) -> object:
    """Accept 1048576, "512MiB", "2 GB", "64kb"; a bare number means bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 512MiB or 2GB, not a boolean")
    if isinstance(value, str):
        match = _SIZE.match(value)
        if not match:
            raise ValueError(f"'{value[:40]}' is not a size; write e.g. 512MiB, 2GB, 65536")
        unit = match.group(2).lower() if match.group(2) else None
        return int(float(match.group(1)) * _SIZE_UNITS[unit])
    if isinstance(value, int | float) and not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{value} is not a size; write e.g. 512MiB, 2GB, 65536")
    return value


# A size in bytes, written in YAML as a number or with a unit (KB, KiB, MB, MiB, GB, GiB).
Bytes = Annotated[int, BeforeValidator(_parse_size), WrittenWithUnit(_SIZE_SCHEMA_PATTERN)]

MiB = 1024 * 1024

# Backlog replay per link: "adaptive" (paced by the link's acknowledgements) or a fixed records/s (0 = adaptive).
ReplayRate = Annotated[float, Field(ge=0)] | Literal["adaptive"]


class JournalSettings(StrictModel):
    """Durability, capacity and replay of the journal. Drop-in for the foundation's JournalSection."""

    path: Path | None = Field(default=None, description="defaults to <state_dir>/journal.sqlite")
    queue: int = Field(default=10_000, ge=10, description="readings waiting for commit before buses wait")
    commit_window: Seconds = Field(default=0.2, le=1.0, description="longest a telemetry reading waits")
    min_commit_interval: Seconds = Field(default=0.0, ge=0, le=1.0, description=(
        "hold each group commit open this long (at most commit_window): fewer commits, fewer bytes "
        "written per reading, telemetry later and more of it lost to a crash (docs/durability.md)"))
    compress: bool = Field(default=False, description=(
        "store each committed batch zlib-compressed: about a third of the bytes written per reading, but the "
        "file's 'records' view no longer shows those records to sqlite3 (docs/durability.md, card wear)"))
    max_bytes: Bytes = Field(default=512 * MiB, ge=MiB, description="journal size (live pages) before dropping")
    max_age: Seconds = Field(default=30 * 86400.0, ge=60,
                             description="records older than this are dropped (never alarms or evidence)")
    min_free_bytes: Bytes = Field(default=64 * MiB, description=(
        "free space to leave on the file system (at most 10% of it); below it the journal stops growing"))
    reserve_bytes: Bytes = Field(default=4 * MiB, description="ballast file released when the disk is full")
    thin_to: Annotated[Seconds, Field(gt=0)] | None = Field(default=None, description=(
        "when full, first thin telemetry to one value per point per this interval, then drop oldest"))
    replay_rate: ReplayRate = Field(default="adaptive", description=(
        "backlog (state, telemetry, bulk) replayed per link after an outage: 'adaptive' (or 0) as fast as the "
        "link acknowledges while live data keeps its latency, or a fixed number of records/s (metered links)"))
    replay_rates: dict[str, ReplayRate] = Field(default_factory=dict, description="per-link override of replay_rate")
    historical_after: Seconds = Field(default=30.0, description="a record sent this long after it was taken "
                                      "is marked historical (hist: true)")
    integrity_check: Literal["quick", "off"] = Field(default="quick",
                                                     description="PRAGMA quick_check at start-up")
    keep_damaged: int = Field(default=5, ge=1, le=100, description="moved-aside damaged journals kept")
    drop_event_interval: Seconds = Field(default=60.0, ge=1,
                                         description="at most one 'records dropped' event this often")

    def replay_rate_for(self, link: str) -> float | None:
        """Records/s for ``link``'s backlog replay; None means adaptive (gateway/links_pacing.py)."""
        rate = self.replay_rates.get(link, self.replay_rate)
        return None if rate == "adaptive" or rate <= 0 else float(rate)
