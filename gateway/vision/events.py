"""Detection events: what the vision pipeline hands to the rules and the journal."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.shared import RecordClass

EventKind = Literal["new", "update", "end"]
EventRole = Literal["fire", "smoke", "flame_out"]
Box = tuple[float, float, float, float]


@dataclass(frozen=True, slots=True)
class DetectionEvent:
    """One change in a confirmed detection.

    ``new``: confirmed (fire / smoke), or an expected flame went out (flame_out). ``update``: still
    there, fresh score / box / snapshot (rate-limited). ``end``: gone for the cool-down period (or the
    flare relit). ``box`` is in frame pixels (x1, y1, x2, y2) of a ``frame_size`` (w, h) frame.
    """

    camera: str
    event_id: str
    kind: EventKind
    role: EventRole
    t: float
    t_first: float
    score: float
    box: Box
    frame_size: tuple[int, int]
    snapshot: str | None = None  # JPEG with boxes drawn (path in the local store)
    snapshot_raw: str | None = None  # the same frame without boxes
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def record_class(self) -> RecordClass:
        return RecordClass.ALARM if self.kind == "new" else RecordClass.EVENT

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "camera": self.camera, "id": self.event_id, "kind": self.kind, "role": self.role,
            "ts": round(self.t, 3), "t_first": round(self.t_first, 3), "score": round(self.score, 3),
            "box": [round(v, 1) for v in self.box], "frame": list(self.frame_size),
        }
        if self.snapshot:
            out["snapshot"] = self.snapshot
        if self.snapshot_raw:
            out["snapshot_raw"] = self.snapshot_raw
        if self.attrs:
            out["attrs"] = self.attrs
        return out
