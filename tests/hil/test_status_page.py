"""The status page end to end: simulated gauge → gateway → status server → headless Chromium.

The test sets a value on the simulated Modbus device and reads it back from the DOM that
Chromium built by running the page's script (which fetches /api/status), then changes the value
and the device's health and sees the page follow. When the site config has a ``status:`` section
(the daemon serves the page itself) the gateway is the real ``fieldgate run`` process; until then
the real ``Gateway`` object runs in this process with a ``StatusServer`` on the same event loop.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import shutil
import ssl
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

from gateway.config import load_site
from gateway.config.site import SiteConfig
from gateway.status.auth import set_password
from sim.broker import Broker
from sim.gateway_process import GatewayProcess
from sim.modbus import SimServer, SimUnit
from sim.support import free_port, wait_for

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


def write_site(tmp: Path, modbus_port: int, broker_port: int, status_port: int, status_extra: str = "") -> Path:
    status = f"status: {{listen: '127.0.0.1:{status_port}'{status_extra}}}\n" if daemon_serves_status() else ""
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


def api_status(port: int, cafile: Path | None = None) -> dict[str, Any]:
    """/api/status over http, or over https trusting only ``cafile``; {} while it does not answer."""
    scheme, context = ("https", ssl.create_default_context(cafile=str(cafile))) if cafile else ("http", None)
    try:
        with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/api/status", timeout=5, context=context) as response:
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


def render_page(port: int, trusted_cert: Path | None = None) -> PageCells:
    """Load the page in headless Chromium, let its script fetch /api/status, and parse the DOM.

    With ``trusted_cert`` the page is loaded over https, and Chromium accepts that certificate's key
    only (--ignore-certificate-errors-spki-list pins it; any other certificate is still an error).
    """
    flags, url = [], f"http://127.0.0.1:{port}/"
    if trusted_cert is not None:
        flags, url = [f"--ignore-certificate-errors-spki-list={spki_pin(trusted_cert)}"], f"https://127.0.0.1:{port}/"
    with tempfile.TemporaryDirectory(prefix="fg-chromium-") as profile:
        result = subprocess.run([chromium(), *CHROMIUM_FLAGS, *flags, f"--user-data-dir={profile}", url],
                                capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    cells = PageCells()
    cells.feed(result.stdout)
    return cells


def spki_pin(cert_path: Path) -> str:
    """base64(SHA-256(SubjectPublicKeyInfo)): how Chromium names a key to accept."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode("ascii")


def simulated_gauge(config_path: Path, modbus_port: int, value: float) -> tuple[SimServer, SimUnit, Any]:
    """The site's gauge (unit 7) on a started Modbus simulator, reading ``value``: (server, unit, point)."""
    level = next(p for b in load_site(config_path).buses for d in b.devices for p in d.points)
    gauge = SimUnit(7)
    gauge.set_point(level, value)
    return SimServer([gauge], port=modbus_port).start(), gauge, level


def test_page_shows_a_value_changed_on_the_simulated_device(tmp_path: Path, broker: Broker) -> None:
    chromium()
    modbus_port, status_port = free_port(), free_port()
    config_path = write_site(tmp_path, modbus_port, broker.port, status_port)
    sim, gauge, level = simulated_gauge(config_path, modbus_port, 12.5)
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
            assert (row["value"], row["q"]) == ("—", "communication failed"), row
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


def test_the_daemon_serves_the_page_over_tls_to_chromium(tmp_path: Path, broker: Broker) -> None:
    """The daemon with status.tls and a self-signed pair made here: Chromium renders the live value over
    https, `fieldgate status --config` reads it trusting the pair, and a login gets a Secure cookie."""
    from tests.unit.test_status_cli import run_cli
    from tests.unit.test_status_tls import self_signed_pair

    chromium()
    modbus_port, status_port = free_port(), free_port()
    cert, key = self_signed_pair(tmp_path)
    users = tmp_path / "users"
    set_password(users, "tech", "correct horse")
    config_path = write_site(tmp_path, modbus_port, broker.port, status_port,
                             f", users_file: {users}, tls: {{cert_file: {cert}, key_file: {key}}}")
    sim, _, _ = simulated_gauge(config_path, modbus_port, 21.25)
    try:
        with gateway_running(config_path, status_port, tmp_path):
            wait_for(lambda: point(api_status(status_port, cert), "res.level").get("value") == 21.25, 30,
                     "res.level = 21.25 in /api/status over https")
            page = render_page(status_port, trusted_cert=cert)
            assert page.texts.get("title") == "Page test reservoir (page-gw)", page.texts
            row = page.rows["res.level"]
            assert (row["value"], row["unit"], row["q"]) == ("21.25", "m", "good"), row

            assert run_cli(["status", "--config", str(config_path), "--json"]) in (0, 2)
            assert api_status(status_port) == {}  # plain http on the TLS port gets nothing

            origin = f"https://127.0.0.1:{status_port}"
            request = urllib.request.Request(
                origin + "/login", json.dumps({"user": "tech", "password": "correct horse"}).encode(),
                {"Content-Type": "application/json", "Origin": origin}, method="POST")
            context = ssl.create_default_context(cafile=str(cert))
            with urllib.request.urlopen(request, timeout=10, context=context) as response:
                cookie = response.headers["Set-Cookie"]
            assert "Secure" in [attr.strip() for attr in cookie.split(";")], cookie
    finally:
        sim.stop()
