"""What the status server needs from the daemon, and how it turns a snapshot into JSON."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any, Protocol

from pydantic import Field

from gateway.shared import StrictModel


class StatusView(Protocol):
    """Implemented by ``gateway.app.Gateway``.

    ``snapshot()`` returns the documented dict (docs/status.md; any key may be missing) and must
    be cheap: it is called on the event loop for every page refresh, scrape and health check.
    ``action()`` runs a technician's action and returns a JSON-able dict; a ValueError or
    LookupError means bad arguments (shown to the technician), anything else a failure.
    """

    def snapshot(self) -> dict[str, Any]: ...

    async def action(self, name: str, args: dict[str, Any]) -> dict[str, Any]: ...


class ProbeArgs(StrictModel):
    """One Modbus read on a configured bus, for a technician checking a device by hand."""

    bus: str = Field(min_length=1, max_length=64)
    unit_id: int = Field(ge=0, le=247)
    table: str = Field(pattern=r"^(holding|input|coil|discrete)$")
    address: int = Field(ge=0, le=65535)
    count: int = Field(default=1, ge=1, le=125)


class SelftestArgs(StrictModel):
    """Broadcast outputs self-test; ``output`` limits it to one output."""

    output: str | None = Field(default=None, min_length=1, max_length=64)


class DetectArgs(StrictModel):
    """Run the camera's detector once on the frame the page shows ("would this be a detection?")."""

    camera: str = Field(min_length=1, max_length=64)


class CommissionArgs(StrictModel):
    """The guided commissioning check (gateway/commission); ``request`` is a signed Test alert request
    (`fieldgate alert draft --status Test` + `sign`) for the broadcast step, which is skipped without one."""

    request: dict[str, Any] | None = None
    wait_s: float = Field(default=20.0, ge=1, le=50)


ACTIONS: dict[str, type[StrictModel]] = {"probe": ProbeArgs, "selftest": SelftestArgs, "detect": DetectArgs,
                                         "commission": CommissionArgs}

_MAX_DEPTH = 12


def json_safe(value: Any, depth: int = 0) -> Any:
    """A snapshot made JSON-clean: NaN/inf → None (browsers reject them), enums and paths → strings,
    tuples and sets → lists; nesting deeper than a sane bound is cut off rather than recursed into."""
    if depth > _MAX_DEPTH:
        return None
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return json_safe(value.value, depth + 1)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v, depth + 1) for v in value]
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def overdue_loops(snapshot: Mapping[str, Any]) -> list[str]:
    loops = snapshot.get("loops")
    if not isinstance(loops, list):
        return []
    return [str(loop.get("name", "?")) for loop in loops if isinstance(loop, Mapping) and loop.get("overdue")]
