"""Builds driver objects from their config models: the one place the core names drivers."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from drivers.broadcast.base import BroadcastOutput
from drivers.broadcast.config import OutputConfig
from drivers.modbus.config import ModbusRtuBus, ModbusTcpBus
from drivers.mqtt.config import MqttLinkConfig
from gateway.shared import BusDriver, Link, RecordClass

CLASS_NAMES = {
    "alarm": RecordClass.ALARM,
    "evidence": RecordClass.EVIDENCE,
    "event": RecordClass.EVENT,
    "state": RecordClass.STATE,
    "telemetry": RecordClass.TELEMETRY,
    "bulk": RecordClass.BULK,
}


def build_bus(config: ModbusTcpBus | ModbusRtuBus) -> BusDriver:
    # Imported here so that validating a config never needs the hardware libraries loaded.
    from drivers.modbus.bus import ModbusBus

    return ModbusBus(config)


def build_link(config: MqttLinkConfig, gateway_id: str, status_payload: Callable[[str], bytes]) -> Link:
    from drivers.mqtt.link import MqttLink

    return MqttLink(config, gateway_id, status_payload=status_payload)


def link_classes(config: MqttLinkConfig) -> set[RecordClass]:
    return {CLASS_NAMES[name] for name in config.classes}


def build_outputs(configs: Mapping[str, OutputConfig]) -> dict[str, BroadcastOutput]:
    from drivers.broadcast.factory import build_outputs as build

    return build(configs)
