"""The camera as the technician aiming it sees it: the last frame, the configured ROI/masks, the last
detections, and "would this be a detection?" on that frame (docs/vision.md, "Aiming a camera").

Nothing here imports OpenCV, numpy or an inference library at import time: a site without the vision
extra imports this package (the status server does) and simply has no frames.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

TAP_INTERVAL_S = 1.0  # a frame is copied for the page at most this often per camera


@dataclass(frozen=True)
class HeldFrame:
    camera: str
    t: float
    image: Any  # HxWx3 BGR uint8 numpy array, a copy owned by this holder
    detections: tuple[tuple[float, float, float, float, str, float], ...]  # the model's, before confirmation

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.image.shape[:2]
        return int(w), int(h)


@dataclass
class FrameTap:
    """The newest inspected frame of each camera, offered by the vision pipeline (one copy a second)."""

    frames: dict[str, HeldFrame] = field(default_factory=dict)
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)  # camera -> last "test the detector" result
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def offer(self, camera: str, t: float, image: Any, detections: list[Any]) -> None:
        held = self.frames.get(camera)
        if held is not None and t - held.t < TAP_INTERVAL_S and t >= held.t:
            return
        boxes = tuple((float(d.box[0]), float(d.box[1]), float(d.box[2]), float(d.box[3]), str(d.role),
                       float(d.score)) for d in detections[:64])
        with self._lock:
            self.frames[camera] = HeldFrame(camera, t, image.copy(), boxes)

    def latest(self, camera: str) -> HeldFrame | None:
        with self._lock:
            return self.frames.get(camera)

    def forget(self, camera: str) -> None:
        with self._lock:
            self.frames.pop(camera, None)
            self.probes.pop(camera, None)


# One per process: the pipeline runs in the daemon's event loop, the status server reads it there too.
TAP = FrameTap()


def age_s(frame: HeldFrame) -> float:
    return round(time.time() - frame.t, 1)
