"""Polygons (normalised 0..1) against boxes in frame pixels."""

from __future__ import annotations

from collections.abc import Sequence

Point = tuple[float, float]
Box = tuple[float, float, float, float]


def point_in_polygon(x: float, y: float, poly: Sequence[Point]) -> bool:
    """Even-odd ray casting; ``poly`` and the point in the same coordinates."""
    inside = False
    n = len(poly)
    for i in range(n):
        x1, y1 = poly[i]
        x2, y2 = poly[(i + 1) % n]
        if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
            inside = not inside
    return inside


def centre(box: Box) -> Point:
    return ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)


def box_in_polygon(box: Box, poly: Sequence[Point], frame_w: int, frame_h: int) -> bool:
    """Box centre inside the normalised polygon."""
    cx, cy = centre(box)
    return point_in_polygon(cx / frame_w, cy / frame_h, poly)


def polygon_box(poly: Sequence[Point], frame_w: int, frame_h: int) -> Box:
    xs = [p[0] * frame_w for p in poly]
    ys = [p[1] * frame_h for p in poly]
    return (min(xs), min(ys), max(xs), max(ys))


def iou(a: Box, b: Box) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def area(b: Box) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def intersection_over_first(a: Box, b: Box) -> float:
    """How much of ``a`` lies inside ``b``."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return iw * ih / area(a) if area(a) > 0 else 0.0


def contains_point(box: Box, p: Point) -> bool:
    return box[0] <= p[0] <= box[2] and box[1] <= p[1] <= box[3]


def expand(box: Box, frac: float, frame_w: int, frame_h: int) -> Box:
    dx, dy = (box[2] - box[0]) * frac, (box[3] - box[1]) * frac
    return (max(0.0, box[0] - dx), max(0.0, box[1] - dy), min(float(frame_w), box[2] + dx),
            min(float(frame_h), box[3] + dy))
