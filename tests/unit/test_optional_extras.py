"""Optional means optional: without the vision extra (numpy, OpenCV, ONNX Runtime) the core imports, every
site without cameras validates, and a site with cameras gets one config error that names the extra.

The extra is hidden in this process the way a missing package looks to Python: ``sys.modules[name] = None``
makes ``import numpy`` raise ModuleNotFoundError and ``importlib.util.find_spec`` answer None. The project's
modules are imported afresh under that, and every module is put back afterwards. The same with a real
venv that never had the extra, and a real ``fieldgate run``: tests/hil/test_optional_extras.py.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import pkgutil
import sys
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest

REPO = Path(__file__).resolve().parents[2]
VISION_EXTRA = ("numpy", "cv2", "onnxruntime", "onnx")
OURS = ("gateway", "drivers", "sim")
# The only modules that may need the extra: the vision pipeline and the camera/inference drivers.
NEEDS_EXTRA = ("gateway.vision.", "drivers.onnx.", "drivers.camera.capture", "drivers.camera.snapshot",
               "drivers.camera.device", "drivers.camera.stills")
SITES_WITHOUT_CAMERAS = ("demo.yaml", "reservoir.yaml")
SITES_WITH_CAMERAS = ("chemical-park.yaml", "forest-tower.yaml")


def _ours(name: str) -> bool:
    return name.split(".")[0] in OURS


@pytest.fixture
def without_vision_extra() -> Iterator[None]:
    saved = dict(sys.modules)
    try:
        for name in [n for n in sys.modules if _ours(n) or n.split(".")[0] in VISION_EXTRA]:
            del sys.modules[name]
        for name in VISION_EXTRA:
            sys.modules[name] = None  # type: ignore[assignment]  # what "not installed" looks like
        yield
    finally:
        # Our fresh copies go; third-party modules first imported meanwhile stay (an extension module such
        # as yaml._yaml cannot be imported twice: a second yaml package would not match its classes).
        for name in [n for n in sys.modules if n not in saved and (_ours(n) or n.split(".")[0] in VISION_EXTRA)]:
            del sys.modules[name]
        sys.modules.update(saved)


def all_modules() -> list[str]:
    found = []
    for package in OURS:
        found.append(package)
        found.extend(m.name for m in pkgutil.walk_packages([str(REPO / package)], f"{package}."))
    return sorted(found)


def fieldgate(*args: str) -> tuple[int, str, str]:
    """``fieldgate ARGS`` in this process, from the freshly imported CLI."""
    main = importlib.import_module("gateway.cli").main
    out, err = io.StringIO(), io.StringIO()
    with mock.patch("gateway.cli.setup_logging"), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.mark.usefixtures("without_vision_extra")
def test_the_extra_is_really_hidden() -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("numpy")
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("gateway.vision.manifest")


@pytest.mark.usefixtures("without_vision_extra")
def test_every_core_module_imports_without_the_vision_extra() -> None:
    core = [name for name in all_modules() if not name.startswith(NEEDS_EXTRA)]
    assert "gateway.app" in core and "gateway.daemon" in core and "gateway.cli" in core
    failed = {}
    for name in core:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            failed[name] = str(exc)
    assert failed == {}


@pytest.mark.usefixtures("without_vision_extra")
@pytest.mark.parametrize("site", SITES_WITHOUT_CAMERAS)
def test_a_site_without_cameras_validates_without_the_extra(site: str) -> None:
    code, out, err = fieldgate("validate", str(REPO / "config" / site))
    assert code == 0, err
    assert ": ok — " in out and "0 cameras" in out


@pytest.mark.usefixtures("without_vision_extra")
@pytest.mark.parametrize("site", SITES_WITH_CAMERAS)
def test_a_site_with_cameras_gets_one_error_naming_the_extra(site: str) -> None:
    path = REPO / "config" / site
    code, out, err = fieldgate("validate", str(path))
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    line = next(n for n, text in enumerate(path.read_text().splitlines(), 1) if text.startswith("cameras:"))
    assert len(lines) == 1, err
    assert lines[0].startswith(f"{path}:{line + 1}:")  # at the first camera, file:line:column
    assert "vision extra" in lines[0] and "pip install 'fieldgate[vision]'" in lines[0]
    assert "numpy" in lines[0] and "onnxruntime" in lines[0]


@pytest.mark.parametrize("site", SITES_WITH_CAMERAS)
def test_with_the_extra_the_camera_sites_validate(site: str) -> None:
    from tests.unit.cli import fieldgate as installed_fieldgate

    ran = installed_fieldgate("validate", str(REPO / "config" / site))
    assert ran.returncode == 0, ran.stderr
