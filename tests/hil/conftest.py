"""Fixtures of the virtual (or bench) rig; see tests/hil/README.md."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hil.rig import Broker, Collector, RigFile, load_rig


@pytest.fixture(scope="session")
def rig() -> RigFile:
    return load_rig()


@pytest.fixture
def broker(tmp_path: Path, rig: RigFile) -> Iterator[Broker]:
    b = Broker(tmp_path / "broker", rig.mosquitto).start()
    yield b
    b.stop()


@pytest.fixture
def collector(broker: Broker) -> Iterator[Collector]:
    c = Collector(broker.port)
    yield c
    c.close()
