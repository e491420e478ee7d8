"""`fieldgate model check` and `fieldgate model eval` (issue 21) on small labelled sets and videos built
here from the synthetic scene generators: the shipped baseline (it finds the synthetic flames) and
the YOLOv8 stand-in with names metadata (real output shapes, random weights)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")

from drivers.onnx.synthetic import yolov8n_sized_model  # noqa: E402
from gateway.cli import main  # noqa: E402
from gateway.vision.manifest import sha256_file  # noqa: E402
from tests.hil.test_vision_video import H, W, flame, lamp, red_object, sky, smoke, write_video  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BASELINE = REPO / "models" / "baseline-fire-smoke.yaml"
HILLSIDE = np.array([25, 45, 20], np.int16)  # the generators' background colour (BGR)


def label_line(image: npt.NDArray[np.uint8], cls: int) -> str:
    """A YOLO label for the one object drawn on the hillside: the box of what differs from it."""
    ys, xs = np.nonzero(np.abs(image.astype(np.int16) - HILLSIDE).max(axis=2) > 40)
    x1, x2, y1, y2 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    return f"{cls} {(x1 + x2) / 2 / W:.6f} {(y1 + y2) / 2 / H:.6f} {(x2 - x1) / W:.6f} {(y2 - y1) / H:.6f}\n"


def labelled_set(root: Path) -> Path:
    """images/ + labels/ in YOLO layout: 8 flames (class 0 fire), 4 smoke plumes (class 1), 6 negatives."""
    images, labels = root / "images", root / "labels"
    images.mkdir(parents=True)
    labels.mkdir()
    rng = np.random.default_rng(11)
    for k in range(8):
        img = flame(k, rng)
        cv2.imwrite(str(images / f"flame{k}.png"), img)
        (labels / f"flame{k}.txt").write_text(label_line(img, 0))
    for k in range(4):
        img = smoke(10 + 5 * k, rng)
        cv2.imwrite(str(images / f"smoke{k}.png"), img)
        (labels / f"smoke{k}.txt").write_text(label_line(img, 1))
    for make in (lamp, red_object, sky):
        for k in range(2):
            cv2.imwrite(str(images / f"{make.__name__}{k}.jpg"), make(k, rng))  # no label: no object
    return images


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sets")
    return {"images": labelled_set(root), "flame": write_video(root / "flame.avi", flame),
            "lamp": write_video(root / "lamp.avi", lamp)}


def evaluate(manifest: Path, out: Path, *args: str) -> dict[str, Any]:
    assert main(["model", "eval", str(manifest), "--out", str(out), "--threads", "1", *args]) == 0
    assert (out / f"{manifest.stem}-eval.md").is_file()
    report: dict[str, Any] = json.loads((out / f"{manifest.stem}-eval.json").read_text())
    return report


def test_eval_reports_recall_and_false_alarms_per_hour_with_the_baseline(
    tmp_path: Path, sets: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    report = evaluate(BASELINE, tmp_path, "--images", str(sets["images"]),
                      "--video", str(sets["flame"]), str(sets["lamp"]), "--fps", "5")
    by_class = {c["class"]: c for c in report["images"]["classes"]}
    fire = by_class["fire"]
    assert fire["objects"] == 8 and fire["threshold"] == 0.5 and fire["recall"] >= 0.75
    assert fire["tp"] + fire["fn"] == 8 and fire["tp"] + fire["fp"] == fire["detections"]
    assert by_class["smoke"]["objects"] == 4
    assert report["images"]["labels"] == str(sets["images"].parent / "labels")  # the YOLO convention
    flame_video, lamp_video = report["videos"]
    # Sampled at 5 of the video's 10 frames/s in media time (epoch-based: a boundary frame may round in).
    assert flame_video["events"].get("fire", 0) >= 1 and 25 <= flame_video["frames"] <= 26
    assert flame_video["seconds"] == pytest.approx(5.0, abs=0.05)
    assert flame_video["events_per_hour"]["fire"] == pytest.approx(flame_video["events"]["fire"] * 720, rel=0.02)
    assert lamp_video["events"].get("fire", 0) == 0  # the camera's temporal confirmation rejects the lamp
    frames = flame_video["frames"] + lamp_video["frames"]
    assert report["latency_ms"]["frames"] == 18 + frames and report["latency_ms"]["p95"] > 0
    assert report["sha256"] == sha256_file(REPO / "models" / "baseline-fire-smoke.onnx")
    text = capsys.readouterr().out
    assert "| fire | fire | 0.5 | 8 |" in text and "confirmed events" in text and "Latency per frame" in text


def stand_in_manifest(tmp_path: Path, classes: str, extra: str = "") -> Path:
    model = tmp_path / "smoke-fire.onnx"
    if not model.exists():
        yolov8n_sized_model(model, size=64, names=["smoke", "fire"])
    path = tmp_path / "smoke-fire.yaml"
    path.write_text(f"file: {model.name}\nsha256: '{sha256_file(model)}'\nlayout: yolov8\n"
                    f"input: {{width: 64, height: 64}}\nclasses: {classes}\nlicence: test\nprovenance: test\n{extra}")
    return path


def test_check_refuses_the_readme_class_order_on_a_smoke_fire_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    readme_order = "[{name: fire, role: fire}, {name: smoke, role: smoke}]"
    assert main(["model", "check", str(stand_in_manifest(tmp_path, readme_order))]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "refused" in err and "classes_by: name" in err
    assert main(["model", "check", str(stand_in_manifest(tmp_path, readme_order, "classes_by: name\n"))]) == 0
    out = capsys.readouterr().out
    assert "ok - layout yolov8, classes 0 smoke (smoke), 1 fire (fire)" in out and "mapped by name" in out


def test_eval_on_the_yolov8_stand_in_uses_the_model_class_order(
    tmp_path: Path, sets: dict[str, Path]
) -> None:
    manifest = stand_in_manifest(tmp_path, "[{name: fire, role: fire}, {name: smoke, role: smoke}]",
                                 "classes_by: name\n")
    report = evaluate(manifest, tmp_path / "out", "--images", str(sets["images"]), "--video", str(sets["lamp"]))
    assert [c["name"] for c in report["classes"]] == ["smoke", "fire"]
    # Label class numbers are the model's indices: class 0 (the set's "fire") is this model's smoke.
    assert {c["class"]: c["objects"] for c in report["images"]["classes"]} == {"smoke": 8, "fire": 4}
    assert 10 <= report["videos"][0]["frames"] <= 11  # 5 s at the default 2 frames/s


def test_a_bad_label_line_names_the_file_and_line(
    tmp_path: Path, sets: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    images = tmp_path / "imgs"
    images.mkdir()
    cv2.imwrite(str(images / "a.png"), flame(0, np.random.default_rng(0)))
    (images / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.2 0.2\n")
    assert main(["model", "eval", str(BASELINE), "--images", str(images), "--out", str(tmp_path)]) == 1
    assert f"{images / 'a.txt'}:2: expected 'class cx cy w h'" in capsys.readouterr().err
