"""Start-time checks of a manifest against its model (issue 21), on a model with real YOLOv8 output
shapes and Ultralytics-style metadata: the random-weight stand-in, built here at run time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from drivers.onnx.backend import OnnxBackend
from drivers.onnx.synthetic import constant_output_model, yolov8n_sized_model
from gateway.vision.manifest import load_manifest, sha256_file
from gateway.vision.modelcheck import ModelCheckError, check_model
from gateway.vision.worker import DetectorWorker, WorkerError, WorkerSpec

SIZE = 64
SMOKE_FIRE = "{0: 'smoke', 1: 'fire'}"  # the trained detector's order in the issue
FIRE_SMOKE = "[{name: fire, role: fire}, {name: smoke, role: smoke}]"  # the README example's order


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """YOLOv8n-like random weights, output [1, 6, 84], names {0: smoke, 1: fire}."""
    return yolov8n_sized_model(tmp_path_factory.mktemp("m") / "smoke-fire.onnx", size=SIZE, names=["smoke", "fire"])


def manifest(tmp_path: Path, model: Path, **over: object) -> Path:
    fields: dict[str, object] = {
        "file": str(model), "sha256": sha256_file(model), "layout": "yolov8",
        "input": f"{{width: {SIZE}, height: {SIZE}}}", "classes": FIRE_SMOKE,
        "licence": "test", "provenance": "built by the test",
    }
    fields.update(over)
    path = tmp_path / "m.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in fields.items() if v is not None))
    return path


def start_worker(path: Path) -> DetectorWorker:
    """Start a real detector worker on ``path``; the caller closes it."""
    async def scenario() -> DetectorWorker:
        worker = DetectorWorker(WorkerSpec(path, threads=1, slots=1, timeout=30))
        try:
            await worker.start(SIZE * SIZE * 3)
        except BaseException:
            worker.close()
            raise
        return worker

    return asyncio.run(asyncio.wait_for(scenario(), 120))


def refused_at_start(path: Path) -> str:
    with pytest.raises(WorkerError) as e:
        start_worker(path).close()
    text = str(e.value)
    assert "\n" not in text, "a manifest fault is one line"
    return text


def check(path: Path) -> list[str]:
    loaded = load_manifest(path)
    return check_model(loaded, OnnxBackend(loaded.model_path, threads=1)).warnings


def test_class_order_that_differs_from_the_model_names_is_refused(tmp_path: Path, stand_in: Path) -> None:
    # Before: accepted, and every flame of this model was reported as smoke.
    text = refused_at_start(manifest(tmp_path, stand_in))
    assert "['fire', 'smoke']" in text and "['smoke', 'fire']" in text and "classes_by: name" in text


def test_classes_by_name_maps_each_role_to_the_model_index(tmp_path: Path, stand_in: Path) -> None:
    worker = start_worker(manifest(tmp_path, stand_in, classes_by="name"))
    try:
        assert worker.roles == ["smoke", "fire"]
        assert any("mapped by name" in n for n in worker.info["notes"])
    finally:
        worker.close()


def test_classes_in_the_model_order_start(tmp_path: Path, stand_in: Path) -> None:
    classes = "[{name: Smoke, role: smoke}, {name: fire, role: fire}]"
    worker = start_worker(manifest(tmp_path, stand_in, classes=classes))
    try:
        assert worker.roles == ["smoke", "fire"] and worker.info["layout"] == "yolov8"
    finally:
        worker.close()


def test_a_class_the_model_does_not_have_is_refused_even_by_name(tmp_path: Path, stand_in: Path) -> None:
    classes = "[{name: fire, role: fire}, {name: smoke, role: smoke}, {name: person, role: ignore}]"
    text = refused_at_start(manifest(tmp_path, stand_in, classes=classes, classes_by="name"))
    assert "exactly the model's classes" in text


@pytest.mark.parametrize("layout", ["yolov5", "e2e", "classifier"])
def test_explicit_layout_that_does_not_fit_the_yolov8_output_is_refused(
    tmp_path: Path, stand_in: Path, layout: str
) -> None:
    # Before: the camera started and logged a decode warning on every frame (ran blind).
    text = refused_at_start(manifest(tmp_path, stand_in, layout=layout, classes="null"))
    assert f"layout: {layout}" in text and "[1, 6, 84]" in text


def test_yolov8_layout_on_an_nms_export_is_refused(tmp_path: Path) -> None:
    model = constant_output_model(tmp_path / "nms.onnx", np.zeros((1, 300, 6), np.float32), (SIZE, SIZE),
                                  metadata={"names": SMOKE_FIRE, "task": "detect"})
    text = refused_at_start(manifest(tmp_path, model, classes="null"))
    assert "layout: yolov8" in text and "[1, 300, 6]" in text and "looks like e2e" in text


def test_wrong_class_count_is_refused_without_names_metadata(tmp_path: Path) -> None:
    model = constant_output_model(tmp_path / "anon.onnx", np.zeros((1, 6, 84), np.float32), (SIZE, SIZE))
    classes = "[{name: fire, role: fire}, {name: smoke, role: smoke}, {name: person, role: ignore}]"
    text = refused_at_start(manifest(tmp_path, model, classes=classes))
    assert "3 classes" in text and "[1, 7, N]" in text
    assert any("cannot be checked" in w for w in check(manifest(tmp_path, model)))


def test_input_size_and_task_are_checked(tmp_path: Path, stand_in: Path) -> None:
    with pytest.raises(ModelCheckError, match="says input 96x96 but the model takes 64x64"):
        check(manifest(tmp_path, stand_in, classes="null", input="{width: 96, height: 96}"))
    model = constant_output_model(tmp_path / "cls.onnx", np.zeros((1, 6, 84), np.float32), (SIZE, SIZE),
                                  metadata={"names": SMOKE_FIRE, "task": "segment"})
    with pytest.raises(ModelCheckError, match="task is 'segment'"):
        check(manifest(tmp_path, model, classes="null"))


def test_nms_iou_on_a_model_with_nms_in_the_graph_is_warned_about(tmp_path: Path) -> None:
    # Before: silently ignored.
    model = constant_output_model(tmp_path / "nms.onnx", np.zeros((1, 300, 6), np.float32), (SIZE, SIZE),
                                  metadata={"names": SMOKE_FIRE, "task": "detect"})
    warnings = check(manifest(tmp_path, model, layout="e2e", classes="null", nms_iou=0.5))
    assert any("nms_iou 0.5 cannot apply" in w for w in warnings)
    assert check(manifest(tmp_path, model, layout="e2e", classes="null")) == []
    worker = start_worker(manifest(tmp_path, model, layout="auto", classes="null", nms_iou=0.5))
    try:
        assert worker.info["layout"] == "e2e" and any("nms_iou" in w for w in worker.info["warnings"])
    finally:
        worker.close()
