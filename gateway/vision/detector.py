"""One inference: letterbox an image, run the backend, decode, suppress, map boxes back.

Runs inside the worker process; pure numpy around the backend interface.
"""

from __future__ import annotations

import numpy as np

from gateway.vision.backend import Backend
from gateway.vision.decode import Layout, LayoutError, decode, detect_layout
from gateway.vision.detections import Detections
from gateway.vision.letterbox import Image, apply_letterbox, letterbox_params, to_blob, unmap_boxes
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
        self.layout: Layout | None = None if m.layout == "auto" else m.layout
        if self.layout is None and backend.output_shapes and all(
            isinstance(d, int) for d in backend.output_shapes[0]
        ):
            self.layout = detect_layout(tuple(backend.output_shapes[0]), len(self.classes))
        self._canvas = np.empty((self.height, self.width, 3), np.uint8)
        self._keep_role = np.asarray([r != "ignore" for r in self.roles], bool)

    def detect(self, image: Image) -> Detections:
        """Detections for ``image`` (HxWx3 BGR uint8), boxes in ``image`` pixels, 'ignore' classes dropped."""
        h, w = image.shape[:2]
        lb = letterbox_params(w, h, self.width, self.height)
        canvas = apply_letterbox(image, lb, self.backend.resize, out=self._canvas, pad_value=self.pad_value)
        outputs = self.backend.run(to_blob(canvas, self.rgb, self.scale))
        if not outputs:
            raise LayoutError("the model returned no outputs")
        out = outputs[0]
        if self.layout is None:  # dynamic output shape: decide on the first real output
            self.layout = detect_layout(tuple(out.shape), len(self.classes))
        dets = decode(out, self.layout, len(self.classes), self.conf, lb.content_box)
        dets = dets.select(self._keep_role[dets.class_ids])
        if self.layout != "e2e" and self.layout != "classifier":
            dets = nms(dets, self.nms_iou, self.max_detections)
        else:
            dets = dets.select(np.argsort(-dets.scores)[: self.max_detections])
        return Detections(unmap_boxes(dets.boxes, lb, w, h), dets.scores, dets.class_ids)
