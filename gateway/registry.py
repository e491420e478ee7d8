"""The one place the core names drivers: a table of config type → role and factory.

Each row says which config section type (the driver's own model, ``type: Literal[...]``) a driver
takes, the role it plays (bus, primary link, satellite link, camera, broadcast output, inference
backend) and the factory in the driver's package that builds it. The site config's unions are
derived from this table, so adding a driver touches its own folder, one import line and its row
here (docs/architecture.md, "How to add a driver"; tests/unit/test_add_a_driver.py does it).
Factories import their hardware libraries only when called: validating a config never loads
pymodbus, aiomqtt or OpenCV.

Statically (mypy) a config section is seen through its role's settings protocol; at run time it is
one of the table's models, picked by pydantic on the ``type`` key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeAlias, TypeVar, Union, cast

from pydantic import Field

import drivers.beidou.config
import drivers.broadcast.config
import drivers.camera.config
import drivers.iridium.config
import drivers.modbus.config
import drivers.mqtt.config
import drivers.onnx
import drivers.serialline.config
import drivers.sl651
import drivers.sl651.config
from gateway.alerts.contract import BroadcastOutput, OutputSettings
from gateway.contracts import (
    BackendFactory,
    BusDriver,
    BusSettings,
    CameraDriver,
    LinkWiring,
    PrimaryLink,
    PrimaryLinkSettings,
    ReportLink,
    ReportLinkSettings,
    SatelliteLink,
    SatelliteLinkSettings,
)
from gateway.shared import ConfigPath, RecordClass
from gateway.vision.config import VisionSettings

C = TypeVar("C")


@dataclass(frozen=True)
class Bus(Generic[C]):
    config: type[C]
    build: Callable[[C], BusDriver]


@dataclass(frozen=True)
class PrimaryLinkDriver(Generic[C]):
    config: type[C]
    build: Callable[[C, LinkWiring], PrimaryLink]


@dataclass(frozen=True)
class SatelliteLinkDriver(Generic[C]):
    config: type[C]
    build: Callable[[C, Callable[[bytes], None]], SatelliteLink]


@dataclass(frozen=True)
class ReportLinkDriver(Generic[C]):
    config: type[C]
    build: Callable[[C], ReportLink]


@dataclass(frozen=True)
class Camera(Generic[C]):
    config: type[C]
    build: Callable[[C], CameraDriver]


@dataclass(frozen=True)
class Output(Generic[C]):
    config: type[C]
    build: Callable[[str, C, Mapping[str, Any]], BroadcastOutput]  # name, section, the buses' coil writers


@dataclass(frozen=True)
class InferenceBackend:
    name: str  # the detector section's ``backend:``
    load: BackendFactory


Driver = (Bus[Any] | PrimaryLinkDriver[Any] | SatelliteLinkDriver[Any] | ReportLinkDriver[Any] | Camera[Any]
          | Output[Any] | InferenceBackend)

DRIVERS: tuple[Driver, ...] = (
    Bus(drivers.modbus.config.ModbusTcpBus, drivers.modbus.build_bus),
    Bus(drivers.modbus.config.ModbusRtuBus, drivers.modbus.build_bus),
    Bus(drivers.serialline.config.SerialLineBus, drivers.serialline.build_bus),
    PrimaryLinkDriver(drivers.mqtt.config.MqttLinkConfig, drivers.mqtt.build_link),
    SatelliteLinkDriver(drivers.beidou.config.BeidouConfig, drivers.beidou.build_link),
    SatelliteLinkDriver(drivers.iridium.config.IridiumConfig, drivers.iridium.build_link),
    ReportLinkDriver(drivers.sl651.config.Sl651LinkConfig, drivers.sl651.build_link),
    Camera(drivers.camera.config.CameraConfig, drivers.camera.build_camera),
    Output(drivers.broadcast.config.SirenRelayConfig, drivers.broadcast.build_output),
    Output(drivers.broadcast.config.AlsaAudioConfig, drivers.broadcast.build_output),
    Output(drivers.broadcast.config.RtpMulticastConfig, drivers.broadcast.build_output),
    Output(drivers.broadcast.config.HttpTriggerConfig, drivers.broadcast.build_output),
    InferenceBackend("onnxruntime", drivers.onnx.load_backend),  # rknn / openvino: reserved
)


def _configs(*roles: type) -> tuple[type, ...]:
    return tuple(row.config for row in DRIVERS if isinstance(row, roles) and not isinstance(row, InferenceBackend))


def _section_union(*roles: type) -> Any:
    """The pydantic model of one section list: the table's config types of these roles, told apart by ``type``."""
    configs = _configs(*roles)
    return Annotated[Union[configs], Field(discriminator="type")] if len(configs) > 1 else configs[0]  # noqa: UP007


if TYPE_CHECKING:
    BusConfig: TypeAlias = BusSettings
    LinkConfig: TypeAlias = PrimaryLinkSettings | SatelliteLinkSettings | ReportLinkSettings
    CameraSection: TypeAlias = VisionSettings
    OutputConfig: TypeAlias = OutputSettings
