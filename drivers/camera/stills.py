"""Still images from disk (for ``fieldgate model eval``): OpenCV stays in drivers/camera."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt


def read_image(path: Path) -> npt.NDArray[np.uint8] | None:
    """HxWx3 BGR, or None if OpenCV cannot read it. OpenCV's own pixel limit (CV_IO_MAX_IMAGE_PIXELS)
    refuses a decompression bomb; bytes are read by numpy so no file name is ever misread."""
    data = np.fromfile(str(path), np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    return None if image is None else np.ascontiguousarray(image, np.uint8)
