"""The site config: one YAML file describes one gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from drivers.beidou.config import BeidouConfig
from drivers.camera.config import CameraConfig
from drivers.iridium.config import IridiumConfig
from drivers.modbus.config import ModbusRtuBus, ModbusTcpBus
from drivers.mqtt.config import CREDENTIAL_NAME, MqttLinkConfig
from drivers.serialline.config import SerialLineBus
from gateway.alerts.config import BroadcastConfig
from gateway.alerts.interlock import check_bus_boards, check_site_plan, check_write_points
from gateway.commands import CommandsConfig
from gateway.config.extras import vision_extra_problem
from gateway.journal_config import JournalSettings
from gateway.rules import RulesConfig
from gateway.shared import ConfigPath, Name, PlacedConfigError, Seconds, StrictModel
from gateway.status import StatusConfig

# Each driver owns its config model; the site config only lists them. A new driver
# adds its model to one of these unions and nothing else changes here.
BusConfig = Annotated[ModbusTcpBus | ModbusRtuBus | SerialLineBus, Field(discriminator="type")]
LinkConfig = Annotated[MqttLinkConfig | BeidouConfig | IridiumConfig, Field(discriminator="type")]


class GatewaySection(StrictModel):
    id: Name = Field(description="unique gateway id, used in topics")
    name: str = ""
    state_dir: Path = Field(default=Path("/var/lib/fieldgate"), description="journal and caches live here")


class SatelliteSection(StrictModel):
    """What the gateway and the platform agree on for the compact satellite format (docs/satellite.md)."""

    gateway_number: int = Field(default=0, ge=0, lt=2**32, description="this gateway's number in compact messages")
    aliases: dict[int, str] = Field(default_factory=dict, description="alias number -> point id")
    rule_aliases: dict[str, int] = Field(default_factory=dict, description="rule id -> alias number")
    # The secret the platform's ACKs are checked with (docs/satellite.md 1.4): never in this file.
    ack_key_file: Path | None = Field(
        default=None, description="file holding this gateway's ACK key (base64); relative to the config's folder")
    ack_key_credential: str | None = Field(
        default=None, pattern=CREDENTIAL_NAME, description="systemd credential holding the ACK key (LoadCredential=)")

    @model_validator(mode="after")
    def _one_key_source(self) -> SatelliteSection:
        if self.ack_key_file is not None and self.ack_key_credential is not None:
            raise ValueError("give either ack_key_file or ack_key_credential, not both")
        return self

    @property
    def has_ack_key(self) -> bool:
        return self.ack_key_file is not None or self.ack_key_credential is not None


class SiteConfig(StrictModel):
    gateway: GatewaySection
    buses: list[BusConfig] = Field(default_factory=list)
    links: list[LinkConfig] = Field(default_factory=list)
    journal: JournalSettings = Field(default_factory=JournalSettings, description="docs/durability.md")
    satellite: SatelliteSection = Field(default_factory=SatelliteSection)
    commands: CommandsConfig = Field(default_factory=CommandsConfig, description="signed commands (docs/commands.md)")
    status: StatusConfig | None = Field(default=None, description="status page and metrics (docs/status.md)")
    health_interval: Seconds = Field(default=300.0, ge=10, description="how often the health message goes upstream")
    cameras: list[CameraConfig] = Field(default_factory=list, description="smoke/fire detection (docs/vision.md)")
    rules: RulesConfig = Field(default_factory=RulesConfig, description="local alarm rules (docs/rules.md)")
    broadcast: BroadcastConfig = Field(default_factory=BroadcastConfig,
                                       description="emergency broadcast outputs and interlock (docs/broadcast.md)")

    @field_validator("cameras", mode="before")
    @classmethod
    def _vision_extra_installed(cls, cameras: object) -> object:
        # Before the entries are checked: without the extra, this is the one thing to fix first.
        if cameras and (problem := vision_extra_problem()) is not None:
            raise ValueError(problem)
        return cameras

    @model_validator(mode="after")
    def _unique_names(self) -> SiteConfig:
        _unique("bus name", [b.name for b in self.buses])
        _unique("link name", [link.name for link in self.links])
        _unique("camera name", [c.name for c in self.cameras])
        _unique("point id", [p.id for b in self.buses for d in b.devices for p in d.points]
                + [f"{c.name}.{role}" for c in self.cameras for role in ("fire", "smoke", "flame_out")])
        check_site_plan(self.rules, self.broadcast)
        check_bus_boards(self.broadcast, self.buses)
        known = {p.id for b in self.buses for d in b.devices for p in d.points} | {
            f"{c.name}.{role}" for c in self.cameras for role in ("fire", "smoke", "flame_out")}
        for point in self.commands.write_points:
            if point not in known:
                raise ValueError(f"commands.write_points: unknown point '{point}'")
        check_write_points(self.commands.write_points, self.broadcast, self.buses)
        for alias, point in self.satellite.aliases.items():
            if point not in known:
                raise ValueError(f"satellite alias {alias}: unknown point '{point}'")
        if any(link.type != "mqtt" for link in self.links) and not self.satellite.aliases:
            raise ValueError("a satellite link needs satellite.aliases (point numbers agreed with the platform)")
        _check_ack_key(self.links, self.satellite)
        return self

    @property
    def inbox_path(self) -> Path:
        """Signed manual alerts dropped here are taken by the daemon (fieldgate alert submit)."""
        if "inbox_dir" in self.broadcast.model_fields_set:
            return Path(self.broadcast.inbox_dir)
        return self.gateway.state_dir / "alerts" / "inbox"

    @property
    def audit_path(self) -> Path:
        """Broadcast audit log: the configured path, or <state_dir>/audit/broadcast.log."""
        if "audit_path" in self.broadcast.model_fields_set:
            return Path(self.broadcast.audit_path)
        return self.gateway.state_dir / "audit" / "broadcast.log"

    @property
    def journal_path(self) -> Path:
        return self.journal.path or self.gateway.state_dir / "journal.sqlite"


def _unique(what: str, names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"{what} '{name}' is used twice")
        seen.add(name)


def _check_ack_key(links: list[MqttLinkConfig | BeidouConfig | IridiumConfig], satellite: SatelliteSection) -> None:
    """A satellite link that waits for the platform's ACK must be able to tell a genuine one."""
    if satellite.has_ack_key:
        return
    problems: list[tuple[ConfigPath, str]] = [
        (("links", i), "policy.app_ack (on by default) needs satellite.ack_key_file or satellite.ack_key_credential: "
         "the key the platform's ACKs are checked with (docs/satellite.md §1.4)")
        for i, link in enumerate(links) if not isinstance(link, MqttLinkConfig) and link.policy.app_ack]
    if problems:
        raise PlacedConfigError(problems)
