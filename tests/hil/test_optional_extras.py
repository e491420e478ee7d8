"""Optional means optional, as a new user meets it: ``pip install fieldgate`` (no extras) into a fresh venv,
then ``fieldgate validate`` and a short ``fieldgate run`` of the demo site against the simulator and mosquitto.

The wheel is built from a copy of the sources (pip would otherwise leave build/ in the clone); its
dependencies come through pip as usual, so pip's cache keeps this to seconds after the first run. The
in-process version of these checks (every core module imports with numpy hidden) is
tests/unit/test_optional_extras.py.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.config import load_site
from sim.ab_box import copy_sources
from sim.broker import Broker
from sim.modbus import SimServer, SimUnit
from sim.platform import Platform
from sim.support import free_port, wait_for

pytestmark = [pytest.mark.hil, pytest.mark.slow, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]


def build_wheel(out: Path) -> Path:
    """fieldgate's own wheel (no dependencies), built from a copy of the sources."""
    src = copy_sources(out / "src")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out / "wheels"), str(src)],
                   check=True, capture_output=True, timeout=240)
    return next((out / "wheels").glob("fieldgate-*.whl"))


@pytest.fixture(scope="module")
def bare_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding fieldgate and its required dependencies only."""
    root = tmp_path_factory.mktemp("bare")
    wheel = build_wheel(root)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    done = subprocess.run([str(venv / "bin/pip"), "install", "-q", "--only-binary=:all:", str(wheel)],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    return venv


def fieldgate(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin/fieldgate"), *args], capture_output=True, text=True, timeout=60,
                          cwd=venv.parent)


def test_the_venv_really_has_no_vision_extra(bare_venv: Path) -> None:
    for module in ("numpy", "cv2", "onnxruntime"):
        done = subprocess.run([str(bare_venv / "bin/python"), "-c", f"import {module}"], capture_output=True,
                              timeout=60)
        assert done.returncode != 0, f"{module} is installed in the bare venv"


def test_validate_a_site_without_cameras(bare_venv: Path) -> None:
    done = fieldgate(bare_venv, "validate", str(REPO / "config/reservoir.yaml"))
    assert done.returncode == 0, done.stderr
    assert "config/reservoir.yaml: ok — gateway res-qingshui-01" in done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("site", ["forest-tower.yaml", "chemical-park.yaml"])
def test_a_site_with_cameras_gets_one_clear_error(bare_venv: Path, site: str) -> None:
    for command in ("validate", "run"):
        done = fieldgate(bare_venv, command, str(REPO / "config" / site))
        assert done.returncode != 0
        problems = [line for line in done.stderr.splitlines() if "vision extra" in line]
        assert len(problems) == 1, done.stderr
        assert problems[0].startswith(f"{REPO / 'config' / site}:")
        assert "pip install 'fieldgate[vision]'" in problems[0]
        assert "Traceback" not in done.stderr


def demo_site(tmp: Path, modbus_port: int, broker_port: int) -> Path:
    text = (REPO / "config/demo.yaml").read_text()
    for old, new in (("port: 15020", f"port: {modbus_port}"), ("port: 18830", f"port: {broker_port}"),
                     ("127.0.0.1:18080", f"127.0.0.1:{free_port()}"), ("./demo-state", str(tmp / "state"))):
        assert old in text, old
        text = text.replace(old, new)
    path = tmp / "demo.yaml"
    path.write_text(text)
    return path


def simulate(site_path: Path) -> SimServer:
    """The demo site's Modbus devices, each point at a valid value."""
    bus = load_site(site_path).buses[0]
    units = []
    for device in bus.devices:
        unit = SimUnit(device.unit_id)
        for point in device.points:
            unit.set_point(point, ((point.valid_min or 0.0) + (point.valid_max or 10.0)) / 2)
        units.append(unit)
    return SimServer(units, port=bus.port).start()  # type: ignore[union-attr]  # the demo bus is modbus_tcp


def test_run_the_demo_site_without_the_extra(bare_venv: Path, tmp_path: Path, broker: Broker,
                                             collector: Platform) -> None:
    modbus_port = free_port()
    site = demo_site(tmp_path, modbus_port, broker.port)
    server = simulate(site)
    log = tmp_path / "gateway.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(bare_venv / "bin/fieldgate"), "run", str(site)], stdout=out, stderr=out,
                                cwd=tmp_path)
    try:
        wait_for(lambda: len(collector.values("reservoir.level")) >= 1, 30,
                 f"a reading at the broker; log:\n{log.read_text()[-3000:]}")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(45) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.stop()
    text = log.read_text()
    assert "Traceback" not in text and "ModuleNotFoundError" not in text
    assert collector.values("reservoir.level")[0] == pytest.approx(30.0)
