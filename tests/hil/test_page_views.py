"""The technician's page in a real browser: both languages, the trend chart with data, the camera view with
its masks and boxes (and a detector test), with screenshots kept as CI artefacts (never committed).

The demo site runs for real (the Modbus simulator with --animate, a broker, `fieldgate run`), so the chart
is drawn from readings that went through the data path. Screenshots go to $FIELDGATE_ARTIFACTS (CI sets it
or not), else /tmp/fieldgate-artifacts.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from gateway.camview import TAP
from gateway.status import StatusConfig
from gateway.status.auth import set_password
from gateway.vision.temporal import Observation
from sim.broker import Broker
from sim.gateway_process import GatewayProcess
from sim.support import free_port, wait_for
from tests.hil.demo_site import demo_copy, port_open
from tests.hil.test_status_page import CHROMIUM_FLAGS, PageCells, api_status, chromium
from tests.unit.test_camview import tower
from tests.unit.test_status_server import FakeGateway, Running

pytestmark = [pytest.mark.hil, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[2]


def artifacts() -> Path:
    folder = Path(os.environ.get("FIELDGATE_ARTIFACTS") or Path(tempfile.gettempdir()) / "fieldgate-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def browse(url: str, language: str, screenshot: Path | None = None) -> str:
    """The DOM after the page's script ran, in a browser whose language is ``language``; and a screenshot."""
    flags = [f"--lang={language}", f"--accept-lang={language}"]
    with tempfile.TemporaryDirectory(prefix="fg-chromium-") as profile:
        base = [chromium(), *CHROMIUM_FLAGS, *flags, f"--user-data-dir={profile}"]
        dom = subprocess.run([*base, url], capture_output=True, text=True, timeout=120)
        assert dom.returncode == 0, dom.stderr[-3000:]
        if screenshot is not None:
            shot = [a for a in base if a != "--dump-dom"]
            done = subprocess.run([*shot, f"--screenshot={screenshot}", "--window-size=1400,1800",
                                   "--hide-scrollbars", url], capture_output=True, text=True, timeout=120)
            assert done.returncode == 0 and screenshot.stat().st_size > 10_000, done.stderr[-3000:]
    return dom.stdout


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The demo site running for real; yields its status port once the level has a few minutes' history."""
    chromium()
    tmp = tmp_path_factory.mktemp("demo")
    broker = Broker(tmp / "broker").start()
    try:
        modbus_port, status_port = free_port(), free_port()
        site = demo_copy(tmp, modbus_port=modbus_port, broker_port=broker.port, status_port=status_port)
        sim = subprocess.Popen([sys.executable, "-m", "sim.modbus", str(site), "--animate"], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        process = None
        try:
            wait_for(lambda: port_open(modbus_port), 20, "the Modbus simulator listening")
            process = GatewayProcess(site, tmp / "gateway.log").start()
            wait_for(lambda: any(p.get("point") == "reservoir.level" and p.get("q") == "good"
                                 for p in api_status(status_port).get("points", [])), 60,
                     "reservoir.level on the page")
            yield status_port
        finally:
            if process is not None:
                process.stop()
            sim.terminate()
            sim.wait(10)
    finally:
        broker.stop()


def trend_svg(dom: str) -> str:
    match = re.search(r'<svg[^>]*class="trend-chart".*?</svg>', dom, re.S)
    assert match, "no trend chart in the page"
    return match.group(0)


@pytest.mark.parametrize(("language", "words"), [
    ("zh-CN", ("测点", "趋势", "告警历史", "运行正常", "已连接", "最近 1 小时")),
    ("en-US", ("Points", "Trends", "Alarm history", "healthy", "connected", "last hour")),
])
def test_the_demo_page_in_both_languages_with_a_trend(demo: int, language: str, words: tuple[str, ...]) -> None:
    time.sleep(3)  # a few more readings in the minute buckets
    shot = artifacts() / f"status-page-{language}.png"
    dom = browse(f"http://127.0.0.1:{demo}/", language, shot)
    expected_lang = "zh-CN" if language == "zh-CN" else "en"
    assert f'<html lang="{expected_lang}">' in dom
    for word in words:
        assert word in dom, (word, dom[:3000])
    page = PageCells()
    page.feed(dom)
    assert page.rows["reservoir.level"]["unit"] == "m"
    svg = trend_svg(dom)
    assert 'data-point="reservoir.level"' in svg  # the first point is charted by default
    buckets = int(re.search(r'data-buckets="(\d+)"', svg).group(1))  # type: ignore[union-attr]
    assert buckets >= 1, svg[:500]
    values = [float(v) for v in re.search(r'class="trend"[^>]*data-values="([^"]+)"', svg).group(1).split()]  # type: ignore[union-attr]
    assert all(15.0 < v < 35.0 for v in values), values  # the simulated level: 24 m ± 3 and a slow rise
    assert 'class="threshold"' in svg and 'data-level="25.5"' in svg  # the demo's level rule
    label = "高于 25.5（reservoir.level.high）" if language == "zh-CN" else "above 25.5 (reservoir.level.high)"
    assert label in svg


def test_the_chart_of_a_chosen_point_over_24_hours(demo: int) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{demo}/trend.svg?point=rain.intensity&span=24h",
                                timeout=10) as response:
        svg = response.read().decode()
    assert 'data-point="rain.intensity"' in svg and 'data-step="120"' in svg and 'class="trend"' in svg


