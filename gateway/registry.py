"""The one place the core names drivers: a table of config type → role and factory.

Each row says which ``type:`` a driver's config section has, where its config model is (the driver's
own model, ``type: Literal[...]``), the role it plays (bus, primary link, satellite link, report link,
camera, broadcast output, inference backend) and the factory in the driver's package that builds it.
The site config's unions are derived from this table, so adding a driver touches its own folder and
its row here (docs/architecture.md, "How to add a driver"; tests/unit/test_add_a_driver.py does it).

Rows name their model and factory as ``"module:attribute"``, imported on first use: a site loads the
config models of the types its file names, not every driver's (issue 18, memory; ``site_unions``),
and factories import their hardware libraries only when called: validating a config never loads
pymodbus, aiomqtt or OpenCV.

Statically (mypy) a config section is seen through its role's settings protocol; at run time it is
one of the table's models, picked by pydantic on the ``type`` key.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias, TypeVar, Union, cast

from pydantic import Field

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

if TYPE_CHECKING:
    from drivers.mqtt.config import MqttLinkConfig
    from gateway.vision.config import VisionSettings


def _attribute(where: str) -> Any:
    """``"package.module:name"`` → that object, the module imported now (once)."""
    module, _, name = where.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class _Row:
    section_type: str  # the ``type:`` of the sections this driver takes
    config_at: str  # "module:Model", the driver's config model
    build_at: str  # "module:factory"

    @property
    def config(self) -> type[Any]:
        model: type[Any] = _attribute(self.config_at)
        return model

    @property
    def build(self) -> Callable[..., Any]:
        factory: Callable[..., Any] = _attribute(self.build_at)
        return factory


class Bus(_Row):
    """build(config) -> BusDriver"""


class PrimaryLinkDriver(_Row):
    """build(config, LinkWiring) -> PrimaryLink"""


class SatelliteLinkDriver(_Row):
    """build(config, on_message: Callable[[bytes], None]) -> SatelliteLink"""


class ReportLinkDriver(_Row):
    """build(config) -> ReportLink"""


class Camera(_Row):
    """build(config) -> CameraDriver"""


class Output(_Row):
    """build(name, section, the buses' coil writers) -> BroadcastOutput"""


@dataclass(frozen=True)
class InferenceBackend:
    name: str  # the detector section's ``backend:``
    load_at: str  # "module:factory", a BackendFactory

    @property
    def load(self) -> BackendFactory:
        factory: BackendFactory = _attribute(self.load_at)
        return factory


Driver = _Row | InferenceBackend

DRIVERS: tuple[Driver, ...] = (
    Bus("modbus_tcp", "drivers.modbus.config:ModbusTcpBus", "drivers.modbus:build_bus"),
    Bus("modbus_rtu", "drivers.modbus.config:ModbusRtuBus", "drivers.modbus:build_bus"),
    Bus("serial_line", "drivers.serialline.config:SerialLineBus", "drivers.serialline:build_bus"),
    PrimaryLinkDriver("mqtt", "drivers.mqtt.config:MqttLinkConfig", "drivers.mqtt:build_link"),
    SatelliteLinkDriver("beidou", "drivers.beidou.config:BeidouConfig", "drivers.beidou:build_link"),
    SatelliteLinkDriver("iridium_sbd", "drivers.iridium.config:IridiumConfig", "drivers.iridium:build_link"),
    ReportLinkDriver("sl651", "drivers.sl651.config:Sl651LinkConfig", "drivers.sl651:build_link"),
    Camera("camera", "drivers.camera.config:CameraConfig", "drivers.camera:build_camera"),
    Output("modbus_relay_siren", "drivers.broadcast.config:SirenRelayConfig", "drivers.broadcast:build_output"),
    Output("alsa_audio", "drivers.broadcast.config:AlsaAudioConfig", "drivers.broadcast:build_output"),
    Output("rtp_multicast", "drivers.broadcast.config:RtpMulticastConfig", "drivers.broadcast:build_output"),
    Output("http_trigger", "drivers.broadcast.config:HttpTriggerConfig", "drivers.broadcast:build_output"),
    InferenceBackend("onnxruntime", "drivers.onnx:load_backend"),  # rknn / openvino: reserved
)

# The site config's sections that list driver sections, each with the roles its entries may take.
SECTION_ROLES: dict[str, tuple[type[_Row], ...]] = {
    "buses": (Bus,),
    "links": (PrimaryLinkDriver, SatelliteLinkDriver, ReportLinkDriver),
    "cameras": (Camera,),
}


def _rows(*roles: type[_Row]) -> list[_Row]:
    return [row for row in DRIVERS if isinstance(row, roles)]


def section_types(*roles: type[_Row]) -> list[str]:
    """The ``type:`` names these roles take, in table order (the order an unknown type's error lists them)."""
    return [row.section_type for row in _rows(*roles)]


@functools.lru_cache(maxsize=32)  # one entry per combination of types in use: a handful per site
def section_union(roles: tuple[type[_Row], ...], types: frozenset[str] | None = None) -> Any:
    """The pydantic type of one section list's entry: the table's config models of these roles (only
    those of ``types``, if given), told apart by ``type``. Only the models it names are imported."""
    rows = [row for row in _rows(*roles) if types is None or row.section_type in types]
    configs = tuple(row.config for row in rows)
    if not configs:
        return Any  # an empty or absent section: nothing in it to check
    return Annotated[Union[configs], Field(discriminator="type")] if len(configs) > 1 else configs[0]  # noqa: UP007


def used_types(entries: object, roles: tuple[type[_Row], ...]) -> frozenset[str] | None:
    """The types a section of a site file names, or None (every type of its roles) when one entry's type is
    missing or unknown or the section is not a list: then the error is the one the full union gives."""
    if entries is None:
        return frozenset()
    if not isinstance(entries, list):
        return None
    known = set(section_types(*roles))
    named = [entry.get("type") if isinstance(entry, dict) else None for entry in entries]
    return frozenset(cast(list[str], named)) if all(isinstance(t, str) and t in known for t in named) else None


if TYPE_CHECKING:
    BusConfig: TypeAlias = BusSettings
    LinkConfig: TypeAlias = PrimaryLinkSettings | SatelliteLinkSettings | ReportLinkSettings
    CameraSection: TypeAlias = VisionSettings
    OutputConfig: TypeAlias = OutputSettings
else:
    # What SiteConfig declares; a site file is validated with site_model's unions over the types it names
    # (gateway/config/site.py). broadcast.outputs keeps every output type: they share one module.
    BusConfig = Any
    LinkConfig = Any
    CameraSection = Any
    OutputConfig = section_union((Output,))


R = TypeVar("R", bound=_Row)


def _row(role: type[R], config: object) -> R | None:
    """The row of this role whose ``type`` the section has (the model pydantic picked by that key)."""
    tag = getattr(config, "type", None)
    return next((row for row in DRIVERS if isinstance(row, role) and row.section_type == tag), None)


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
    bus: BusDriver = _row_for(Bus, config).build(config)
    return bus


def build_link(config: PrimaryLinkSettings, wiring: LinkWiring) -> PrimaryLink:
    link: PrimaryLink = _row_for(PrimaryLinkDriver, config).build(config, wiring)
    return link


def build_satellite_link(config: SatelliteLinkSettings, on_message: Callable[[bytes], None]) -> SatelliteLink:
    link: SatelliteLink = _row_for(SatelliteLinkDriver, config).build(config, on_message)
    return link


def build_report_link(config: ReportLinkSettings) -> ReportLink:
    link: ReportLink = _row_for(ReportLinkDriver, config).build(config)
    return link


def build_camera(config: VisionSettings) -> CameraDriver:
    camera: CameraDriver = _row_for(Camera, config).build(config)
    return camera


def build_outputs(configs: Mapping[str, OutputConfig], buses: Sequence[BusDriver],
                  bus_configs: Sequence[BusConfig]) -> dict[str, BroadcastOutput]:
    """The outputs of ``broadcast.outputs``; a relay board on a bus writes through that running bus."""
    from drivers.broadcast import coil_writers

    writers = coil_writers(buses, bus_configs)
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
    from drivers.broadcast import board_units

    return board_units(outputs, buses)


def relay_board_problems(outputs: Mapping[str, OutputConfig],
                         buses: Sequence[BusConfig]) -> list[tuple[ConfigPath, str]]:
    """Relay boards against the buses that own the lines: each problem at its path below ``broadcast.outputs``."""
    from drivers.broadcast import board_problems

    return board_problems(outputs, buses)


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

    is_mqtt = _row(PrimaryLinkDriver, config) is not None and config.type == "mqtt"
    return problems(cast("MqttLinkConfig", config)) if is_mqtt else []
