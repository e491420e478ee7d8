"""Letterbox geometry: fit a frame into the model input keeping its aspect, and map boxes back.

The resize itself is done by a function the caller passes in (the backend's, which uses OpenCV
or an accelerator), so this module stays pure numpy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]
Resize = Callable[[Image, int, int], Image]  # (image, width, height) -> resized image

PAD_VALUE = 114  # the grey Ultralytics and most exporters pad with


@dataclass(frozen=True, slots=True)
class Letterbox:
    scale: float
    pad_x: int
    pad_y: int
    new_w: int
    new_h: int
    dst_w: int
    dst_h: int

    @property
    def content_box(self) -> tuple[float, float, float, float]:
        """Where the frame sits inside the model input (x1, y1, x2, y2)."""
        return (float(self.pad_x), float(self.pad_y), float(self.pad_x + self.new_w),
                float(self.pad_y + self.new_h))


def letterbox_params(src_w: int, src_h: int, dst_w: int, dst_h: int) -> Letterbox:
    if min(src_w, src_h, dst_w, dst_h) <= 0:
        raise ValueError(f"cannot letterbox {src_w}x{src_h} into {dst_w}x{dst_h}")
    scale = min(dst_w / src_w, dst_h / src_h)
    new_w = max(1, min(dst_w, round(src_w * scale)))
    new_h = max(1, min(dst_h, round(src_h * scale)))
    return Letterbox(scale, (dst_w - new_w) // 2, (dst_h - new_h) // 2, new_w, new_h, dst_w, dst_h)


def apply_letterbox(
    image: Image, lb: Letterbox, resize: Resize, out: Image | None = None, pad_value: int = PAD_VALUE
) -> Image:
    """Resize ``image`` into a padded [dst_h, dst_w, C] canvas (``out`` is reused when given)."""
    channels = image.shape[2] if image.ndim == 3 else 1
    canvas = out if out is not None else np.empty((lb.dst_h, lb.dst_w, channels), np.uint8)
    canvas.fill(pad_value)
    same_size = (image.shape[1], image.shape[0]) == (lb.new_w, lb.new_h)
    resized = image if same_size else resize(image, lb.new_w, lb.new_h)
    canvas[lb.pad_y : lb.pad_y + lb.new_h, lb.pad_x : lb.pad_x + lb.new_w] = resized.reshape(
        lb.new_h, lb.new_w, channels
    )
    return canvas


def unmap_boxes(
    boxes: npt.NDArray[np.float32], lb: Letterbox, src_w: int, src_h: int
) -> npt.NDArray[np.float32]:
    """Model-input xyxy boxes -> source-frame xyxy boxes, clipped to the frame."""
    out = boxes.astype(np.float32, copy=True)
    out[:, [0, 2]] = (out[:, [0, 2]] - lb.pad_x) / lb.scale
    out[:, [1, 3]] = (out[:, [1, 3]] - lb.pad_y) / lb.scale
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, src_w)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, src_h)
    return out


def nearest_resize(image: Image, width: int, height: int) -> Image:
    """Dependency-free nearest-neighbour resize (tests and fallback; backends use a proper one)."""
    ys = (np.arange(height) * image.shape[0] / height).astype(np.intp)
    xs = (np.arange(width) * image.shape[1] / width).astype(np.intp)
    return np.ascontiguousarray(image[ys][:, xs])


def to_blob(image: Image, rgb: bool = True, scale: float = 1 / 255.0) -> npt.NDArray[np.float32]:
    """HWC uint8 BGR -> NCHW float32, channel order and scale as the model wants."""
    src = image[:, :, ::-1] if rgb else image
    blob = np.empty((1, 3, image.shape[0], image.shape[1]), np.float32)
    np.multiply(np.transpose(src, (2, 0, 1)), np.float32(scale), out=blob[0], casting="unsafe")
    return blob
