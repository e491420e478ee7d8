"""Build output objects from their configs (the daemon calls this; it loads pymodbus).

``coil_writers`` maps a bus name to the `CoilWriter` of that running bus, for relay boards
configured with ``board: {transport: bus, bus: <name>, unit_id: N}``:

    build_outputs(config.broadcast.outputs,
                  coil_writers={bus.name: CoilWriter.for_bus(bus) for bus in modbus_buses})
"""

from __future__ import annotations

from collections.abc import Mapping

from drivers.broadcast.audio import AlsaAudio
from drivers.broadcast.base import BroadcastOutput
from drivers.broadcast.busboard import CoilWriter
from drivers.broadcast.config import (
    AlsaAudioConfig,
    HttpTriggerConfig,
    OutputConfig,
    RtpMulticastConfig,
    SirenRelayConfig,
)
from drivers.broadcast.http import HttpTrigger
from drivers.broadcast.rtp import RtpMulticast
from drivers.broadcast.siren import SirenRelay


def build_output(name: str, config: OutputConfig,
                 coil_writers: Mapping[str, CoilWriter] | None = None) -> BroadcastOutput:
    """Raises ValueError when a bus-routed relay has no writer or its coil is not a point of the bus."""
    if isinstance(config, SirenRelayConfig):
        return SirenRelay(name, config, coil_writers)
    if isinstance(config, AlsaAudioConfig):
        return AlsaAudio(name, config, coil_writers)
    if isinstance(config, RtpMulticastConfig):
        return RtpMulticast(name, config)
    if isinstance(config, HttpTriggerConfig):
        return HttpTrigger(name, config)
    raise TypeError(f"unknown output config {type(config).__name__}")


def build_outputs(configs: Mapping[str, OutputConfig],
                  coil_writers: Mapping[str, CoilWriter] | None = None) -> dict[str, BroadcastOutput]:
    outputs: dict[str, BroadcastOutput] = {}
    for name, cfg in configs.items():
        try:
            outputs[name] = build_output(name, cfg, coil_writers)
        except ValueError as exc:
            raise ValueError(f"broadcast output '{name}': {exc}") from exc
    return outputs
