"""The status page end to end: simulated gauge → gateway → status server → headless Chromium.

The test sets a value on the simulated Modbus device and reads it back from the DOM that
Chromium built by running the page's script (which fetches /api/status), then changes the value
and the device's health and sees the page follow. When the site config has a ``status:`` section
(the daemon serves the page itself) the gateway is the real ``fieldgate run`` process; until then
the real ``Gateway`` object runs in this process with a ``StatusServer`` on the same event loop.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from drivers.modbus.simulator import SimServer, SimUnit
from gateway.config import load_site
from gateway.config.site import SiteConfig
from tests.hil.rig import Broker, GatewayProcess, free_port, wait_for

pytestmark = pytest.mark.hil

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
                  "--dump-dom", "--virtual-time-budget=8000"]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return found


def daemon_serves_status() -> bool:
    return "status" in SiteConfig.model_fields


def write_site(tmp: Path, modbus_port: int, broker_port: int, status_port: int) -> Path:
    status = f"status: {{listen: '127.0.0.1:{status_port}'}}\n" if daemon_serves_status() else ""
    text = f"""
gateway: {{id: page-gw, name: Page test reservoir, state_dir: {tmp / 'state'}}}
buses:
  - type: modbus_tcp
    name: plant
    host: 127.0.0.1
    port: {modbus_port}
    devices:
      - name: gauge
        unit_id: 7
        poll_interval: 200ms
        timeout: 300ms
        retries: 0
        points:
          - {{id: res.level, table: holding, address: 0, type: float32, byte_order: CDAB, unit: m,
             report: {{deadband: 0.001}}}}
links:
  - {{type: mqtt, name: county, host: 127.0.0.1, port: {broker_port}, reconnect_min: 0.2, reconnect_max: 1}}
{status}"""
    path = tmp / "site.yaml"
    path.write_text(text)
    return path


@contextmanager
def gateway_in_process(config_path: Path, status_port: int) -> Iterator[None]:
    """The real Gateway and a StatusServer on one event loop in a thread (until the daemon serves it)."""
    from gateway.app import Gateway
    from gateway.status import StatusConfig, StatusServer

    loop = asyncio.new_event_loop()
    stop: asyncio.Event | None = None
    failure: list[BaseException] = []

    async def main() -> None:
        nonlocal stop
        stop = asyncio.Event()
        gateway = Gateway(load_site(config_path), config_path=str(config_path))
        server = StatusServer(StatusConfig(listen=f"127.0.0.1:{status_port}"), gateway)
        serving = asyncio.create_task(server.run())
        try:
            await gateway.run(stop)
        finally:
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)

    def thread_main() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as exc:
            failure.append(exc)
        finally:
            loop.close()

    thread = threading.Thread(target=thread_main, name="gateway", daemon=True)
    thread.start()
    try:
        yield
    finally:
        if stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        assert not thread.is_alive(), "gateway did not stop"
        if failure:
            raise failure[0]


@contextmanager
def gateway_running(config_path: Path, status_port: int, tmp: Path) -> Iterator[None]:
    if not daemon_serves_status():
        with gateway_in_process(config_path, status_port):
            yield
        return
    process = GatewayProcess(config_path, tmp / "gateway.log").start()
    try:
        yield
    except BaseException:
        print(process.log())
        raise
    finally:
        process.stop()


def api_status(port: int) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=5) as response:
            data: dict[str, Any] = json.loads(response.read())
            return data
    except (OSError, urllib.error.URLError, ValueError):
        return {}


def point(status: dict[str, Any], name: str) -> dict[str, Any]:
    return next((p for p in status.get("points", []) if p.get("point") == name), {})


class PageCells(HTMLParser):
    """Collects the text of every table row, keyed by its data-point (points) or first cell (others)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, str]] = {}
        self.texts: dict[str, str] = {}
        self._row: dict[str, str] | None = None
        self._key: str | None = None
        self._cell: str | None = None
        self._id: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr":
            self._row, self._key = {}, a.get("data-point")
        elif tag == "td" and self._row is not None:
            self._cell = (a.get("class") or f"col{len(self._row)}").split()[0]
            self._row[self._cell] = ""
        elif a.get("id") in ("health", "title"):
            self._id = a["id"]
            self.texts[self._id] = ""

    def handle_data(self, data: str) -> None:
        if self._cell is not None and self._row is not None:
            self._row[self._cell] += data
        elif self._id is not None:
            self.texts[self._id] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._cell = None
        elif tag == "tr" and self._row is not None:
            key = self._key or self._row.get("name") or self._row.get("col0")
            if key:
                self.rows[key] = self._row
            self._row = None
        elif self._id is not None:
            self._id = None


