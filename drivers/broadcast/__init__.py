"""Broadcast outputs: siren relay, ALSA audio with TTS, RTP multicast G.711, HTTP trigger.

Importing this package is cheap: hardware libraries (pymodbus) load only in the modules that
drive hardware (relay.py, siren.py, audio.py), which the factories below import when the daemon
builds its outputs (gateway/registry.py names them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gateway.shared import ConfigPath

if TYPE_CHECKING:
    from drivers.broadcast.busboard import CoilWriter
    from drivers.broadcast.config import OutputConfig
    from gateway.alerts.contract import BroadcastOutput
    from gateway.contracts import BusDriver


def coil_writers(buses: Sequence[BusDriver], bus_configs: Sequence[Any]) -> Mapping[str, CoilWriter]:
    from drivers.broadcast.factory import coil_writers as writers

    return writers(buses, bus_configs)


def build_output(name: str, config: OutputConfig, writers: Mapping[str, Any]) -> BroadcastOutput:
    from drivers.broadcast.factory import build_output as build

    return build(name, config, writers)


def board_units(outputs: Mapping[str, object], buses: Sequence[Any]) -> dict[tuple[str, int], list[str]]:
    from drivers.broadcast.busboard import board_units as units

    return units(outputs, buses)


def board_problems(outputs: Mapping[str, object], buses: Sequence[Any]) -> list[tuple[ConfigPath, str]]:
    """Every relay-board problem at its path below ``broadcast.outputs``."""
    from drivers.broadcast.busboard import bus_board_problems

    return bus_board_problems(outputs, buses)

