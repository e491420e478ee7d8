"""Each output layout, produced by a real onnxruntime session from a tiny constant-output model,
decodes to the boxes we put in (and layout auto-detection picks the right decoder)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from drivers.onnx.backend import ModelLoadError, OnnxBackend
from drivers.onnx.synthetic import constant_output_model
from gateway.vision.decode import LayoutError, decode, detect_layout
from gateway.vision.detections import Detections, iou_matrix
from gateway.vision.letterbox import letterbox_params, nearest_resize, unmap_boxes
from gateway.vision.nms import nms

NC = 2  # fire, smoke


def run_constant(tmp_path: Path, out: np.ndarray) -> np.ndarray:
    path = constant_output_model(tmp_path / "m.onnx", out.astype(np.float32))
    backend = OnnxBackend(path, threads=1)
    blob = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    (result,) = backend.run(blob)
    return result


def sorted_boxes(d: Detections) -> np.ndarray:
    order = np.lexsort((d.boxes[:, 0], d.class_ids))
    return np.column_stack([d.boxes[order], d.scores[order], d.class_ids[order]])


def test_yolov5_objectness_times_class(tmp_path: Path) -> None:
    rows = np.zeros((20, 5 + NC), np.float32)
    rows[:, :4] = [30, 30, 4, 4]
    rows[3] = [20, 20, 10, 8, 0.9, 0.9, 0.1]   # fire 0.81 at (15,16)-(25,24)
    rows[4] = [21, 20, 10, 8, 0.9, 0.8, 0.1]   # duplicate of row 3 at 0.72: suppressed
    rows[9] = [40, 44, 6, 12, 0.8, 0.2, 0.75]  # smoke 0.6 at (37,38)-(43,50)
    rows[11] = [10, 10, 4, 4, 0.3, 0.9, 0.0]   # obj x class = 0.27: below threshold
    out = run_constant(tmp_path, rows[None])
    assert detect_layout(out.shape, NC) == "yolov5"
    dets = nms(decode(out, "yolov5", NC, 0.3, (0, 0, 64, 64)))
    np.testing.assert_allclose(
        sorted_boxes(dets), [[15, 16, 25, 24, 0.81, 0], [37, 38, 43, 50, 0.6, 1]], atol=1e-5
    )


def test_yolov8_channels_first(tmp_path: Path) -> None:
    anchors = np.zeros((4 + NC, 50), np.float32)
    anchors[:4, :] = 1.0
    anchors[:, 7] = [32, 32, 16, 16, 0.1, 0.7]  # smoke (24,24)-(40,40)
    anchors[:, 8] = [33, 32, 16, 16, 0.1, 0.6]  # overlaps 7 -> suppressed
    anchors[:, 30] = [8, 50, 8, 4, 0.95, 0.2]   # fire (4,48)-(12,52)
    out = run_constant(tmp_path, anchors[None])
    assert out.shape == (1, 6, 50)
    assert detect_layout(out.shape, NC) == "yolov8"
    dets = nms(decode(out, "yolov8", NC, 0.5, (0, 0, 64, 64)))
    np.testing.assert_allclose(
        sorted_boxes(dets), [[4, 48, 12, 52, 0.95, 0], [24, 24, 40, 40, 0.7, 1]], atol=1e-5
    )


def test_end_to_end_xyxy_score_class(tmp_path: Path) -> None:
    k = np.zeros((10, 6), np.float32)
    k[0] = [5, 6, 20, 30, 0.88, 1]
    k[1] = [40, 40, 60, 62, 0.66, 0]
    k[2] = [1, 1, 2, 2, 0.05, 0]     # padding row below threshold
    k[3] = [1, 1, 2, 2, 0.99, 7]     # class id out of range: dropped, not an IndexError
    out = run_constant(tmp_path, k[None])
    assert detect_layout(out.shape, NC) == "e2e"
    dets = decode(out, "e2e", NC, 0.25, (0, 0, 64, 64))
    np.testing.assert_allclose(
        sorted_boxes(dets), [[40, 40, 60, 62, 0.66, 0], [5, 6, 20, 30, 0.88, 1]], atol=1e-5
    )


def test_classifier_whole_image_and_logits(tmp_path: Path) -> None:
    out = run_constant(tmp_path, np.asarray([[0.2, 0.7]], np.float32))
    assert detect_layout(out.shape, NC) == "classifier"
    dets = decode(out, "classifier", NC, 0.5, (0, 8, 64, 56))
    np.testing.assert_allclose(sorted_boxes(dets), [[0, 8, 64, 56, 0.7, 1]], atol=1e-6)
    logits = decode(np.asarray([[4.0, -2.0]], np.float32), "classifier", NC, 0.5, (0, 0, 1, 1))
    assert list(logits.class_ids) == [0] and logits.scores[0] > 0.99


def test_ambiguous_and_unknown_shapes_are_refused() -> None:
    with pytest.raises(LayoutError, match="could be any"):
        detect_layout((1, 300, 6), 1)  # yolov5 with one class, or end-to-end
    with pytest.raises(LayoutError, match="matches no layout"):
        detect_layout((1, 84, 8400), 2)  # a COCO model under a 2-class manifest
    with pytest.raises(LayoutError):
        decode(np.zeros((1, 6, 10), np.float32), "yolov5", NC, 0.5, (0, 0, 1, 1))


def test_non_finite_outputs_never_become_boxes() -> None:
    a = np.zeros((1, 6, 3), np.float32)
    a[0, :, 0] = [np.nan, 5, 5, 5, 0.9, 0]
    a[0, :, 1] = [5, 5, 5, 5, np.inf, 0]
    assert len(decode(a, "yolov8", NC, 0.5, (0, 0, 1, 1))) == 0


def test_nms_keeps_classes_apart_and_suppresses_duplicates() -> None:
    boxes = np.asarray([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]], np.float32)
    d = Detections(boxes, np.asarray([0.9, 0.8, 0.7, 0.6], np.float32), np.asarray([0, 0, 1, 0]))
    kept = nms(d, 0.5)
    assert sorted(kept.scores.tolist()) == pytest.approx([0.6, 0.7, 0.9])
    assert iou_matrix(boxes[:1], boxes[1:2])[0, 0] == pytest.approx(81 / 119)


def test_letterbox_round_trip() -> None:
    lb = letterbox_params(320, 240, 64, 64)
    assert (lb.new_w, lb.new_h, lb.pad_x, lb.pad_y) == (64, 48, 0, 8)
    model_boxes = np.asarray([[0, 8, 64, 56], [16, 20, 32, 30]], np.float32)
    np.testing.assert_allclose(
        unmap_boxes(model_boxes, lb, 320, 240), [[0, 0, 320, 240], [80, 60, 160, 110]], atol=1e-4
    )
    img = np.arange(12 * 8 * 3, dtype=np.uint8).reshape(8, 12, 3)
    assert nearest_resize(img, 6, 4).shape == (4, 6, 3)


def test_bad_model_file_gives_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf")
    with pytest.raises(ModelLoadError, match="cannot load model"):
        OnnxBackend(bad)
    with pytest.raises(ModelLoadError, match="cannot load"):
        OnnxBackend(tmp_path / "missing.onnx")
