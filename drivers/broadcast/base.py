"""What every broadcast output offers the dispatcher, and what it hands back.

Outputs import nothing from the gateway except gateway.shared; the dispatcher in
gateway/alerts talks to them only through `BroadcastOutput`.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from drivers.broadcast.config import BoardAutoOffConfig


class OutputState(enum.StrEnum):
    IDLE = "idle"
    PREPARED = "prepared"
    ACTIVE = "active"
    FAULT = "fault"


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


class RelayError(Exception):
    """The board did not answer or refused; the message says which request."""


class Relay(Protocol):
    """A relay coil with read-back, driven with *blocking* calls from the siren's own threads."""

    can_read: bool  # False: no on-demand read (a board on a shared bus proves switching by verified writes)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None: ...

    def write(self, on: bool) -> None: ...

    def read_back(self) -> bool | None: ...

    def switch(self, on: bool) -> bool | None: ...

    def arm_board_auto_off(self, auto_off: BoardAutoOffConfig, seconds: float) -> None: ...

    def close(self) -> None: ...


# Mid-activation faults and recoveries (e.g. a cadence edge not read back), called on the event loop thread.
FaultListener = Callable[[OutputResult], None]


class BroadcastOutput(Protocol):
    name: str
    kind: str  # "siren" | "audio" | "ip_speaker" | "http"
    outdoor: bool  # outdoor sirens/speakers never sound for Test alerts

    async def prepare(self, activation: Activation) -> OutputResult: ...

    async def activate(self, activation: Activation) -> OutputResult: ...

    async def deactivate(self) -> OutputResult: ...

    async def selftest(self) -> OutputResult: ...

    def status(self) -> dict[str, Any]: ...

    async def close(self) -> None: ...


def wav_path_ok(path: Path) -> str | None:
    """None if ``path`` is a readable PCM WAV with at least one frame, else why not."""
    import wave

    try:
        with wave.open(str(path), "rb") as wav:
            if wav.getnframes() <= 0:
                return "empty"
            if wav.getsampwidth() not in (1, 2):
                return "unsupported sample width"
    except FileNotFoundError:
        return "missing"
    except (wave.Error, EOFError, OSError) as exc:
        return f"not a PCM WAV: {exc}"
    return None
