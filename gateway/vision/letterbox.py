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
# (HxWxC image, C planes of HxW) -> None: de-interleave the channels into the given planes.
Split = Callable[[Image, list[Image]], None]

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


def numpy_split(image: Image, planes: list[Image]) -> None:
    """Dependency-free channel de-interleave (backends offer a faster one, e.g. cv2.split)."""
    for c, plane in enumerate(planes):
        plane[...] = image[:, :, c]


class BlobCanvas:
    """A reusable NCHW float32 model input that a frame is letterboxed straight into.

    Same numbers as ``to_blob(apply_letterbox(...))`` with less work per frame: the padding is
    written once per frame geometry (it is constant), and only the resized content is converted,
    channel plane by channel plane (contiguous uint8 -> float32, then an in-place scale), instead
    of filling a uint8 canvas and converting all of it through a strided transpose.
    """

    def __init__(self, width: int, height: int, rgb: bool, scale: float, pad_value: int) -> None:
        self.blob: npt.NDArray[np.float32] = np.empty((1, 3, height, width), np.float32)
        self._rgb, self._scale, self._pad_value = rgb, np.float32(scale), pad_value
        self._geometry: Letterbox | None = None
        self._planes: list[Image] = []

    def fill(self, image: Image, lb: Letterbox, resize: Resize, split: Split = numpy_split) -> None:
        """Letterbox ``image`` (HxWx3 BGR uint8) into ``self.blob`` for the geometry ``lb``."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 BGR image, got shape {list(image.shape)}")
        if (lb.dst_w, lb.dst_h) != (self.blob.shape[3], self.blob.shape[2]):
            raise ValueError(f"letterbox for {lb.dst_w}x{lb.dst_h} does not fit this {self.blob.shape} blob")
        if lb != self._geometry:
            # The pad value goes through the same uint8 -> float32 -> x scale path as the content.
            self.blob.fill(np.float32(self._pad_value) * self._scale)
            self._planes = [np.empty((lb.new_h, lb.new_w), np.uint8) for _ in range(3)]
            self._geometry = lb
        same_size = (image.shape[1], image.shape[0]) == (lb.new_w, lb.new_h)
        resized = image if same_size else resize(image, lb.new_w, lb.new_h)
        split(np.ascontiguousarray(resized.reshape(lb.new_h, lb.new_w, 3)), self._planes)
        for c in range(3):
            plane = self._planes[2 - c if self._rgb else c]
            dst = self.blob[0, c, lb.pad_y : lb.pad_y + lb.new_h, lb.pad_x : lb.pad_x + lb.new_w]
            dst[...] = plane
            dst *= self._scale
