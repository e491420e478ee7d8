"""Import only what a site uses (issue 18, memory): ``cryptography`` (OpenSSL bound in, ~7 MB resident) is
imported when a key is loaded or a signature checked, not to validate a site or start the daemon; pymodbus
only for a relay board of its own (a siren on a running bus writes through the bus).

A site's operator and issuer keys are checked in the config without it (any 32 bytes are an Ed25519 key
to cryptography too); the command plane loads its issuers' keys when it starts, so every command is still
verified (tests/unit/test_commands*.py). Hidden the way a missing package looks (``sys.modules[name] =
None``), with the project's modules imported afresh, as in tests/unit/test_optional_extras.py.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from tests.unit.test_optional_extras import REPO, SITES_WITHOUT_CAMERAS, _ours, fieldgate

KEY = base64.b64encode(bytes(range(32))).decode()


@contextlib.contextmanager
def hidden(package: str) -> Iterator[None]:
    saved = dict(sys.modules)
    try:
        for name in [n for n in sys.modules if _ours(n) or n.split(".")[0] == package]:
            del sys.modules[name]  # put back afterwards: an extension module cannot be imported twice
        sys.modules[package] = None  # type: ignore[assignment]  # what "not installed" looks like
        yield
    finally:
        for name in [n for n in sys.modules if n not in saved and _ours(n)]:
            del sys.modules[name]
        sys.modules.pop(package, None)
        sys.modules.update(saved)


@pytest.fixture
def without_cryptography() -> Iterator[None]:
    with hidden("cryptography"):
        yield


@pytest.mark.usefixtures("without_cryptography")
def test_cryptography_is_really_hidden() -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("cryptography.hazmat.primitives.asymmetric.ed25519")


@pytest.mark.usefixtures("without_cryptography")
@pytest.mark.parametrize("site", SITES_WITHOUT_CAMERAS)
def test_a_site_validates_and_the_daemon_imports_without_cryptography(site: str) -> None:
    code, _out, err = fieldgate("validate", str(REPO / "config" / site))
    assert code == 0, err
    for module in ("gateway.daemon", "gateway.app", "gateway.router", "drivers.mqtt.link", "drivers.sl651.config"):
        importlib.import_module(module)


@pytest.mark.usefixtures("without_cryptography")
def test_keys_in_the_config_are_checked_without_cryptography() -> None:
    from gateway.alerts.config import BroadcastConfig
    from gateway.alerts.signing import Keyring
    from gateway.commands.config import CommandsConfig

    commands = CommandsConfig.model_validate({"issuers": {"ops": {"key": KEY, "allow": ["ping"]}}})
    assert commands.issuers["ops"].key == KEY
    keyring = Keyring({"alice": KEY})  # the broadcast subsystem makes one at start
    # An automatic alert carries no signature: deciding it must not import cryptography (the siren path).
    assert keyring.require_message(lambda at: b"automatic", [], 0, 60.0, 1000.0) == []
    for bad in ("not base64!", base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError, match=r"the key (is not base64|must be a raw 32-byte)"):
            CommandsConfig.model_validate({"issuers": {"ops": {"key": bad, "allow": ["ping"]}}})
        with pytest.raises(ValueError, match=r"the key (is not base64|must be a raw 32-byte)"):
            BroadcastConfig.model_validate({"operators": {"alice": bad}})


def test_a_siren_on_a_bus_is_built_without_pymodbus() -> None:
    with hidden("pymodbus"):
        from drivers.broadcast.busboard import CoilWriter
        from drivers.broadcast.factory import build_output
        from gateway.config import load_site

        site = load_site(REPO / "config" / "demo.yaml")
        bus = next(b for b in site.buses if b.name == "gauges")
        writers = {bus.name: CoilWriter(cast(Any, bus), cast(Any, _never_written), lambda: True)}
        for name, output in site.broadcast.outputs.items():
            assert type(build_output(name, cast(Any, output), writers)).__name__ == "SirenRelay"


async def _never_written(point: str, value: float | bool | str, verify: bool = True) -> bool:
    raise AssertionError("no coil is written here")


def test_fieldgate_run_does_not_load_the_other_subcommands(tmp_path: Path) -> None:
    """The centre programs stand in for every tool subcommand (alerts, commands, probe, scan, model...)."""
    with hidden("centre"):
        code, _out, err = fieldgate("run", str(tmp_path / "missing.yaml"))  # stops at the config: no daemon
        assert code == 1 and "missing.yaml" in err
        assert not any(name.startswith("gateway.commission") for name in sys.modules)
        with pytest.raises(ModuleNotFoundError):
            fieldgate("validate", str(tmp_path / "missing.yaml"))  # the others still register them all


# What a site without cameras, satellite or SL 651 links and without a status page must not load when it is
# validated and the daemon's modules imported (issue 18, memory): other drivers' config models, the vision
# pipeline's models, the camera view, the status server, the satellite codec and runner. (The standard
# library's share, CAP's XML, tarfile and urllib.request, is measured by bench/import_memory.py: pytest
# itself has loaded them here.)
UNUSED_BY_A_PLAIN_SITE = (
    "drivers.beidou", "drivers.iridium", "drivers.sl651", "drivers.camera", "drivers.serialline", "drivers.onnx",
    "gateway.vision.config", "gateway.vision.camerafault", "gateway.camview.overlay", "gateway.camview.probe",
    "gateway.status.server", "gateway.compact", "gateway.satellite")

PLAIN_SITE = """
gateway: {id: plain, state_dir: ./state}
buses:
  - {type: modbus_tcp, name: plc, host: 127.0.0.1, devices: [{name: d, unit_id: 1, points: [{id: p.a, address: 0}]}]}
