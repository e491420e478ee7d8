"""Import only what a site uses (issue 18, memory): ``cryptography`` (OpenSSL bound in, ~7 MB resident) is
imported when a key is loaded or a signature checked, not to validate a site or start the daemon.

A site's operator and issuer keys are checked in the config without it (any 32 bytes are an Ed25519 key
to cryptography too); the command plane loads its issuers' keys when it starts, so every command is still
verified (tests/unit/test_commands*.py). Hidden the way a missing package looks (``sys.modules[name] =
None``), with the project's modules imported afresh, as in tests/unit/test_optional_extras.py.
"""

from __future__ import annotations

import base64
import importlib
import sys
from collections.abc import Iterator

import pytest

from tests.unit.test_optional_extras import REPO, SITES_WITHOUT_CAMERAS, _ours, fieldgate

KEY = base64.b64encode(bytes(range(32))).decode()


@pytest.fixture
def without_cryptography() -> Iterator[None]:
    saved = dict(sys.modules)
    try:
        for name in [n for n in sys.modules if _ours(n)]:
            del sys.modules[name]
        sys.modules["cryptography"] = None  # type: ignore[assignment]  # what "not installed" looks like
        yield
    finally:
        for name in [n for n in sys.modules if n not in saved and _ours(n)]:
            del sys.modules[name]
        del sys.modules["cryptography"]
        sys.modules.update(saved)


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
    Keyring({"alice": KEY})  # the broadcast subsystem makes one at start; keys are loaded at the first signature
    for bad in ("not base64!", base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError, match="operator key"):
            CommandsConfig.model_validate({"issuers": {"ops": {"key": bad, "allow": ["ping"]}}})
        with pytest.raises(ValueError, match="operator key"):
            BroadcastConfig.model_validate({"operators": {"alice": bad}})