def render_page(port: int) -> PageCells:
    """Load the page in headless Chromium, let its script fetch /api/status, and parse the DOM."""
    with tempfile.TemporaryDirectory(prefix="fg-chromium-") as profile:
        result = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                 f"http://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    cells = PageCells()
    cells.feed(result.stdout)
    return cells


def test_page_shows_a_value_changed_on_the_simulated_device(tmp_path: Path, broker: Broker) -> None:
    chromium()
    modbus_port, status_port = free_port(), free_port()
    config_path = write_site(tmp_path, modbus_port, broker.port, status_port)
    level = next(p for b in load_site(config_path).buses for d in b.devices for p in d.points)
    gauge = SimUnit(7)
    gauge.set_point(level, 12.5)
    sim = SimServer([gauge], port=modbus_port).start()
    try:
        with gateway_running(config_path, status_port, tmp_path):
            wait_for(lambda: point(api_status(status_port), "res.level").get("value") == 12.5, 30,
                     "res.level = 12.5 in /api/status")
            wait_for(lambda: all(link.get("connected") for link in api_status(status_port).get("links", [{}])), 30,
                     "the MQTT link connected")

            page = render_page(status_port)
            assert page.texts.get("title") == "Page test reservoir (page-gw)", page.texts
            row = page.rows["res.level"]
            assert (row["value"], row["unit"], row["q"]) == ("12.5", "m", "good"), row
            assert page.rows["county"]["state"] == "connected", page.rows
            assert page.rows["gauge"]["bus"] == "plant", page.rows

            gauge.set_point(level, 37.75)
            wait_for(lambda: point(api_status(status_port), "res.level").get("value") == 37.75, 30,
                     "res.level = 37.75 in /api/status")
            row = render_page(status_port).rows["res.level"]
            assert (row["value"], row["q"]) == ("37.75", "good"), row

            sim.stop()  # the gauge falls silent: the page must say so, with no stale number
            wait_for(lambda: point(api_status(status_port), "res.level").get("q") == "comm_fail", 30,
                     "res.level comm_fail in /api/status")
            row = render_page(status_port).rows["res.level"]
            assert (row["value"], row["q"]) == ("—", "comm_fail"), row
    finally:
        sim.stop()


def test_page_renders_alarms_evidence_and_the_camera_snapshot_with_boxes(tmp_path: Path) -> None:
    """What the rig site above has none of: a camera snapshot, alarms, broadcast evidence, an overdue loop."""
    cv2 = pytest.importorskip("cv2")
    np = pytest.importorskip("numpy")
    from gateway.status import StatusConfig
    from tests.unit.test_status_server import FakeGateway, Running

    chromium()
    jpeg = tmp_path / "tower-1.jpg"
    ok, encoded = cv2.imencode(".jpg", np.full((120, 160, 3), 90, np.uint8))
    assert ok
    jpeg.write_bytes(encoded.tobytes())
    view = FakeGateway()
    view.snap.update({
        "alarms": [{"alarm_id": "res.level.high-1", "rule": "res.level.high", "severity": "critical",
                    "state": "active", "since": 1_764_000_000.0}],
        "evidence": [{"output": "siren-north", "ok": True, "readback": True, "note": "<b>not markup</b>"}],
        "snapshot": {"camera": "tower", "path": str(jpeg), "ts": 1_764_000_100.0,
                     "boxes": [[16, 12, 80, 60, "flame", 0.91], {"box": [100, 60, 150, 110], "label": "smoke"}],
                     "frame": [160, 120]},
        "loops": [{"name": "bus plant", "overdue": True}],
    })
    server = Running(StatusConfig(listen=f"127.0.0.1:{free_port()}"), view)
    try:
        with tempfile.TemporaryDirectory(prefix="fg-chromium-") as profile:
            result = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                     f"http://127.0.0.1:{server.port}/"], capture_output=True, text=True, timeout=120)
    finally:
        server.stop()
    dom = result.stdout
    page = PageCells()
    page.feed(dom)
    assert page.texts["health"] == "OVERDUE: bus plant"
    assert page.rows["res.level.high-1"]["severity"] == "critical"
    assert page.rows["res.level.high-1"]["since"] == "2025-11-24 16:00:00Z"
    assert "&lt;b&gt;not markup&lt;/b&gt;" in dom and "<b>not markup</b>" not in dom  # text, never HTML
    assert '<figure id="camera">' in dom  # shown (not hidden)
    assert 'src="/snapshot.jpg?ts=1764000100"' in dom
    # Boxes overlaid in percent of the frame: 16/160 = 10 %, 12/120 = 10 %, 64/160 = 40 % wide.
    assert 'class="box" style="left: 10%; top: 10%; width: 40%; height: 40%;"><span>flame 0.91</span>' in dom, dom
    assert "<span>smoke</span>" in dom
