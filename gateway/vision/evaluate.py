"""Measure a model before it watches a site: ``fieldgate model eval`` (report: gateway/vision/modelcli.py).

* **Labelled images** (YOLO format: ``<stem>.txt`` beside or in ``labels/``, one ``class cx cy w h``
  line per object, normalised; no file = no object): per class, detections at the manifest's
  thresholds are matched greedily by score to the labelled boxes at IoU >= ``iou``; precision =
  TP / (TP + FP), recall = TP / (TP + FN). Label class numbers are the model's class indices.
* **Unlabelled negative video** (fog, sunsets, headlights, red roofs: anything the site shows that is
  not a fire): frames are sampled at the camera's ``fps`` in media time and go through the same
  motion measure and ``Confirmer`` as a live camera (``pipeline.run_camera``), so single-frame
  detections per hour and confirmed events per hour are what that footage would raise on the box.
* **Latency**: the time of each in-process inference (letterbox, run, decode, NMS) in ms.

The detector is the camera's (``open_checked`` + ``Detector``), run in this process; the frames are
read by the camera driver's own capture and image code (OpenCV lives in drivers/camera).
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.vision.config import ConfirmConfig, ExpectedFlameZone, Polygon
from gateway.vision.detections import Detections
from gateway.vision.detector import Detector
from gateway.vision.events import Box
from gateway.vision.geometry import iou
from gateway.vision.pipeline import GRAY_WIDTH, _Motion
from gateway.vision.temporal import Confirmer, Observation

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
MAX_LABEL_LINES = 10_000  # a label file is outside input too


class EvalError(ValueError):
    """An input the evaluation cannot use (the message names the file and line)."""


@dataclass(slots=True)
class ClassScore:
    name: str
    role: str
    threshold: float
    objects: int = 0  # labelled boxes
    detections: int = 0
    tp: int = 0

    @property
    def fp(self) -> int:
        return self.detections - self.tp

    @property
    def fn(self) -> int:
        return self.objects - self.tp

    def to_json(self) -> dict[str, Any]:
        return {"class": self.name, "role": self.role, "threshold": round(self.threshold, 4),
                "objects": self.objects, "detections": self.detections, "tp": self.tp, "fp": self.fp,
                "fn": self.fn, "precision": _ratio(self.tp, self.detections), "recall": _ratio(self.tp, self.objects)}


@dataclass(slots=True)
class VideoScore:
    file: str
    fps: float
    frames: int = 0  # inspected (sampled at fps)
    seconds: float = 0.0  # media time covered
    detections: dict[str, int] = field(default_factory=dict)  # single-frame detections per role
    events: dict[str, int] = field(default_factory=dict)  # confirmed (new) events per role

    def to_json(self) -> dict[str, Any]:
        hours = self.seconds / 3600.0

        def per_hour(counts: dict[str, int]) -> dict[str, float | None]:
            return {k: (round(v / hours, 1) if hours > 0 else None) for k, v in sorted(counts.items())}

        return {"file": self.file, "fps": self.fps, "frames": self.frames, "seconds": round(self.seconds, 2),
                "detections": dict(sorted(self.detections.items())), "detections_per_hour": per_hour(self.detections),
                "events": dict(sorted(self.events.items())), "events_per_hour": per_hour(self.events)}


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


class Timer:
    """Per-inference latency in milliseconds."""

    def __init__(self) -> None:
        self.samples: list[float] = []

    def detect(self, detector: Detector, image: npt.NDArray[np.uint8]) -> Detections:
        t0 = time.perf_counter()
        found = detector.detect(image)
        self.samples.append((time.perf_counter() - t0) * 1000.0)
        return found

    def to_json(self) -> dict[str, Any]:
        if not self.samples:
            return {"frames": 0}
        ms = np.asarray(self.samples)
        return {"frames": len(ms), "mean": round(float(ms.mean()), 2), "p50": round(float(np.percentile(ms, 50)), 2),
                "p95": round(float(np.percentile(ms, 95)), 2), "max": round(float(ms.max()), 2)}


def image_files(images: Path) -> list[Path]:
    if not images.is_dir():
        raise EvalError(f"--images {images} is not a directory")
    return sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def default_labels_dir(images: Path) -> Path:
    """YOLO convention: .../images/x.jpg -> .../labels/x.txt; otherwise the labels sit beside the images."""
    sibling = images.parent / "labels"
    return sibling if images.name == "images" and sibling.is_dir() else images


def read_labels(path: Path, width: int, height: int, num_classes: int) -> list[tuple[int, Box]]:
    """(class, xyxy pixel box) per line of a YOLO label file; [] when there is none (a negative image)."""
    if not path.is_file():
        return []
    out: list[tuple[int, Box]] = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            if n > MAX_LABEL_LINES:
                raise EvalError(f"{path}: more than {MAX_LABEL_LINES} lines")
            parts = line.split()
            if not parts:
                continue
            try:
                cls, cx, cy, w, h = int(parts[0]), *(float(v) for v in parts[1:5])
            except (ValueError, TypeError):
                raise EvalError(f"{path}:{n}: expected 'class cx cy w h', got {line.strip()[:80]!r}") from None
            if len(parts) != 5 or not 0 <= cls < num_classes or not all(
                    math.isfinite(v) and 0.0 <= v <= 1.0 for v in (cx, cy, w, h)):
                raise EvalError(f"{path}:{n}: expected 'class cx cy w h' with class 0..{num_classes - 1} and "
                                f"coordinates 0..1 (YOLO format), got {line.strip()[:80]!r}")
            out.append((cls, ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width,
                              (cy + h / 2) * height)))
    return out


def score_images(detector: Detector, images: Path, labels: Path, iou_match: float, timer: Timer) -> list[ClassScore]:
    stills: Any = importlib.import_module("drivers.camera.stills")
    scores = [ClassScore(c.name, c.role, float(t)) for c, t in zip(detector.classes, detector.conf, strict=True)]
    for path in image_files(images):
        image = stills.read_image(path)
        if image is None:
            raise EvalError(f"{path}: not an image OpenCV can read")
        h, w = image.shape[:2]
        truth = read_labels(labels / f"{path.stem}.txt", w, h, len(scores))
        found = timer.detect(detector, image)
        for k, score in enumerate(scores):
            if score.role == "ignore":
                continue  # never reported by the detector, so neither counted as found nor missed
            boxes = [b for c, b in truth if c == k]
            mine = found.select(found.class_ids == k)
            score.objects += len(boxes)
            score.detections += len(mine)
            score.tp += _matches(mine, boxes, iou_match)
    return [s for s in scores if s.role != "ignore"]


def _matches(found: Detections, truth: Sequence[Box], iou_match: float) -> int:
    """Greedy by score: each labelled box is claimed by at most one detection."""
    free = list(truth)
    hits = 0
    for i in np.argsort(-found.scores):
        x1, y1, x2, y2 = (float(v) for v in found.boxes[i])
        overlaps = [iou((x1, y1, x2, y2), b) for b in free]
        if overlaps and max(overlaps) >= iou_match:
            free.pop(int(np.argmax(overlaps)))
            hits += 1
    return hits


@dataclass(frozen=True, slots=True)
class Watch:
    """What the camera config says about confirmation (defaults: a camera with no settings)."""

    fps: float = 2.0
    confirm: ConfirmConfig = field(default_factory=ConfirmConfig)
    roi: Sequence[Polygon] = ()
    exclusions: Sequence[Polygon] = ()
    expected_flames: Sequence[ExpectedFlameZone] = ()


def score_video(detector: Detector, video: Path, watch: Watch, timer: Timer) -> VideoScore:
    if not video.is_file():
        raise EvalError(f"--video {video} does not exist")
    snapshot: Any = importlib.import_module("drivers.camera.snapshot")
    result = VideoScore(str(video), watch.fps)
    confirmer = Confirmer(video.stem, watch.confirm, watch.roi, watch.exclusions, watch.expected_flames)
    prev_gray: npt.NDArray[np.uint8] | None = None
    first_t: float | None = None
    end_t = next_due = 0.0
    grabbed = 0
    for t, image in _frames(video):
        grabbed += 1
        first_t = t if first_t is None else first_t
        end_t = t
        if t < next_due:
            continue  # sampled at the camera's fps in media time, as run_camera does in a lossless replay
        next_due = max(next_due + 1.0 / watch.fps, t)
        found = timer.detect(detector, image)
        observations = [Observation((float(b[0]), float(b[1]), float(b[2]), float(b[3])),
                                    detector.roles[int(c)], float(s))
                        for b, s, c in zip(found.boxes, found.scores, found.class_ids, strict=True)]
        for ob in observations:
            result.detections[ob.role] = result.detections.get(ob.role, 0) + 1
        h, w = image.shape[:2]
        gray = snapshot.to_gray_small(image, GRAY_WIDTH)
        measure = _Motion(gray, prev_gray, gray.shape[1] / w)
        prev_gray = gray
        for ev in confirmer.update(t, (w, h), observations, measure, float(gray.mean())):
            if ev.kind == "new":
                result.events[ev.role] = result.events.get(ev.role, 0) + 1
        result.frames += 1
    if first_t is None or result.frames == 0:
        raise EvalError(f"--video {video}: no frame could be read")
    # Media time covered: first to last frame plus one frame interval (n frames span n intervals).
    result.seconds = (end_t - first_t) * grabbed / (grabbed - 1) if grabbed > 1 else 0.0
    return result


def _frames(video: Path) -> Iterator[tuple[float, npt.NDArray[np.uint8]]]:
    """Every frame of ``video`` with its media time, through the camera's own lossless file capture."""
    capture: Any = importlib.import_module("drivers.camera.capture")
    grabber = capture.FrameGrabber(str(video), lossless=True, queue_size=4)
    grabber.start()
    try:
        while True:
            frame = grabber.get(10.0)
            if frame is None:
                if grabber.ended:
                    return
                raise EvalError(f"--video {video}: no frame for 10 s ({grabber.stats.last_error or 'stalled'})")
            yield frame.t, frame.image
    finally:
        grabber.stop()