def test_the_camera_view_with_masks_boxes_and_a_detector_test(tmp_path: Path) -> None:
    """The status server with a held frame of a flame-like patch: the page draws ROI, exclusion and the
    model's box; a logged-in detector test runs the baseline model in a child process and is drawn too."""
    cv2 = pytest.importorskip("cv2")
    np = pytest.importorskip("numpy")
    chromium()
    image = np.full((240, 320, 3), (120, 110, 100), np.uint8)
    cv2.rectangle(image, (60, 120), (120, 200), (40, 170, 255), -1)  # BGR orange: flame-coloured
    TAP.offer("tower", time.time(), image, [Observation((60, 120, 120, 200), "fire", 0.87)])
    users = tmp_path / "users"
    set_password(users, "tech", "correct horse")
    view = FakeGateway()
    view.gateway = SimpleNamespace(config=SimpleNamespace(cameras=[tower()]), history=None,  # type: ignore[attr-defined]
                                   latest={})
    port = free_port()
    server = Running(StatusConfig(listen=f"127.0.0.1:{port}", users_file=users), view)
    origin = f"http://127.0.0.1:{port}"
    try:
        login = urllib.request.Request(origin + "/login", json.dumps({"user": "tech", "password": "correct horse"})
                                       .encode(), {"Content-Type": "application/json", "Origin": origin})
        with urllib.request.urlopen(login, timeout=10) as response:
            cookie = response.headers["Set-Cookie"].split(";")[0]
        detect = urllib.request.Request(origin + "/api/action/detect", json.dumps({"camera": "tower"}).encode(),
                                        {"Content-Type": "application/json", "Origin": origin, "Cookie": cookie})
        with urllib.request.urlopen(detect, timeout=120) as response:
            result = json.loads(response.read())["result"]
        fire = [d for d in result["detections"] if d["role"] == "fire"]
        assert fire and fire[0]["verdict"] == "counts", result  # inside the ROI, outside the exclusion

        dom = browse(origin + "/", "zh-CN", artifacts() / "camera-view-zh-CN.png")
    finally:
        server.stop()
        TAP.forget("tower")
    match = re.search(r'<svg[^>]*class="camera-view".*?</svg>', dom, re.S)
    assert match, dom[:3000]
    svg = match.group(0)
    assert 'data-roi="1"' in svg and 'data-exclusions="1"' in svg and 'data-boxes="1"' in svg
    assert int(re.search(r'data-tested="(\d+)"', svg).group(1)) >= 1  # type: ignore[union-attr]
    assert 'class="roi"' in svg and 'class="exclusion"' in svg and "fire 0.87" in svg
    assert "会计入检测" in svg  # the tested box, with its verdict, in the page's language
    assert '<image href="/camera.jpg?camera=tower' in svg
