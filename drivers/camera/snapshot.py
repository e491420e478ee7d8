"""JPEG snapshot encoding (with and without boxes) for the snapshot store."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import numpy.typing as npt

ROLE_COLOURS = {"fire": (0, 0, 255), "smoke": (200, 200, 200), "flame_out": (255, 0, 255)}


def encode_jpeg(
    image: npt.NDArray[np.uint8],
    boxes: Sequence[tuple[float, float, float, float, str, float]] = (),
    quality: int = 80,
    max_width: int = 1280,
) -> bytes:
    """Encode ``image`` (BGR), drawing each (x1, y1, x2, y2, role, score) box when given."""
    scale = min(1.0, max_width / image.shape[1])
    img = image if scale == 1.0 else cv2.resize(
        image, (round(image.shape[1] * scale), round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA
    )
    if boxes:
        img = img.copy()
        thick = max(1, img.shape[1] // 320)
        for x1, y1, x2, y2, role, score in boxes:
            colour = ROLE_COLOURS.get(role, (0, 255, 255))
            p1, p2 = (round(x1 * scale), round(y1 * scale)), (round(x2 * scale), round(y2 * scale))
            cv2.rectangle(img, p1, p2, colour, thick)
            cv2.putText(img, f"{role} {score:.2f}", (p1[0], max(10, p1[1] - 3)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.35 * thick, colour, 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return bytes(buf.tobytes())


def resize(image: npt.NDArray[np.uint8], width: int, height: int) -> npt.NDArray[np.uint8]:
    return np.asarray(cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA), np.uint8)


def to_gray_small(image: npt.NDArray[np.uint8], width: int) -> npt.NDArray[np.uint8]:
    """Grey, downscaled copy for the motion/flicker measures (cheap to diff every frame)."""
    h, w = image.shape[:2]
    scale = min(1.0, width / w)
    small = image if scale == 1.0 else cv2.resize(
        image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return np.asarray(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY), np.uint8)
