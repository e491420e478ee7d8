"""One camera end to end: capture -> shared-memory worker -> temporal confirmation -> events + snapshots.

The daemon calls ``run_camera(cfg, on_event, progress)``. OpenCV (capture, JPEG) and the inference
library are reached through the camera driver and the inference backend the registry builds when the
camera starts (gateway.contracts.CameraDriver, Backend), so importing gateway.vision never loads cv2 or
onnxruntime.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from gateway.camview import TAP
from gateway.contracts import CameraDriver
from gateway.registry import build_camera
from gateway.shared import Progress
from gateway.vision.config import VisionSettings
from gateway.vision.events import Box, DetectionEvent
from gateway.vision.manifest import load_manifest
from gateway.vision.snapstore import SnapshotStore
from gateway.vision.temporal import Confirmer, Observation
from gateway.vision.tiling import TileSweep
from gateway.vision.worker import DetectorWorker, WorkerSpec

log = logging.getLogger("fieldgate.vision")
GRAY_WIDTH = 320  # motion/flicker measures run on a grey copy this wide
OnEvent = Callable[[DetectionEvent], Awaitable[None]]


@dataclasses.dataclass(slots=True)
class CameraStats:
    inferences: int = 0
    lost: int = 0
    events: int = 0
    infer_s_total: float = 0.0
    raw: dict[str, int] = dataclasses.field(default_factory=dict)  # single-frame detections per role


class _Motion:
    """Relative picture change inside a box between consecutive inspected frames (0..1)."""

    def __init__(self, gray: npt.NDArray[np.uint8], prev: npt.NDArray[np.uint8] | None, scale: float) -> None:
        self.gray, self.prev, self.scale = gray, prev, scale

    def __call__(self, box: Box) -> float:
        if self.prev is None or self.prev.shape != self.gray.shape:
            return 0.0
        s = self.scale
        x1, y1 = int(box[0] * s), int(box[1] * s)
        x2, y2 = max(x1 + 1, int(np.ceil(box[2] * s))), max(y1 + 1, int(np.ceil(box[3] * s)))
        a = self.gray[y1:y2, x1:x2].astype(np.int16)
        b = self.prev[y1:y2, x1:x2].astype(np.int16)
        return float(np.abs(a - b).mean() / 255.0) if a.size else 0.0


async def run_camera(
    cfg: VisionSettings,
    on_event: OnEvent,
    progress: Progress,
    *,
    stats: CameraStats | None = None,
) -> None:
    """Watch one camera until cancelled (or, for a lossless file replay, until the file ends).

    Raises WorkerError / ManifestError at start if the model cannot be used: a config error that
    retrying will not fix. Stream failures are retried forever inside the capture thread.
    """
    camera = build_camera(cfg)
    stats = stats if stats is not None else CameraStats()
    loaded = load_manifest(cfg.detector.model)  # fail fast, in the daemon, with the manifest's message
    tile_w, tile_h = loaded.manifest.input.width, loaded.manifest.input.height
    store = SnapshotStore(Path(cfg.snapshots.dir), cfg.snapshots.max_bytes)
    confirmer = Confirmer(cfg.name, cfg.confirm, cfg.roi, cfg.exclusions, cfg.expected_flames)
    sweep = TileSweep(tile_w, tile_h, cfg.far_field.overlap, cfg.far_field.full_view_every) \
        if cfg.far_field.enabled else None
    lossless = cfg.file_pacing == "lossless"
    grabber = camera.open()
    d = cfg.detector
    worker = DetectorWorker(WorkerSpec(loaded.path, d.backend, d.threads, d.graph_optimization, d.slots,
                                       d.inference_timeout))
    pending: dict[int, tuple[Any, Box]] = {}  # seq -> (frame, view)
    prev_gray: npt.NDArray[np.uint8] | None = None
    period = 1.0 / cfg.fps
    next_due = 0.0
    grabber.start()
    try:
        while True:
            # Fill the ring: the worker infers on one frame while we copy the next (pipelining).
            while worker.pid is None or worker.free_slots > 0:
                if not lossless and worker.inflight > 0 and time.time() < next_due:
                    break  # live: collect the result rather than sit on it waiting for the next frame
                frame = await asyncio.to_thread(grabber.get, 1.0)
                progress.beat()
                if frame is None:
                    break
                if frame.t < next_due:
                    continue  # inference runs at cfg.fps; the grab thread keeps the stream drained
                next_due = max(next_due + period, frame.t) if lossless else frame.t + period
                h, w = frame.image.shape[:2]
                if worker.pid is None or w * h * 3 > worker.slot_bytes:
                    for s in list(pending):
                        pending.pop(s)
                    await worker.start(w * h * 3)
                view: Box = sweep.next_view(w, h) if sweep else (0.0, 0.0, float(w), float(h))
                x1, y1, x2, y2 = (int(v) for v in view)
                seq = worker.submit(np.ascontiguousarray(frame.image[y1:y2, x1:x2]))
                pending[seq] = (frame, view)
            if worker.inflight == 0:
                if grabber.ended:
                    return
                continue
            result = await worker.result()
            progress.beat()
            entry = pending.pop(result.seq, None)
            for lost in [s for s in pending if s < result.seq or worker.inflight == 0]:
                pending.pop(lost)  # the worker restarted: those frames never come back
            if entry is None or result.detections is None:
                stats.lost += 1
                continue
            frame, view = entry
            stats.inferences += 1
            stats.infer_s_total += result.infer_s
            dets = result.detections
            ox, oy = view[0], view[1]
            observations = [
                Observation((float(b[0] + ox), float(b[1] + oy), float(b[2] + ox), float(b[3] + oy)),
                            result.roles[int(c)], float(s))
                for b, s, c in zip(dets.boxes, dets.scores, dets.class_ids, strict=True)
            ]
            for ob in observations:
                stats.raw[ob.role] = stats.raw.get(ob.role, 0) + 1
            TAP.offer(cfg.name, frame.t, frame.image, observations)  # the status page's camera view
            h, w = frame.image.shape[:2]
            gray = camera.to_gray_small(frame.image, GRAY_WIDTH)
            measure = _Motion(gray, prev_gray, gray.shape[1] / w)
            prev_gray = gray
            events = confirmer.update(frame.t, (w, h), observations, measure, float(gray.mean()), view)
            for ev in events:
                if ev.kind != "end":
                    ev = _with_snapshots(ev, frame.image, observations, store, camera, cfg)
                stats.events += 1
                await on_event(ev)
    finally:
        grabber.stop()
        worker.close()
        TAP.forget(cfg.name)


def _with_snapshots(
    ev: DetectionEvent, image: npt.NDArray[np.uint8], observations: list[Observation],
    store: SnapshotStore, camera: CameraDriver, cfg: VisionSettings,
) -> DetectionEvent:
    q, mw = cfg.snapshots.jpeg_quality, cfg.snapshots.max_width
    boxes = [(*ev.box, ev.role, ev.score)] + [(*o.box, o.role, o.score) for o in observations]
    base = f"{ev.event_id}-{ev.kind}-{int(ev.t * 1000)}"
    try:
        boxed = store.put(base, camera.encode_jpeg(image, boxes[:1], q, mw))
        raw = store.put(base + "-raw", camera.encode_jpeg(image, (), q, mw))
    except (OSError, ValueError) as e:  # a full disk must not swallow the alarm itself
        log.error("snapshot for %s not stored: %s", ev.event_id, e)
        return ev
    return dataclasses.replace(ev, snapshot=str(boxed), snapshot_raw=str(raw))
