"""One inference: letterbox an image, run the backend, decode, suppress, map boxes back.

Runs inside the worker process; pure numpy around the backend interface. ``detect`` does it all
in one call; ``prepare`` / ``backend.run`` / ``finish`` are the same steps split so the worker can
prepare frame k+1 while the backend runs frame k.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import numpy.typing as npt

from gateway.contracts import Backend
from gateway.vision.decode import Layout, LayoutError, decode, detect_layout
from gateway.vision.detections import Detections
from gateway.vision.letterbox import (
    BlobCanvas,
    Image,
    Letterbox,
    Resize,
    Split,
    letterbox_params,
    unmap_boxes,
)
from gateway.vision.manifest import (
    ClassSpec,
    LoadedManifest,
    ManifestError,
    Role,
    class_thresholds,
    classes_from_metadata,
)
from gateway.vision.nms import nms


class Detector:
    def __init__(self, loaded: LoadedManifest, backend: Backend) -> None:
        m = loaded.manifest
        self.backend = backend
        self.width, self.height = m.input.width, m.input.height
        if backend.input_hw is not None and backend.input_hw != (self.height, self.width):
            raise ManifestError(
                f"manifest {loaded.path} says input {self.width}x{self.height} but the model takes "
                f"{backend.input_hw[1]}x{backend.input_hw[0]}"
            )
        self.classes: list[ClassSpec] = m.classes if m.classes is not None else classes_from_metadata(
            backend.metadata
        )
        self.roles: list[Role] = [c.role for c in self.classes]
        self.conf = class_thresholds(self.classes, m.thresholds)
        self.nms_iou = m.nms_iou
        self.max_detections = m.max_detections
        self.rgb = m.input.color == "rgb"
        self.scale = m.input.scale
        self.pad_value = m.input.pad_value
        self._resize: Resize = partial(backend.resize, interpolation=m.input.resize)  # as the model was trained
        self.layout: Layout | None = None if m.layout == "auto" else m.layout
        if self.layout is None and backend.output_shapes and all(
            isinstance(d, int) for d in backend.output_shapes[0]
        ):
            self.layout = detect_layout(tuple(backend.output_shapes[0]), len(self.classes))
        self._split: Split = backend.split  # cv2.split for ONNX Runtime
        self._canvas = self.new_canvas()
        self._keep_role = np.asarray([r != "ignore" for r in self.roles], bool)
        self._min_conf = float(np.min(self.conf)) if self.conf.size else 0.0

    def new_canvas(self) -> BlobCanvas:
        """A model-input buffer for ``prepare`` (one per frame in flight)."""
        return BlobCanvas(self.width, self.height, self.rgb, self.scale, self.pad_value)

    def prepare(self, image: Image, canvas: BlobCanvas) -> Letterbox:
        """Letterbox ``image`` (HxWx3 BGR uint8) into ``canvas.blob``; the geometry ``finish`` needs."""
        h, w = image.shape[:2]
        lb = letterbox_params(w, h, self.width, self.height)
        canvas.fill(image, lb, self._resize, self._split)
        return lb

    def detect(self, image: Image) -> Detections:
        """Detections for ``image`` (HxWx3 BGR uint8), boxes in ``image`` pixels, 'ignore' classes dropped."""
        lb = self.prepare(image, self._canvas)
        return self.finish(self.backend.run(self._canvas.blob), lb, image.shape[1], image.shape[0])

    def finish(self, outputs: list[npt.NDArray[np.float32]], lb: Letterbox, w: int, h: int) -> Detections:
        """Decode the backend's ``outputs`` for a ``w`` x ``h`` frame prepared with ``lb``; boxes in frame pixels."""
        if not outputs:
            raise LayoutError("the model returned no outputs")
        out = outputs[0]
        if self.layout is None:  # dynamic output shape: decide on the first real output
            self.layout = detect_layout(tuple(out.shape), len(self.classes))
        if self.layout == "yolov8":
            out = _yolov8_candidates(out, len(self.classes), self._min_conf)
        dets = decode(out, self.layout, len(self.classes), self.conf, lb.content_box)
        dets = dets.select(self._keep_role[dets.class_ids])
        if self.layout != "e2e" and self.layout != "classifier":
            dets = nms(dets, self.nms_iou, self.max_detections)
        else:
            dets = dets.select(np.argsort(-dets.scores)[: self.max_detections])
        return Detections(unmap_boxes(dets.boxes, lb, w, h), dets.scores, dets.class_ids)


def _yolov8_candidates(out: npt.NDArray[np.floating], num_classes: int, min_conf: float) -> npt.NDArray[np.floating]:
    """Only the anchors whose best class score reaches the lowest threshold (the rest can never be
    kept: decode scores an anchor by its best class). A max over the contiguous class rows costs a
    fraction of decoding all ~2100-8400 anchors; a trained model's output is almost all background.
    Any shape the decoder would refuse passes through untouched so it gives the usual error."""
    if out.ndim != 3 or out.shape[0] != 1 or out.shape[1] != 4 + num_classes or num_classes == 0:
        return out
    best = out[0, 4:].max(axis=0)  # NaN propagates and then fails >=, as decode drops it
    keep = np.flatnonzero(best >= min_conf)
    return out if len(keep) == out.shape[2] else out[:, :, keep]
