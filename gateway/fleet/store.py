"""The roll-out's state on disk: ``<state_dir>/fleet/`` holds the staged file, the previous file and
``rollout.json``. Written atomically (fsync'd) at every step, so a restart in the middle of a roll-out
finds out where it was: nothing about a roll-out lives only in memory."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from gateway.fsutil import ensure_dir, write_atomic

Phase = Literal["idle", "staged", "installing", "waiting", "trial", "committed", "rolled_back", "refused"]
# Phases in which the running config is on trial: a start that finds one of these rolls back.
UNCOMMITTED: frozenset[str] = frozenset({"trial"})
MAX_CONFIG_BYTES = 1024 * 1024  # a site file larger than this is refused (a site file is a few KiB)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class RolloutState:
    phase: Phase = "idle"
    sha256: str | None = None  # of the staged / applied file
    label: str | None = None  # the operator's version label (``config_apply`` args)
    previous_sha256: str | None = None
    command_id: int | None = None
    window_s: float = 0.0
    deadline: float | None = None  # wall clock end of the health window (survives a restart)
    reason: str = ""  # why it was refused, waited or rolled back
    baseline: dict[str, Any] = field(default_factory=dict)  # health facts before the change (rollout.py)
    at: float = field(default_factory=time.time)
    history: list[dict[str, Any]] = field(default_factory=list)  # the last few outcomes, newest last
    # A software update (kind "update", gateway/fleet/updates.py) uses the same state: sha256 is the bundle's,
    # label the new version; the boot check (gateway/fleet/boot.py) counts starts while it is on trial.
    kind: Literal["config", "update"] = "config"
    from_slot: str | None = None  # the release venv it came from ("venv", "a", "b"): where a rollback goes
    to_slot: str | None = None
    from_version: str | None = None
    to_version: str | None = None
    starts: int = 0
    config_label: str | None = None  # the running file's roll-out label, still reported during an update
    unreported: bool = False  # rolled back where nothing could journal it (the boot check, a dying daemon)

    def summary(self) -> dict[str, Any]:
        """What the health message and /api/status say about the last roll-out."""
        return {"phase": self.phase, "kind": self.kind, "sha256": self.sha256, "label": self.label,
                "reason": self.reason[:200], "at": round(self.at, 1), "deadline": self.deadline}


class RolloutStore:
    _HISTORY = 8

    def __init__(self, state_dir: Path) -> None:
        self.folder = state_dir / "fleet"
        self.state_path = self.folder / "rollout.json"
        self.staged_path = self.folder / "staged.yaml"
        self.previous_path = self.folder / "previous.yaml"
        self.chunks = self.folder / "chunks"
        self.updates = self.folder / "update"  # update bundles in transit (one file per chunk) and unpacked
        self.inbox = self.folder / "inbox"  # bundles a technician drops on the box

    def load(self) -> RolloutState:
        try:
            raw = json.loads(self.state_path.read_bytes()[:1_000_000])
            return RolloutState(**{k: v for k, v in raw.items() if k in RolloutState.__dataclass_fields__})
        except FileNotFoundError:
            return RolloutState()
        except (OSError, ValueError, TypeError) as exc:
            # An unreadable state must not stop the site; it says so in the next roll-out's reason.
            return RolloutState(reason=f"rollout.json unreadable ({exc}); treated as idle")

    def save(self, state: RolloutState) -> None:
        state.at = time.time()
        if state.phase in ("committed", "rolled_back", "refused"):
            state.history = [*state.history, {"phase": state.phase, "sha256": state.sha256, "label": state.label,
                                              "reason": state.reason[:200], "at": round(state.at, 1)}]
            state.history = state.history[-self._HISTORY:]
        ensure_dir(self.folder)
        write_atomic(self.state_path, json.dumps(asdict(state), sort_keys=True).encode())

    def write_file(self, path: Path, data: bytes) -> None:
        ensure_dir(self.folder)
        write_atomic(path, data)
