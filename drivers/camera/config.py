"""Config model of one camera: where frames come from. What to watch and how to confirm is the core's
(gateway/vision/config.py ``VisionSettings``), embedded here so a camera is one section of the YAML."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from gateway.shared import Seconds
from gateway.vision.config import VisionSettings


class CameraConfig(VisionSettings):
    type: Literal["camera"]
    source: str = Field(
        min_length=1,
        description="rtsp://..., http(s)://... (MJPEG), usb:N or /dev/videoN (V4L2), or a video file path",
    )
    stall_timeout: Seconds = Field(default=10.0, gt=0)
    reconnect_min: Seconds = Field(default=1.0, gt=0)
    reconnect_max: Seconds = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _backoff(self) -> CameraConfig:
        if self.reconnect_min > self.reconnect_max:
            raise ValueError("reconnect_min is greater than reconnect_max")
        return self
