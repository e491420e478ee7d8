"""Pre-processing as trained (issue 21): a frame that must be shrunk reaches the model exactly as the
exporter's own predictor would feed it (Ultralytics: letterbox with INTER_LINEAR, grey 114, RGB, /255),
unless the manifest says otherwise (``input.resize``, ``input.color``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("onnxruntime")

from drivers.onnx.backend import OnnxBackend  # noqa: E402
from drivers.onnx.synthetic import yolov8n_sized_model  # noqa: E402
from gateway.vision.detector import Detector  # noqa: E402
from gateway.vision.manifest import load_manifest, sha256_file  # noqa: E402
from gateway.vision.modelcheck import open_checked  # noqa: E402

SIZE = 640


def reference_letterbox(image: npt.NDArray[np.uint8], size: int, interpolation: int = cv2.INTER_LINEAR,
                        rgb: bool = True) -> npt.NDArray[np.float32]:
    """A plain letterbox written the way Ultralytics' LetterBox (auto=False, centred, scale-up) and its
    predictor's pre-processing do it: resize, pad with 114, BGR -> RGB, HWC -> NCHW, / 255."""
    h, w = image.shape[:2]
    r = min(size / h, size / w)
    new_w, new_h = round(w * r), round(h * r)
    if (new_w, new_h) != (w, h):
        image = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    dw, dh = (size - new_w) / 2, (size - new_h) / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    image = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114))
    chw = (image[..., ::-1] if rgb else image).transpose(2, 0, 1)
    return np.ascontiguousarray(chw[None]).astype(np.float32) / np.float32(255.0)


def scene(w: int, h: int, seed: int = 0) -> npt.NDArray[np.uint8]:
    """Fine texture (where shrinking filters differ most) with a small flame-coloured blob."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    cv2.ellipse(img, (w // 3, h // 2), (12, 30), 0, 0, 360, (20, 110, 250), -1)
    return img


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return yolov8n_sized_model(tmp_path_factory.mktemp("m") / "v8.onnx", size=SIZE, names=["smoke", "fire"])


def manifest(tmp_path: Path, model: Path, extra_input: str = "") -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(f"file: {model}\nsha256: '{sha256_file(model)}'\nlayout: yolov8\n"
                    f"input: {{width: {SIZE}, height: {SIZE}{extra_input}}}\nlicence: test\nprovenance: test\n")
    return path


def prepared(path: Path, image: npt.NDArray[np.uint8]) -> tuple[Detector, npt.NDArray[np.float32]]:
    loaded, backend, _ = open_checked(path)
    det = Detector(loaded, backend)
    canvas = det.new_canvas()
    det.prepare(image, canvas)
    return det, canvas.blob


@pytest.mark.parametrize("size", [(1920, 1080), (1917, 1077), (1280, 720), (800, 1200)])
def test_shrunk_frames_match_the_exporters_letterbox_by_default(tmp_path: Path, model: Path,
                                                                size: tuple[int, int]) -> None:
    # Before: the backend shrank with INTER_AREA, so these differed by up to ~0.5 per pixel.
    image = scene(*size)
    _, blob = prepared(manifest(tmp_path, model), image)
    np.testing.assert_allclose(blob, reference_letterbox(image, SIZE), rtol=0, atol=1e-6)


def test_the_model_sees_what_it_saw_in_training(tmp_path: Path, model: Path) -> None:
    image = scene(1920, 1080, seed=3)
    det, blob = prepared(manifest(tmp_path, model), image)
    ours = det.backend.run(blob)[0]
    theirs = OnnxBackend(model, threads=1).run(reference_letterbox(image, SIZE))[0]
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)


def test_manifest_can_ask_for_area_resize_and_bgr(tmp_path: Path, model: Path) -> None:
    image = scene(1920, 1080, seed=5)
    _, area = prepared(manifest(tmp_path, model, ", resize: area"), image)
    np.testing.assert_allclose(area, reference_letterbox(image, SIZE, cv2.INTER_AREA), rtol=0, atol=1e-6)
    _, bgr = prepared(manifest(tmp_path, model, ", color: bgr"), image)
    np.testing.assert_allclose(bgr, reference_letterbox(image, SIZE, rgb=False), rtol=0, atol=1e-6)
    assert load_manifest(manifest(tmp_path, model)).manifest.input.resize == "linear"
