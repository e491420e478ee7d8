"""Greedy non-maximum suppression, per class, in numpy."""

from __future__ import annotations

import numpy as np

from gateway.vision.detections import Detections, iou_matrix


def nms(dets: Detections, iou_threshold: float = 0.45, max_detections: int = 100) -> Detections:
    """Keep the best box of every cluster of same-class boxes overlapping more than ``iou_threshold``.

    Classes never suppress each other: boxes are shifted apart by class id (the usual offset trick),
    so a smoke plume over a fire keeps both.
    """
    if len(dets) == 0:
        return dets
    span = float(np.max(dets.boxes)) + 1.0 if dets.boxes.size else 1.0
    shifted = dets.boxes + (dets.class_ids.astype(np.float32) * span)[:, None]
    order = np.argsort(-dets.scores, kind="stable")
    keep: list[int] = []
    # Bound the candidate list: a degenerate output (every anchor above threshold) must not cost O(N^2).
    order = order[: max(max_detections * 30, 1000)]
    ious = iou_matrix(shifted[order], shifted[order])
    suppressed = np.zeros(len(order), bool)
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(int(order[i]))
        if len(keep) >= max_detections:
            break
        suppressed |= ious[i] > iou_threshold
    return dets.select(np.asarray(keep, np.intp))
