"""Builds driver objects from their config models: the one place the core names drivers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from drivers.beidou.config import BeidouConfig
from drivers.broadcast.base import BroadcastOutput
from drivers.broadcast.busboard import CoilWriter
from drivers.broadcast.config import OutputConfig
from drivers.iridium.config import IridiumConfig
from drivers.modbus.config import ModbusRtuBus, ModbusTcpBus
from drivers.mqtt.config import MqttLinkConfig
from drivers.serialline.config import SerialLineBus
from drivers.sl651.config import Sl651LinkConfig
from gateway.links import Profile
from gateway.profiles import PayloadProfile
from gateway.shared import BusDriver, Link, RecordClass


def build_bus(config: ModbusTcpBus | ModbusRtuBus | SerialLineBus) -> BusDriver:
    # Imported here so that validating a config never needs the hardware libraries loaded.
    if isinstance(config, SerialLineBus):
        from drivers.serialline.driver import SerialLineDriver

        return SerialLineDriver(config)
    from drivers.modbus.bus import ModbusBus

    return ModbusBus(config)


def build_link(config: MqttLinkConfig, gateway_id: str, profile: PayloadProfile,
               on_command: Callable[[str, bytes], Awaitable[None]] | None = None,
               screen: Callable[[str, bytes], bool] | None = None) -> Link:
    from drivers.mqtt.link import MqttLink

    return MqttLink(config, gateway_id, session=profile, on_command=on_command, screen=screen)


def build_satellite_link(config: BeidouConfig | IridiumConfig, on_message: Callable[[bytes], None]) -> SatelliteLink:
    if isinstance(config, BeidouConfig):
        from drivers.beidou.link import BeidouLink

        return BeidouLink(config, on_message)
    from drivers.iridium.link import IridiumLink

    return IridiumLink(config, on_message)


def build_sl651_link(config: Sl651LinkConfig) -> tuple[Link, Profile]:
    """The box as an SL 651 station of one centre, and how journal records become its reports."""
    from drivers.sl651.link import Sl651Link, Sl651Profile

    return Sl651Link(config), Sl651Profile(config)


def link_classes(config: MqttLinkConfig | BeidouConfig | IridiumConfig | Sl651LinkConfig) -> set[RecordClass]:
    names = config.classes if isinstance(config, MqttLinkConfig | Sl651LinkConfig) else config.policy.classes
    return {RecordClass.named(name) for name in names}


class SatelliteLink(Link, Protocol):
    @property
    def max_bytes(self) -> int: ...


def build_outputs(configs: Mapping[str, OutputConfig],
                  coil_writers: Mapping[str, CoilWriter] | None = None) -> dict[str, BroadcastOutput]:
    from drivers.broadcast.factory import build_outputs as build

    return build(configs, coil_writers)