links:
  - {type: mqtt, host: 127.0.0.1}
"""


def _modules_after_loading(site: Path, then: Iterable[str] = ()) -> set[str]:
    """Our modules imported by validating ``site`` and importing the daemon (and the modules ``then`` names),
    ours imported afresh for it."""
    saved = dict(sys.modules)
    try:
        for name in [n for n in sys.modules if _ours(n)]:
            del sys.modules[name]
        importlib.import_module("gateway.daemon")
        importlib.import_module("gateway.config").load_site(site)
        for module in then:
            importlib.import_module(module)
        return {n for n in sys.modules if _ours(n)}
    finally:
        for name in [n for n in sys.modules if n not in saved and _ours(n)]:
            del sys.modules[name]
        sys.modules.update(saved)


def _loaded(modules: set[str], packages: Iterable[str]) -> list[str]:
    return sorted(m for m in modules for p in packages if m == p or m.startswith(p + "."))


def test_a_plain_site_loads_only_its_own_drivers(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(PLAIN_SITE)
    assert _loaded(_modules_after_loading(site), UNUSED_BY_A_PLAIN_SITE) == []


def test_the_demo_site_loads_the_status_page_only_to_run_it() -> None:
    modules = _modules_after_loading(REPO / "config" / "demo.yaml")  # the server: when the daemon starts it
    assert {"gateway.status.config", "drivers.broadcast.config"} <= modules
    assert _loaded(modules, UNUSED_BY_A_PLAIN_SITE) == []


def test_the_status_server_leaves_the_page_to_the_first_request() -> None:
    """Idle memory (issue 18): the page, its texts, the metrics renderer and the trend chart are imported by
    the first request for them, not when the server starts."""
    modules = _modules_after_loading(REPO / "config" / "demo.yaml", then=["gateway.status.server"])
    assert "gateway.status.techroutes" in modules
    assert _loaded(modules, ["gateway.status.page", "gateway.status.page_text", "gateway.status.metrics",
                             "gateway.history.chart", "gateway.htmlescape"]) == []


def test_a_site_loads_the_drivers_it_names() -> None:
    modules = _modules_after_loading(REPO / "config" / "reservoir.yaml")  # RTU + TCP, MQTT, BeiDou, SL 651
    assert {"drivers.beidou.config", "drivers.sl651.config", "drivers.modbus.config"} <= modules
    assert _loaded(modules, ["drivers.iridium", "drivers.camera", "drivers.serialline", "gateway.vision.config"]) == []


def test_a_modbus_tcp_site_with_a_status_page_runs_without_pyserial_h11_and_the_update_code() -> None:
    """Idle memory (issue 18): pyserial (0.2 MB) loads with the first RTU line, h11 (0.3 MB) with the status
    page's first connection, the software-update code (bundle, install, boot check) with the first update."""
    with hidden("serial"), hidden("h11"):
        modules = _modules_after_loading(REPO / "config" / "demo.yaml",
                                         then=["gateway.status.server", "drivers.modbus.bus", "gateway.fleet.rollout"])
    assert _loaded(modules, ["drivers.ports.serialport", "gateway.fleet.release", "gateway.fleet.updates",
                             "gateway.fleet.bundle", "gateway.fleet.boot"]) == []
