"""Model manifests: strict parsing, sha256 refusal, class names from metadata; the shipped baseline."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from drivers.onnx.backend import OnnxBackend
from drivers.onnx.synthetic import constant_output_model
from gateway.vision.detector import Detector
from gateway.vision.manifest import ManifestError, classes_from_metadata, load_manifest, sha256_file

REPO = Path(__file__).resolve().parents[2]
BASELINE = REPO / "models" / "baseline-fire-smoke.yaml"


def write_manifest(tmp_path: Path, model: Path, **over: object) -> Path:
    fields: dict[str, object] = {
        "file": model.name, "sha256": sha256_file(model), "layout": "auto",
        "input": "{width: 64, height: 64}",
        "classes": "[{name: fire, role: fire}, {name: smoke, role: smoke}]",
        "licence": "test", "provenance": "built by the test",
    }
    fields.update(over)
    path = tmp_path / "m.yaml"
    path.write_text("".join(f"{k}: {v}\n" for k, v in fields.items()))
    return path


def test_sha_mismatch_is_refused_with_both_hashes(tmp_path: Path) -> None:
    model = constant_output_model(tmp_path / "m.onnx", np.zeros((1, 6, 8), np.float32))
    path = write_manifest(tmp_path, model, sha256="'" + "0" * 64 + "'")
    with pytest.raises(ManifestError, match="does not match its manifest") as e:
        load_manifest(path)
    assert sha256_file(model) in str(e.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"layout": "yolov9"}, "layout"),
        ({"surprise": "1"}, "surprise"),
        ({"classes": "[{name: a, role: ignore}]"}, "never raise"),
        ({"classes": "[{name: a, role: fire}, {name: a, role: smoke}]"}, "unique"),
        ({"file": "gone.onnx"}, "does not exist"),
        ({"sha256": "xyz"}, "sha256"),
    ],
)
def test_bad_manifests_say_what_is_wrong(tmp_path: Path, override: dict[str, str], message: str) -> None:
    model = constant_output_model(tmp_path / "m.onnx", np.zeros((1, 6, 8), np.float32))
    with pytest.raises(ManifestError, match=message):
        load_manifest(write_manifest(tmp_path, model, **override))


def test_not_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    p = tmp_path / "x.yaml"
    p.write_text("file: [unclosed\n")
    with pytest.raises(ManifestError, match="YAML syntax error"):
        load_manifest(p)
    p.write_text("- a\n- b\n")
    with pytest.raises(ManifestError, match="mapping"):
        load_manifest(p)
    with pytest.raises(ManifestError, match="file not found"):
        load_manifest(tmp_path / "absent.yaml")


def test_classes_from_model_metadata(tmp_path: Path) -> None:
    out = np.zeros((1, 7, 20), np.float32)
    out[0, :, 2] = [30, 30, 10, 10, 0.0, 0.0, 0.9]  # class 2 "smoke"
    model = constant_output_model(tmp_path / "m.onnx", out,
                                  metadata={"names": "{0: 'person', 1: 'Fire', 2: 'smoke'}"})
    path = write_manifest(tmp_path, model, classes="null")
    det = Detector(load_manifest(path), OnnxBackend(model, threads=1))
    assert det.roles == ["ignore", "fire", "smoke"] and det.layout == "yolov8"
    found = det.detect(np.zeros((64, 64, 3), np.uint8))
    assert list(found.class_ids) == [2]
    np.testing.assert_allclose(found.boxes[0], [25, 25, 35, 35], atol=1e-4)
    with pytest.raises(ManifestError, match="literal"):
        classes_from_metadata({"names": "__import__('os')"})


def test_shipped_baseline_matches_its_build_script(tmp_path: Path) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("build_baseline", REPO / "models" / "build_baseline.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.check() == [], "committed baseline differs: run python models/build_baseline.py"
    # A copy with one byte changed is refused.
    shutil.copy(BASELINE, tmp_path / BASELINE.name)
    onnx_bytes = bytearray((REPO / "models" / "baseline-fire-smoke.onnx").read_bytes())
    onnx_bytes[-1] ^= 1
    (tmp_path / "baseline-fire-smoke.onnx").write_bytes(bytes(onnx_bytes))
    with pytest.raises(ManifestError, match="does not match"):
        load_manifest(tmp_path / BASELINE.name)


def test_baseline_finds_flame_not_red_object() -> None:
    loaded = load_manifest(BASELINE)
    det = Detector(loaded, OnnxBackend(loaded.model_path, threads=1))
    frame = np.full((120, 160, 3), (20, 40, 25), np.uint8)  # dark green hillside (BGR)
    frame[40:80, 30:50] = (30, 140, 255)    # orange flame body
    frame[90:110, 100:140] = (30, 30, 200)  # red object
    found = det.detect(frame)
    fire = found.select(found.class_ids == 0)
    assert len(fire) >= 1
    best = fire.boxes[np.argmax(fire.scores)]
    np.testing.assert_allclose(best, [30, 40, 50, 80], atol=2.0)
    assert not np.any((fire.boxes[:, 0] > 90) & (fire.boxes[:, 1] > 85))
