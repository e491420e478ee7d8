"""What the vision pipeline is configured with: regions, far-field tiling, the detector, confirmation, snapshots.

Core-owned: every camera section (drivers/camera/config.py ``CameraConfig``) embeds ``VisionSettings``; the
camera driver adds only where frames come from. Polygons are in normalised frame coordinates (0..1,
x right, y down) so a config survives a change of stream resolution. Imports nothing from the core but
gateway.shared, so the camera driver's config model may derive from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.shared import Seconds, StrictModel

Point = tuple[float, float]


class Polygon(StrictModel):
    name: str = ""
    points: list[Point] = Field(min_length=3, max_length=64)

    @field_validator("points")
    @classmethod
    def _normalised(cls, pts: list[Point]) -> list[Point]:
        for x, y in pts:
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ValueError(f"polygon point ({x}, {y}) is outside 0..1 (coordinates are fractions of the frame)")
        return pts


class ExpectedFlameZone(Polygon):
    """A place where flame is normal (flare stack): flame there is no alarm, its absence is."""

    out_after: Seconds = Field(default=30.0, description="no flame for this long -> flame_out alarm")
    burning_at_start: bool = Field(default=False, description="alarm if never seen burning after start")


class FarFieldConfig(StrictModel):
    """Tower mode: sweep overlapping model-sized tiles over a high-resolution frame, round-robin."""

    enabled: bool = False
    overlap: float = Field(default=0.2, ge=0.0, le=0.5)
    full_view_every: int = Field(
        default=0, ge=0, description="also infer on the whole frame every k sweeps (0 = never)"
    )


class DetectorConfig(StrictModel):
    model: Path = Field(description="model manifest (.yaml) beside the .onnx")
    backend: Literal["onnxruntime"] = "onnxruntime"  # rknn / openvino: reserved
    threads: int = Field(default=2, ge=1, le=16)
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    inference_timeout: Seconds = Field(default=20.0, gt=0, description="worker restarted if one run takes longer")
    slots: int = Field(default=2, ge=1, le=8, description="shared-memory frame slots (frames in flight)")


class ConfirmConfig(StrictModel):
    """Temporal confirmation (see docs/vision.md for what each knob trades)."""

    iou_match: float = Field(default=0.2, gt=0, le=1)
    fire_n: int = Field(default=4, ge=1)
    fire_m: int = Field(default=6, ge=1)
    flicker_min: float = Field(default=0.03, ge=0, description="mean relative frame change inside the box")
    max_drift: float = Field(default=0.4, ge=0, description="centre travel over the window, in box sizes")
    smoke_n: int = Field(default=8, ge=1)
    smoke_m: int = Field(default=12, ge=1)
    smoke_min_age: Seconds = Field(default=4.0)
    smoke_growth: float = Field(default=1.15, ge=1.0, description="area growth factor that counts as growing")
    smoke_motion_min: float = Field(default=0.004, ge=0)
    leak: float = Field(default=1.0, gt=0, description="leaky counter: +1 per hit, -leak per miss")
    counter_max: float = Field(default=6.0, gt=0)
    cooldown: Seconds = Field(default=60.0, description="quiet time before a confirmed region's event ends")
    update_every: Seconds = Field(default=30.0, description="at most one update event per track per this")
    brightness_jump: float = Field(default=0.3, gt=0, description="relative global brightness change -> reset")
    max_tracks: int = Field(default=32, ge=1, le=256)

    @model_validator(mode="after")
    def _n_of_m(self) -> ConfirmConfig:
        if self.fire_n > self.fire_m or self.smoke_n > self.smoke_m:
            raise ValueError("N of M: n must not exceed m")
        return self


class SnapshotConfig(StrictModel):
    dir: Path = Path("/var/lib/fieldgate/snapshots")
    max_bytes: int = Field(default=200_000_000, ge=1_000_000)
    jpeg_quality: int = Field(default=80, ge=30, le=100)
    max_width: int = Field(default=1280, ge=160, description="snapshots are downscaled to at most this width")


class VisionSettings(StrictModel):
    """The part of a camera section the pipeline reads (gateway/vision/pipeline.py)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    fps: float = Field(default=2.0, gt=0, le=60, description="inference rate; capture runs at stream rate")
    file_pacing: Literal["realtime", "lossless"] = Field(
        default="realtime",
        description="files: 'realtime' plays like a camera (loops); 'lossless' feeds every frame once, then ends",
    )
    roi: list[Polygon] = Field(default_factory=list, description="only detections inside count (empty = all)")
    exclusions: list[Polygon] = Field(default_factory=list)
    expected_flames: list[ExpectedFlameZone] = Field(default_factory=list)
    far_field: FarFieldConfig = Field(default_factory=FarFieldConfig)
    detector: DetectorConfig
    confirm: ConfirmConfig = Field(default_factory=ConfirmConfig)
    snapshots: SnapshotConfig = Field(default_factory=SnapshotConfig)
