"""Builds driver objects from their config models: the one place the core names drivers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

from drivers.beidou.config import BeidouConfig
from drivers.broadcast.config import OutputConfig
from drivers.iridium.config import IridiumConfig
from drivers.modbus.config import ModbusRtuBus, ModbusTcpBus
from drivers.mqtt.config import MqttLinkConfig
from drivers.serialline.config import SerialLineBus
from gateway.alerts.contract import BroadcastOutput
from gateway.contracts import BusDriver, PrimaryLink, SatelliteLink
from gateway.profiles import PayloadProfile
from gateway.shared import RecordClass

CLASS_NAMES = {
    "alarm": RecordClass.ALARM,
    "evidence": RecordClass.EVIDENCE,
    "event": RecordClass.EVENT,
    "state": RecordClass.STATE,
    "telemetry": RecordClass.TELEMETRY,
    "bulk": RecordClass.BULK,
}


def build_bus(config: ModbusTcpBus | ModbusRtuBus | SerialLineBus) -> BusDriver:
    # Imported here so that validating a config never needs the hardware libraries loaded.
    if isinstance(config, SerialLineBus):
        from drivers.serialline.driver import SerialLineDriver

        return SerialLineDriver(config)
    from drivers.modbus.bus import ModbusBus

    return ModbusBus(config)


def build_link(config: MqttLinkConfig, gateway_id: str, profile: PayloadProfile,
               on_command: Callable[[str, bytes], Awaitable[None]] | None = None,
               screen: Callable[[str, bytes], bool] | None = None) -> PrimaryLink:
    from drivers.mqtt.link import MqttLink

    return MqttLink(config, gateway_id, session=profile, on_command=on_command, screen=screen)


def build_satellite_link(config: BeidouConfig | IridiumConfig, on_message: Callable[[bytes], None]) -> SatelliteLink:
    if isinstance(config, BeidouConfig):
        from drivers.beidou.link import BeidouLink

        return BeidouLink(config, on_message)
    from drivers.iridium.link import IridiumLink

    return IridiumLink(config, on_message)


def link_classes(config: MqttLinkConfig | BeidouConfig | IridiumConfig) -> set[RecordClass]:
    names = config.classes if isinstance(config, MqttLinkConfig) else config.policy.classes
    return {CLASS_NAMES[name] for name in names}


def build_outputs(configs: Mapping[str, OutputConfig], buses: Sequence[BusDriver],
                  bus_configs: Sequence[object]) -> dict[str, BroadcastOutput]:
    from drivers.broadcast.factory import build_outputs as build

    return build(configs, buses, bus_configs)
