"""The worker: the fast letterbox-into-blob path gives the very numbers of the reference path,
the weak-anchor pre-filter changes no detection, and the child (stages overlapped on three
threads, or inline on one) answers every frame in order, bad frames included, exactly as the
in-process Detector does. No timing here: speed is bench/vision.py's business."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from drivers.onnx.backend import OnnxBackend
from drivers.onnx.synthetic import constant_output_model
from gateway.vision.decode import decode
from gateway.vision.detections import Detections
from gateway.vision.detector import Detector
from gateway.vision.letterbox import (
    BlobCanvas,
    apply_letterbox,
    letterbox_params,
    numpy_split,
    to_blob,
    unmap_boxes,
)
from gateway.vision.manifest import load_manifest, sha256_file
from gateway.vision.nms import nms
from gateway.vision.worker import DetectorWorker, WorkerSpec

REPO = Path(__file__).resolve().parents[2]
BASELINE = REPO / "models" / "baseline-fire-smoke.yaml"
SPLITS = {"numpy": numpy_split, "cv2": OnnxBackend.split}


def reference_blob(image: np.ndarray, w: int, h: int, rgb: bool, scale: float, pad: int) -> np.ndarray:
    lb = letterbox_params(image.shape[1], image.shape[0], w, h)
    return to_blob(apply_letterbox(image, lb, OnnxBackend.resize, pad_value=pad), rgb, scale)


@pytest.mark.parametrize("split", sorted(SPLITS))
@pytest.mark.parametrize("rgb", [True, False])
def test_blob_canvas_equals_the_reference_path(split: str, rgb: bool) -> None:
    rng = np.random.default_rng(7)
    canvas = BlobCanvas(96, 64, rgb, 1 / 255.0, 114)
    # Landscape, portrait, exact fit (no resize), tiny, odd sizes; the geometry changes every frame,
    # so the padding must be redrawn each time (a stale pad from the previous shape would show).
    for h, w in ((48, 64), (200, 50), (64, 96), (1, 1), (33, 97), (48, 64)):
        image = rng.integers(0, 256, (h, w, 3), np.uint8)
        lb = letterbox_params(w, h, 96, 64)
        canvas.fill(image, lb, OnnxBackend.resize, SPLITS[split])
        np.testing.assert_array_equal(canvas.blob, reference_blob(image, 96, 64, rgb, 1 / 255.0, 114))


def test_blob_canvas_refuses_what_it_cannot_fill() -> None:
    canvas = BlobCanvas(32, 32, True, 1.0, 0)
    with pytest.raises(ValueError, match="HxWx3"):
        canvas.fill(np.zeros((10, 10), np.uint8), letterbox_params(10, 10, 32, 32), OnnxBackend.resize)
    with pytest.raises(ValueError, match="does not fit"):
        canvas.fill(np.zeros((10, 10, 3), np.uint8), letterbox_params(10, 10, 64, 64), OnnxBackend.resize)


def yolov8_output(rng: np.random.Generator, nc: int, n: int) -> np.ndarray:
    out = rng.random((1, 4 + nc, n), dtype=np.float32) * 0.45  # background just under threshold
    out[0, :4] = rng.uniform(4, 60, (4, n))
    hits = rng.choice(n, 12, replace=False)
    out[0, 4 + rng.integers(0, nc, 12), hits] = rng.uniform(0.3, 0.99, 12)  # some pass, some not
    out[0, 4 + 1, hits[0]] = np.nan  # a NaN score: dropped either way
    out[0, 0, hits[1]] = np.inf  # a non-finite box: dropped either way
    return out


def test_prefilter_changes_no_detection(tmp_path: Path) -> None:
    """Detector.finish (with the pre-filter) == decode + role filter + NMS on the full output,
    with per-class thresholds that differ (fire 0.6, smoke 0.4, ignore at the floor)."""
    rng = np.random.default_rng(3)
    nc, n = 5, 300
    out = yolov8_output(rng, nc, n)
    model = constant_output_model(tmp_path / "m.onnx", out, input_hw=(64, 64))
    (tmp_path / "m.yaml").write_text(
        f"file: m.onnx\nsha256: '{sha256_file(model)}'\nlayout: yolov8\ninput: {{width: 64, height: 64}}\n"
        "classes: [{name: fire, role: fire}, {name: smoke, role: smoke}, {name: a, role: ignore},"
        " {name: b, role: fire}, {name: c, role: ignore}]\n"
        "thresholds: {fire: 0.6, smoke: 0.4}\nnms_iou: 0.5\nlicence: test\nprovenance: test\n")
    det = Detector(load_manifest(tmp_path / "m.yaml"), OnnxBackend(model, threads=1))
    lb = letterbox_params(64, 64, 64, 64)
    got = det.finish([out], lb, 64, 64)
    full = decode(out, "yolov8", nc, det.conf, lb.content_box)
    assert len(full) >= 3  # the case is not vacuous
    kept = nms(full.select(np.asarray([r != "ignore" for r in det.roles])[full.class_ids]),
               det.nms_iou, det.max_detections)
    want = Detections(unmap_boxes(kept.boxes, lb, 64, 64), kept.scores, kept.class_ids)
    order_got, order_want = np.lexsort(got.boxes.T), np.lexsort(want.boxes.T)
    np.testing.assert_array_equal(got.boxes[order_got], want.boxes[order_want])
    np.testing.assert_array_equal(got.scores[order_got], want.scores[order_want])
    np.testing.assert_array_equal(got.class_ids[order_got], want.class_ids[order_want])
    # And through the real session, detect == prepare + run + finish.
    frame = rng.integers(0, 256, (40, 70, 3), np.uint8)
    canvas = det.new_canvas()
    frame_lb = det.prepare(frame, canvas)
    same(det.detect(frame), det.finish(det.backend.run(canvas.blob), frame_lb, 70, 40))


def same(a: Detections, b: Detections) -> None:
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.class_ids, b.class_ids)


def scene(k: int) -> np.ndarray:
    """Frames that differ in size and content, some with a flame, some without."""
    h, w = ((120, 160), (90, 200), (160, 120))[k % 3]
    img = np.full((h, w, 3), (20, 40, 25), np.uint8)
    if k % 2 == 0:
        y, x = 10 + 3 * k, 15 + 2 * k
        img[y : y + 30, x : x + 18] = (30, 140, 255)
    return img


@pytest.mark.parametrize("overlap", [True, False])
def test_worker_answers_in_order_like_the_in_process_detector(overlap: bool) -> None:
    loaded = load_manifest(BASELINE)
    local = Detector(loaded, OnnxBackend(loaded.model_path, threads=1))
    frames = [scene(k) for k in range(9)]
    bad = 4  # a frame with no pixels: its own error answer, the pipeline keeps going

    async def scenario() -> list[Detections | None]:
        w = DetectorWorker(WorkerSpec(BASELINE, threads=1, slots=3, timeout=30, overlap=overlap))
        await w.start(max(f.nbytes for f in frames))
        got: dict[int, Detections | None] = {}
        try:
            seqs: list[int] = []
            for i, f in enumerate(frames):
                if not w.free_slots:
                    r = await w.result()
                    got[r.seq] = r.detections
                seqs.append(w.submit(f[:0] if i == bad else f))
            while w.inflight:
                r = await w.result()
                got[r.seq] = r.detections
            assert w.restarts == 0
            assert list(got) == seqs  # answered in submission order
            return [got[s] for s in seqs]
        finally:
            w.close()

    results = asyncio.run(asyncio.wait_for(scenario(), 120))
    for i, (frame, r) in enumerate(zip(frames, results, strict=True)):
        if i == bad:
            assert r is None
            continue
        assert r is not None
        same(r, local.detect(frame))
        assert (len(r) > 0) == (i % 2 == 0), f"frame {i}"


def test_recv_waits_on_the_pipe_until_a_message_eof_or_timeout() -> None:
    async def scenario() -> None:
        w = DetectorWorker(WorkerSpec(BASELINE))
        ours, theirs = mp.Pipe(duplex=True)
        w._conn = ours
        try:
            assert await w._recv(0.05) is None  # silent: timeout
            asyncio.get_running_loop().call_later(0.02, theirs.send, ("ok", 1))
            assert await w._recv(10) == ("ok", 1)  # arrives while waiting
            theirs.send(("ok", 2))
            assert await w._recv(10) == ("ok", 2)  # already there
            theirs.close()
            assert await w._recv(10) is None  # the child is gone: EOF, at once
        finally:
            ours.close()
            w._conn = None

    asyncio.run(asyncio.wait_for(scenario(), 30))
