"""Fixtures of the virtual (or bench) rig; see tests/hil/README.md."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sim.broker import Broker
from sim.platform import Platform
from sim.serial_pty import socat_pair
from tests.hil.rig import RigFile, load_rig


@pytest.fixture(scope="session")
def rig() -> RigFile:
    return load_rig()


@pytest.fixture
def broker(tmp_path: Path, rig: RigFile) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker", rig.mosquitto).start()
    yield b
    b.stop()


@pytest.fixture
def pty_pair() -> Iterator[tuple[str, str]]:
    """(driver end, emulator end) of a socat pty pair: a serial line to a modem emulator."""
    with socat_pair() as pair:
        yield pair


@pytest.fixture
def collector(broker: Broker) -> Iterator[Platform]:
    """The platform: subscribed to fieldgate/# with a persistent session, collecting every envelope."""
    c = Platform(broker.port)
    yield c
    c.close()
