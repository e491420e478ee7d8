"""What the broadcast outputs share among themselves: their state, the relay coil, WAV checks.

What an output offers the dispatcher, and hands back, is the core's contract
(gateway/alerts/contract.py); the dispatcher talks to outputs only through ``BroadcastOutput``.
"""

from __future__ import annotations

import asyncio
import enum
from pathlib import Path
from typing import Protocol

from drivers.broadcast.config import BoardAutoOffConfig


class OutputState(enum.StrEnum):
    IDLE = "idle"
    PREPARED = "prepared"
    ACTIVE = "active"
    FAULT = "fault"


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