else:
    BusConfig = _section_union(Bus)
    LinkConfig = _section_union(PrimaryLinkDriver, SatelliteLinkDriver, ReportLinkDriver)
    CameraSection = _section_union(Camera)
    OutputConfig = _section_union(Output)


R = TypeVar("R", Bus[Any], PrimaryLinkDriver[Any], SatelliteLinkDriver[Any], ReportLinkDriver[Any], Camera[Any],
            Output[Any])


def _row(role: type[R], config: object) -> R | None:
    return next((row for row in DRIVERS if isinstance(row, role) and type(config) is row.config), None)


def _row_for(role: type[R], config: object) -> R:
    row = _row(role, config)
    if row is None:
        raise TypeError(f"no {role.__name__} driver takes a {type(config).__name__} section")
    return row


def primary_links(configs: Iterable[LinkConfig]) -> list[PrimaryLinkSettings]:
    return [cast(PrimaryLinkSettings, c) for c in configs if _row(PrimaryLinkDriver, c) is not None]


def satellite_links(configs: Iterable[LinkConfig]) -> list[SatelliteLinkSettings]:
    return [cast(SatelliteLinkSettings, c) for c in configs if _row(SatelliteLinkDriver, c) is not None]


def report_links(configs: Iterable[LinkConfig]) -> list[ReportLinkSettings]:
    return [cast(ReportLinkSettings, c) for c in configs if _row(ReportLinkDriver, c) is not None]


def build_bus(config: BusConfig) -> BusDriver:
    return _row_for(Bus, config).build(config)


def build_link(config: PrimaryLinkSettings, wiring: LinkWiring) -> PrimaryLink:
    return _row_for(PrimaryLinkDriver, config).build(config, wiring)


def build_satellite_link(config: SatelliteLinkSettings, on_message: Callable[[bytes], None]) -> SatelliteLink:
    return _row_for(SatelliteLinkDriver, config).build(config, on_message)


def build_report_link(config: ReportLinkSettings) -> ReportLink:
    return _row_for(ReportLinkDriver, config).build(config)


def build_camera(config: VisionSettings) -> CameraDriver:
    return _row_for(Camera, config).build(config)


def build_outputs(configs: Mapping[str, OutputConfig], buses: Sequence[BusDriver],
                  bus_configs: Sequence[BusConfig]) -> dict[str, BroadcastOutput]:
    """The outputs of ``broadcast.outputs``; a relay board on a bus writes through that running bus."""
    writers = drivers.broadcast.coil_writers(buses, bus_configs)
    outputs: dict[str, BroadcastOutput] = {}
    for name, config in configs.items():
        try:
            outputs[name] = _row_for(Output, config).build(name, config, writers)
        except ValueError as exc:
            raise ValueError(f"broadcast output '{name}': {exc}") from exc
    return outputs


def inference_backend(name: str) -> BackendFactory | None:
    return next((row.load for row in DRIVERS if isinstance(row, InferenceBackend) and row.name == name), None)


def inference_backends() -> list[str]:
    return sorted(row.name for row in DRIVERS if isinstance(row, InferenceBackend))


def relay_board_units(outputs: Mapping[str, OutputConfig],
                      buses: Sequence[BusConfig]) -> dict[tuple[str, int], list[str]]:
    """(bus, unit) of every polled unit that is a broadcast output's relay board -> those outputs."""
    return drivers.broadcast.board_units(outputs, buses)


def relay_board_problems(outputs: Mapping[str, OutputConfig],
                         buses: Sequence[BusConfig]) -> list[tuple[ConfigPath, str]]:
    """Relay boards against the buses that own the lines: each problem at its path below ``broadcast.outputs``."""
    return drivers.broadcast.board_problems(outputs, buses)


def link_classes(config: LinkConfig) -> set[RecordClass]:
    names: Sequence[str]
    if _row(SatelliteLinkDriver, config) is not None:
        names = cast(SatelliteLinkSettings, config).policy.classes
    else:
        names = cast(PrimaryLinkSettings | ReportLinkSettings, config).classes
    return {RecordClass.named(name) for name in names}


# ---- technician tools that come with a driver (the `fieldgate` command line) --------------------------


def add_tool_subcommands(subparsers: Any) -> None:
    """`fieldgate probe` and `fieldgate scan` (drivers/modbus/tools.py); `fieldgate sl651 decode` and
    `fieldgate sl651 decode` (drivers/sl651/cli.py)."""
    from drivers.modbus.tools import add_subcommands as modbus_tools
    from drivers.sl651.cli import add_subcommands as sl651_tools

    modbus_tools(subparsers)
    sl651_tools(subparsers)


def explain_bus(config: BusConfig) -> list[str]:
    """What a bus puts on the wire each poll cycle (`fieldgate check --explain`)."""
    from drivers.modbus.tools import explain

    return explain(config)


def link_problems(config: LinkConfig) -> list[str]:
    """Files a link's config names that this machine cannot read (TLS material, login files)."""
    from drivers.mqtt.credentials import problems

    return problems(config) if isinstance(config, drivers.mqtt.config.MqttLinkConfig) else []
