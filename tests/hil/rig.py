"""The rig: which real components the HIL tests run against, described by a rig file.

The virtual rig (CI, any laptop) makes everything on this machine from ``sim/``: mosquitto on a free
loopback port, ``socat`` pty pairs as RS-485 lines, pymodbus servers as the field devices. A bench rig
names real serial ports instead (two USB RS-485 adapters wired A-A, B-B), so the same tests drive real
transceivers and real line timing; see tests/hil/README.md for the format.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from sim.serial_pty import socat_pair

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RIG = ROOT / "tests" / "hil" / "rigs" / "virtual.yaml"


@dataclass
class RigFile:
    name: str
    serial_pairs: list[tuple[str, str]] = field(default_factory=list)  # bench: (gateway end, device end)
    mosquitto: str = "mosquitto"

    @property
    def virtual(self) -> bool:
        return not self.serial_pairs


def load_rig() -> RigFile:
    path = Path(os.environ.get("FIELDGATE_RIG", DEFAULT_RIG))
    data = yaml.safe_load(path.read_text()) or {}
    pairs = [(p["gateway"], p["device"]) for p in data.get("serial_pairs", [])]
    return RigFile(name=data.get("rig", path.stem), serial_pairs=pairs,
                   mosquitto=data.get("mosquitto", "mosquitto"))


@contextlib.contextmanager
def serial_pair(rig: RigFile, index: int = 0) -> Iterator[tuple[str, str]]:
    """(gateway end, device end) of an RS-485 line: a socat pty pair, or the bench's wired adapters."""
    if not rig.virtual:
        yield rig.serial_pairs[index]
        return
    if shutil.which("socat") is None:
        raise RuntimeError("socat is not installed (apt-get install socat); .ci/run installs it")
    with socat_pair() as pair:
        yield pair
