"""docs/architecture.md, "How to add a driver", done by a test: a toy bus driver in its own folder plus one row
in gateway/registry.py, and the gateway validates a site that uses it, builds it and runs it.

The toy package is written to a temporary folder; the registry is the repository's source with the row
added, loaded in place of gateway.registry while the core modules that depend on it are imported afresh (and
put back afterwards, so the rest of the suite sees the real registry).
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CONFIG = '''
from typing import Literal

from pydantic import Field

from gateway.shared import Seconds, StrictModel


class CounterPoint(StrictModel):
    id: str
    valid_min: float | None = None
    valid_max: float | None = None


class CounterDevice(StrictModel):
    name: str
    points: list[CounterPoint] = Field(min_length=1)

    @property
    def unit_id(self) -> None:
        return None


class CounterBus(StrictModel):
    """A bus whose devices count up: the whole driver config model."""

    type: Literal["counter"]
    name: str
    interval: Seconds = 0.01
    devices: list[CounterDevice] = Field(min_length=1)
'''

INIT = '''
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.contracts import BusDriver
    from toydrivers.counter.config import CounterBus


def build_bus(config: CounterBus) -> BusDriver:
    from toydrivers.counter.bus import CounterDriver

    return CounterDriver(config)
'''

BUS = '''
import asyncio
from dataclasses import dataclass

from gateway.contracts import stall_deadline
from gateway.shared import PointInfo, Progress, Quality, Reading, ReadingSink, Value, now
from toydrivers.counter.config import CounterBus


@dataclass
class Device:
    name: str
    unit_id: None = None
    mode: str = "online"
    polls: int = 0
    good_polls: int = 0


class CounterDriver:
    writable = False
    connected = True

    def __init__(self, config: CounterBus) -> None:
        self.config = config
        self.name = config.name
        self.devices = [Device(d.name) for d in config.devices]

    @property
    def stall_deadline(self) -> float:
        return stall_deadline(self.config.interval, 0.0)

    def points(self) -> list[PointInfo]:
        return [PointInfo(p.id) for d in self.config.devices for p in d.points]

    async def run(self, sink: ReadingSink, progress: Progress) -> None:
        count = 0
        while True:
            count += 1
            for state, device in zip(self.devices, self.config.devices):
                state.polls += 1
                state.good_polls += 1
                await sink([Reading(point.id, count, Quality.GOOD, now()) for point in device.points])
            progress.beat()
            await asyncio.sleep(self.config.interval)

    async def write_point(self, point_id: str, value: float | bool | str, verify: bool = True) -> Value:
        raise LookupError("a counter cannot be written")

    async def probe(self, unit_id: int, table: str, address: int, count: int = 1) -> list[int]:
        raise LookupError("a counter has no registers")
'''

ROW = '    Bus("counter", "toydrivers.counter.config:CounterBus", "toydrivers.counter:build_bus"),\n'
KEEP = ("gateway.shared", "gateway.contracts", "gateway.alerts.contract", "gateway.vision.config",
        "gateway.profiles", "gateway.credentials")  # what the drivers already imported stays as it is


def write_toy_driver(root: Path) -> set[Path]:
    folder = root / "toydrivers" / "counter"
    folder.mkdir(parents=True)
    files = {root / "toydrivers" / "__init__.py": "", folder / "__init__.py": INIT,
             folder / "config.py": CONFIG, folder / "bus.py": BUS}
    for path, text in files.items():
        path.write_text(textwrap.dedent(text))
    return set(files)


def registry_with_the_toy_row() -> str:
    source = (ROOT / "gateway" / "registry.py").read_text()
    anchor_table = "DRIVERS: tuple[Driver, ...] = (\n"
    assert anchor_table in source
    return source.replace(anchor_table, anchor_table + ROW)


@pytest.fixture
def fresh_core(tmp_path: Path) -> Iterator[Path]:
    """Core modules imported afresh around the test; the real ones are put back after it."""
    saved = {name: module for name, module in sys.modules.items()
             if name.startswith("gateway.") and not name.startswith(KEEP)}
    for name in saved:
        del sys.modules[name]
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n.startswith(("gateway.", "toydrivers"))
                     and not n.startswith(KEEP)]:
            del sys.modules[name]
        sys.modules.update(saved)
        # Importing a submodule afresh also rebinds it on its parent package (``gateway.compact``):
        # put those attributes back too, or ``from gateway import compact`` would find the fresh copy.
        for name, module in saved.items():
            parent, _, child = name.rpartition(".")
            if parent in sys.modules:
                setattr(sys.modules[parent], child, module)


def test_a_toy_bus_driver_is_its_folder_plus_one_registry_row(fresh_core: Path) -> None:
    before = set(fresh_core.rglob("*"))
    written = write_toy_driver(fresh_core)
    assert {p for p in set(fresh_core.rglob("*")) - before if p.is_file()} == written
    assert all(fresh_core / "toydrivers" in p.parents for p in written), "the driver touches only its folder"

    source = registry_with_the_toy_row()
    original = (ROOT / "gateway" / "registry.py").read_text().splitlines(keepends=True)
    added = [line for line in source.splitlines(keepends=True) if line not in original]
    assert added == [ROW]
    registry = types.ModuleType("gateway.registry")
    registry.__file__ = str(ROOT / "gateway" / "registry.py")
    sys.modules["gateway.registry"] = registry
    exec(compile(source, registry.__file__, "exec"), registry.__dict__)

    config = importlib.import_module("gateway.config")
    site = config.load_site_text(textwrap.dedent(f"""
        gateway: {{id: toy, state_dir: {fresh_core / "state"}}}
        buses:
          - type: counter
            name: counters
            devices: [{{name: c1, points: [{{id: toy.count}}]}}]
        rules:
          rules:
            - {{id: toy.many, type: threshold, point: toy.count, above: 3, severity: minor}}
        """), "site.yaml")
    assert type(site.buses[0]).__name__ == "CounterBus"

    app = importlib.import_module("gateway.app")

    async def scenario() -> dict[str, object]:
        gateway = app.Gateway(site)
        stop = asyncio.Event()
        run = asyncio.create_task(gateway.run(stop))
        async with asyncio.timeout(20):
            await gateway.ready.wait()
            while "toy.count" not in gateway.latest or gateway.latest["toy.count"].value < 5:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        snapshot = gateway.snapshot()
        stop.set()
        await run
        return snapshot

    snapshot = asyncio.run(scenario())
    assert snapshot["devices"] == [{"bus": "counters", "device": "c1", "unit_id": None, "online": True,
                                    "mode": "online", "polls": snapshot["devices"][0]["polls"],  # type: ignore[index]
                                    "errors": 0}]
    assert [a["rule"] for a in snapshot["alarms"]] == ["toy.many"]  # type: ignore[attr-defined]
