"""The camera view: the held frame, ROI/masks and detections as one SVG; what the gates make of a detection."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest

from drivers.camera.config import CameraConfig
from gateway.camview import TAP, FrameTap
from gateway.camview.probe import verdict
from gateway.status import StatusConfig
from gateway.vision.temporal import Observation
from sim.support import free_port
from tests.unit.test_status_server import FakeGateway, Running

np = pytest.importorskip("numpy")
BASELINE = Path(__file__).resolve().parents[2] / "models" / "baseline-fire-smoke.yaml"


def tower(**extra: object) -> CameraConfig:
    return CameraConfig.model_validate({
        "type": "camera", "name": "tower", "source": "/dev/null", "detector": {"model": str(BASELINE)},
        "roi": [{"name": "valley", "points": [[0, 0.25], [1, 0.25], [1, 1], [0, 1]]}],
        "exclusions": [{"name": "road <lamp>", "points": [[0, 0.75], [0.25, 0.75], [0.25, 1], [0, 1]]}],
        **extra})


def test_the_tap_copies_at_most_once_a_second() -> None:
    tap = FrameTap()
    image = np.zeros((120, 160, 3), np.uint8)
    tap.offer("c", 100.0, image, [Observation((1, 2, 3, 4), "fire", 0.9)])
    image[:] = 255  # the pipeline reuses its buffers: the held copy must not change
    tap.offer("c", 100.5, image, [])
    held = tap.latest("c")
    assert held is not None and held.t == 100.0 and held.size == (160, 120)
    assert int(held.image.max()) == 0 and held.detections == ((1.0, 2.0, 3.0, 4.0, "fire", 0.9),)
    tap.offer("c", 101.2, image, [])
    assert tap.latest("c").t == 101.2  # type: ignore[union-attr]


def test_verdicts_follow_the_pipelines_gates() -> None:
    cam = tower(expected_flames=[{"points": [[0.5, 0.25], [1, 0.25], [1, 0.5], [0.5, 0.5]]}])
    size = (160, 120)
    assert verdict(cam, (10, 40, 30, 60), "fire", 0.9, 0.5, size) == "counts"
    assert verdict(cam, (10, 40, 30, 60), "fire", 0.4, 0.5, size) == "below_threshold"
    assert verdict(cam, (10, 2, 30, 20), "fire", 0.9, 0.5, size) == "outside_roi"
    assert verdict(cam, (5, 100, 30, 118), "smoke", 0.9, 0.5, size) == "excluded"
    assert verdict(cam, (100, 35, 150, 55), "fire", 0.9, 0.5, size) == "expected_flame"
    assert verdict(cam, (100, 35, 150, 55), "smoke", 0.9, 0.5, size) == "counts"


def test_the_page_serves_the_frame_with_masks_and_boxes() -> None:
    pytest.importorskip("cv2")
    image = np.full((120, 160, 3), 90, np.uint8)
    TAP.offer("tower", 1_764_000_000.0, image, [Observation((16, 40, 80, 100), "fire", 0.91)])
    view = FakeGateway()
    view.gateway = SimpleNamespace(config=SimpleNamespace(cameras=[tower()]), history=None,  # type: ignore[attr-defined]
                                   latest={})
    server = Running(StatusConfig(listen=f"127.0.0.1:{free_port()}"), view)
    base = f"http://127.0.0.1:{server.port}"
    try:
        with urllib.request.urlopen(base + "/camera.svg?camera=tower", timeout=10) as response:
            svg = response.read().decode()
        assert 'data-roi="1" data-exclusions="1"' in svg and 'data-boxes="1"' in svg
        assert 'points="0.0,30.0 160.0,30.0 160.0,120.0 0.0,120.0"' in svg  # normalised → frame pixels
        assert "road &lt;lamp&gt;" in svg and "<lamp>" not in svg
        assert 'href="/camera.jpg?camera=tower&amp;t=1764000000.000"' in svg
        assert '<rect x="16.0" y="40.0" width="64.0" height="60.0"' in svg and "fire 0.91" in svg
        with urllib.request.urlopen(base + "/camera.jpg?camera=tower", timeout=10) as response:
            assert response.read()[:2] == b"\xff\xd8"
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(base + "/camera.svg?camera=../../etc/passwd", timeout=10)
        assert missing.value.code == 404
    finally:
        server.stop()
        TAP.forget("tower")
