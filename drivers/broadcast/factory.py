"""Build output objects from their configs (the daemon calls this; it loads pymodbus)."""

from __future__ import annotations

from collections.abc import Mapping

from drivers.broadcast.audio import AlsaAudio
from drivers.broadcast.base import BroadcastOutput
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


def build_output(name: str, config: OutputConfig) -> BroadcastOutput:
    if isinstance(config, SirenRelayConfig):
        return SirenRelay(name, config)
    if isinstance(config, AlsaAudioConfig):
        return AlsaAudio(name, config)
    if isinstance(config, RtpMulticastConfig):
        return RtpMulticast(name, config)
    if isinstance(config, HttpTriggerConfig):
        return HttpTrigger(name, config)
    raise TypeError(f"unknown output config {type(config).__name__}")


def build_outputs(configs: Mapping[str, OutputConfig]) -> dict[str, BroadcastOutput]:
    return {name: build_output(name, cfg) for name, cfg in configs.items()}
