"""The camera as the vision pipeline sees it (gateway.contracts.CameraDriver): frames in, pictures out."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from drivers.camera import snapshot
from drivers.camera.capture import FrameGrabber
from drivers.camera.config import CameraConfig
from gateway.contracts import Box


class OpenCvCamera:
    def __init__(self, config: CameraConfig) -> None:
        self.config = config

    def open(self) -> FrameGrabber:
        cfg = self.config
        return FrameGrabber(cfg.source, lossless=cfg.file_pacing == "lossless", stall_timeout=cfg.stall_timeout,
                            reconnect_min=cfg.reconnect_min, reconnect_max=cfg.reconnect_max)

    def to_gray_small(self, image: npt.NDArray[np.uint8], width: int) -> npt.NDArray[np.uint8]:
        return snapshot.to_gray_small(image, width)

    def encode_jpeg(self, image: npt.NDArray[np.uint8], boxes: Sequence[Box], quality: int,
                    max_width: int) -> bytes:
        return snapshot.encode_jpeg(image, boxes, quality, max_width)
