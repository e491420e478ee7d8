"""Build output objects from their configs (the daemon calls this through gateway/registry.py).

Each kind's module is imported when an output of that kind is built: a site with a siren on a bus loads
neither pymodbus (a board of its own), the audio player nor the RTP sender.

A relay board configured with ``board: {transport: bus, bus: <name>, unit_id: N}`` gets the `CoilWriter`
of that running bus: its coil writes go through the bus task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

from drivers.broadcast.busboard import CoilWriter
from drivers.broadcast.config import (
    AlsaAudioConfig,
    HttpTriggerConfig,
    OutputConfig,
    RtpMulticastConfig,
    SirenRelayConfig,
)
from gateway.alerts.contract import BroadcastOutput
from gateway.contracts import BusDriver


def build_output(name: str, config: OutputConfig,
                 coil_writers: Mapping[str, CoilWriter] | None = None) -> BroadcastOutput:
    """Raises ValueError when a bus-routed relay has no writer or its coil is not a point of the bus."""
    if isinstance(config, SirenRelayConfig):
        from drivers.broadcast.siren import SirenRelay

        return SirenRelay(name, config, coil_writers)
    if isinstance(config, AlsaAudioConfig):
        from drivers.broadcast.audio import AlsaAudio

        return AlsaAudio(name, config, coil_writers)
    if isinstance(config, RtpMulticastConfig):
        from drivers.broadcast.rtp import RtpMulticast

        return RtpMulticast(name, config)
    if isinstance(config, HttpTriggerConfig):
        from drivers.broadcast.http import HttpTrigger

        return HttpTrigger(name, config)
    raise TypeError(f"unknown output config {type(config).__name__}")


def build_outputs(configs: Mapping[str, OutputConfig], buses: Sequence[BusDriver] = (),
                  bus_configs: Sequence[Any] = ()) -> dict[str, BroadcastOutput]:
    """The outputs of ``broadcast.outputs``; a relay board on a bus (``transport: bus``) writes through the
    running bus of that name (``buses``), whose points are looked up in its config section (``bus_configs``)."""
    writers = coil_writers(buses, bus_configs)
    outputs: dict[str, BroadcastOutput] = {}
    for name, cfg in configs.items():
        try:
            outputs[name] = build_output(name, cfg, writers)
        except ValueError as exc:
            raise ValueError(f"broadcast output '{name}': {exc}") from exc
    return outputs


def coil_writers(buses: Sequence[BusDriver], bus_configs: Sequence[Any]) -> dict[str, CoilWriter]:
    """The route of relay boards on each writable running bus, with the points of its config section."""
    sections = {section.name: section for section in bus_configs}
    return {bus.name: CoilWriter(sections[bus.name], bus.write_point, partial(_connected, bus))
            for bus in buses if bus.writable and bus.name in sections}


def _connected(bus: BusDriver) -> bool:
    return bus.connected
