"""Camera capture (OpenCV) and the camera's config model. Detection lives in gateway/vision.

``build_camera`` is the factory gateway/registry.py names; OpenCV loads only when a camera starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from drivers.camera.config import CameraConfig
    from gateway.contracts import CameraDriver


def build_camera(config: CameraConfig) -> CameraDriver:
    from drivers.camera.device import OpenCvCamera

    return OpenCvCamera(config)
