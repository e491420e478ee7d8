"""Decoders for the common detector export layouts, and layout auto-detection.

Layouts (batch 1; coordinates in model-input pixels):

* ``yolov5``     [1, N, 5+nc]  cx, cy, w, h, objectness, class scores   (score = obj x class)
* ``yolov8``     [1, 4+nc, N]  cx, cy, w, h, class scores               (YOLOv8 / YOLO11, no objectness)
* ``e2e``        [1, K, 6]     x1, y1, x2, y2, score, class             (NMS built into the graph)
* ``classifier`` [1, nc]       one score per class for the whole image
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from gateway.vision.detections import Detections, cxcywh_to_xyxy

Layout = Literal["yolov5", "yolov8", "e2e", "classifier"]
LAYOUTS: tuple[Layout, ...] = ("yolov5", "yolov8", "e2e", "classifier")


class LayoutError(ValueError):
    """The model output does not have the shape the layout (or auto-detection) needs."""


def detect_layout(shape: tuple[int, ...], num_classes: int) -> Layout:
    """Guess the layout from the output shape and the number of classes; refuse when ambiguous."""
    nc = num_classes
    if len(shape) == 2 and shape[0] == 1 and shape[1] == nc:
        return "classifier"
    if len(shape) != 3 or shape[0] != 1:
        raise LayoutError(f"output shape {list(shape)} is none of the known layouts for {nc} classes")
    _, a, b = shape
    candidates: list[Layout] = []
    if a == 4 + nc and b > a:
        candidates.append("yolov8")
    if b == 5 + nc and a > b:
        candidates.append("yolov5")
    if b == 6 and a > b:
        candidates.append("e2e")
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise LayoutError(
            f"output shape {list(shape)} matches no layout for {nc} classes "
            f"(yolov5 [1,N,{5 + nc}], yolov8 [1,{4 + nc},N], e2e [1,K,6], classifier [1,{nc}]); "
            "check the class list in the manifest"
        )
    raise LayoutError(
        f"output shape {list(shape)} with {nc} classes could be any of {candidates}; "
        "set 'layout:' in the manifest"
    )


def _thresholds(conf: float | npt.NDArray[np.float32], nc: int) -> npt.NDArray[np.float32]:
    arr = np.broadcast_to(np.asarray(conf, np.float32), (nc,))
    return arr


def _best_class(
    boxes_cxcywh: npt.NDArray[np.float32],
    class_scores: npt.NDArray[np.float32],
    conf: npt.NDArray[np.float32],
) -> Detections:
    if class_scores.shape[0] == 0:
        return Detections.empty()
    cls = np.argmax(class_scores, axis=1)
    score = class_scores[np.arange(len(cls)), cls]
    keep = np.isfinite(score) & (score >= conf[cls]) & np.all(np.isfinite(boxes_cxcywh), axis=1)
    return Detections(
        cxcywh_to_xyxy(boxes_cxcywh[keep]), score[keep].astype(np.float32), cls[keep].astype(np.int64)
    )


def _check(out: npt.NDArray[np.floating], ndim: int, layout: str) -> npt.NDArray[np.float32]:
    if out.ndim != ndim or out.shape[0] != 1:
        raise LayoutError(f"{layout} expects a batch-1 output of rank {ndim}, got shape {list(out.shape)}")
    return np.asarray(out, np.float32)


def decode_yolov5(
    out: npt.NDArray[np.floating], num_classes: int, conf: float | npt.NDArray[np.float32]
) -> Detections:
    o = _check(out, 3, "yolov5")[0]
    if o.shape[1] != 5 + num_classes:
        raise LayoutError(f"yolov5 expects [1, N, {5 + num_classes}], got {list(out.shape)}")
    return _best_class(o[:, :4], o[:, 5:] * o[:, 4:5], _thresholds(conf, num_classes))


def decode_yolov8(
    out: npt.NDArray[np.floating], num_classes: int, conf: float | npt.NDArray[np.float32]
) -> Detections:
    o = _check(out, 3, "yolov8")[0]
    if o.shape[0] != 4 + num_classes:
        raise LayoutError(f"yolov8 expects [1, {4 + num_classes}, N], got {list(out.shape)}")
    t = o.T
    return _best_class(t[:, :4], t[:, 4:], _thresholds(conf, num_classes))


def decode_e2e(
    out: npt.NDArray[np.floating], num_classes: int, conf: float | npt.NDArray[np.float32]
) -> Detections:
    o = _check(out, 3, "e2e")[0]
    if o.shape[1] != 6:
        raise LayoutError(f"e2e expects [1, K, 6], got {list(out.shape)}")
    cls = np.rint(o[:, 5]).astype(np.int64)
    valid = (cls >= 0) & (cls < num_classes) & np.all(np.isfinite(o), axis=1)
    o, cls = o[valid], cls[valid]
    keep = o[:, 4] >= _thresholds(conf, num_classes)[cls]
    return Detections(np.ascontiguousarray(o[keep, :4]), o[keep, 4].copy(), cls[keep])


def decode_classifier(
    out: npt.NDArray[np.floating],
    num_classes: int,
    conf: float | npt.NDArray[np.float32],
    image_box: tuple[float, float, float, float],
) -> Detections:
    """One detection per class above threshold, boxed as the whole image (``image_box``)."""
    o = _check(out, 2, "classifier")[0]
    if o.shape[0] != num_classes:
        raise LayoutError(f"classifier expects [1, {num_classes}], got {list(out.shape)}")
    if not np.all(np.isfinite(o)):
        return Detections.empty()
    if o.min() < 0 or o.max() > 1:  # logits, not probabilities
        e = np.exp(o - o.max())
        o = e / e.sum()
    keep = np.nonzero(o >= _thresholds(conf, num_classes))[0]
    boxes = np.tile(np.asarray(image_box, np.float32), (len(keep), 1))
    return Detections(boxes, o[keep].astype(np.float32), keep.astype(np.int64))


def decode(
    out: npt.NDArray[np.floating],
    layout: Layout,
    num_classes: int,
    conf: float | npt.NDArray[np.float32],
    image_box: tuple[float, float, float, float],
) -> Detections:
    """Decode one output tensor; boxes come back in model-input pixels, not yet suppressed."""
    if layout == "yolov5":
        return decode_yolov5(out, num_classes, conf)
    if layout == "yolov8":
        return decode_yolov8(out, num_classes, conf)
    if layout == "e2e":
        return decode_e2e(out, num_classes, conf)
    return decode_classifier(out, num_classes, conf, image_box)
