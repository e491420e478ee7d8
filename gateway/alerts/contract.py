"""The broadcast contract: what every output offers the dispatcher, and what it hands back.

The interlock decides an ``Activation`` per output; the output answers with an ``OutputResult``
(the evidence). Outputs live in ``drivers/broadcast``; they and the dispatcher in ``gateway/alerts``
meet only here. Imports nothing from the core but ``gateway.shared``, so drivers may import it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

# A relay output held on longer than this is a wiring or config mistake, not a warning.
HARD_MAX_ACTIVATION_S = 900.0


@dataclass(frozen=True, slots=True)
class Cadence:
    """A siren on/off pattern: steps of (on_s, off_s), repeated; bounded by the output's maximum."""

    name: str
    steps: tuple[tuple[float, float], ...]
    repeat: int

    @property
    def duration_s(self) -> float:
        return sum(on + off for on, off in self.steps) * self.repeat


@dataclass(frozen=True, slots=True)
class Activation:
    """One output's share of an alert, already decided by the interlock.

    ``status`` is the CAP status (Actual/Exercise/Test); the interlock has already chosen the
    clips (with their Exercise/Test announcement first) and the cadence for that status.
    """

    alert_id: str
    status: str
    zones: tuple[str, ...]
    clips: tuple[Path, ...] = ()
    tts_text: str | None = None
    cadence: Cadence | None = None
    max_activation_s: float = 180.0


@dataclass(frozen=True, slots=True)
class OutputResult:
    """Evidence of what one output did. ``ok`` False always carries a ``fault`` code."""

    output: str
    action: str  # prepare | activate | deactivate | selftest
    ok: bool
    fault: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"output": self.output, "action": self.action, "ok": self.ok}
        if self.fault:
            out["fault"] = self.fault
        if self.detail:
            out["detail"] = self.detail
        return out



# Mid-activation faults and recoveries (e.g. a cadence edge not read back), called on the event loop thread.
FaultListener = Callable[[OutputResult], None]


class BroadcastOutput(Protocol):
    name: str
    kind: str  # "siren" | "audio" | "ip_speaker" | "http"
    outdoor: bool  # outdoor sirens/speakers never sound for Test alerts

    def set_fault_listener(self, listener: FaultListener) -> None:
        """Where faults and recoveries found after ``activate`` returned go (the siren's cadence edges)."""
        ...

    async def prepare(self, activation: Activation) -> OutputResult: ...

    async def activate(self, activation: Activation) -> OutputResult: ...

    async def deactivate(self) -> OutputResult: ...

    async def selftest(self) -> OutputResult: ...

    def status(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...


class OutputSettings(Protocol):
    """What the interlock reads of an output's config section (``broadcast.outputs``)."""

    @property
    def type(self) -> str: ...

    @property
    def outdoor(self) -> bool:
        """Outdoor sirens and speakers never sound for Test alerts."""
        ...

    @property
    def is_siren(self) -> bool:
        """A siren sounds a cadence and plays no clips; anything else is a speaker."""
        ...


class ReportsInResults:
    """For outputs whose every fault shows in the result of the call that met it (nothing runs on after
    ``activate`` returns): the fault listener is never called."""

    def set_fault_listener(self, listener: FaultListener) -> None:
        return None
