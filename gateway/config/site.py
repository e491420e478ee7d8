"""The site config: one YAML file describes one gateway."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from pydantic import Field, create_model, field_validator, model_validator

from drivers.mqtt.config import CREDENTIAL_NAME
from gateway.alerts.config import BroadcastConfig
from gateway.alerts.interlock import check_bus_boards, check_site_plan, check_write_points
from gateway.commands import CommandsConfig
from gateway.config.extras import vision_extra_problem
from gateway.config.yamlmarks import dotted
from gateway.fleet.config import FleetSection
from gateway.history.config import HistoryConfig
from gateway.journal import JournalSettings
from gateway.registry import (
    SECTION_ROLES,
    BusConfig,
    CameraSection,
    LinkConfig,
    report_links,
    satellite_links,
    section_union,
    used_types,
)
from gateway.rules import RulesConfig
from gateway.shared import ConfigPath, Name, PlacedConfigError, Seconds, StrictModel
from gateway.status import StatusConfig

# Each driver owns its config model; the site config lists them through the unions gateway/registry.py
# derives from its table, so a new driver changes nothing here. SiteConfig declares the sections; the model
# a file is validated with (site_model) narrows ``buses:``, ``links:`` and ``cameras:`` to the driver types
# the file names, so only their config models are imported and built (issue 18, memory).


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
    """The sections of a site file. Validate with ``site_model(data)`` (the loader does): here the driver
    sections (``buses:``, ``links:``, ``cameras:``) are declared but not typed."""

    gateway: GatewaySection
    buses: list[BusConfig] = Field(default_factory=list)
    links: list[LinkConfig] = Field(default_factory=list)
    journal: JournalSettings = Field(default_factory=JournalSettings, description="docs/durability.md")
    satellite: SatelliteSection = Field(default_factory=SatelliteSection)
    commands: CommandsConfig = Field(default_factory=CommandsConfig, description="signed commands (docs/commands.md)")
    status: StatusConfig | None = Field(default=None, description="status page and metrics (docs/status.md)")
    health_interval: Seconds = Field(default=300.0, ge=10, description="how often the health message goes upstream")
    cameras: list[CameraSection] = Field(default_factory=list, description="smoke/fire detection (docs/vision.md)")
    rules: RulesConfig = Field(default_factory=RulesConfig, description="local alarm rules (docs/rules.md)")
    history: HistoryConfig = Field(default_factory=HistoryConfig, description="trend charts (docs/status.md)")
    broadcast: BroadcastConfig = Field(default_factory=BroadcastConfig,
                                       description="emergency broadcast outputs and interlock (docs/broadcast.md)")
    fleet: FleetSection = Field(default_factory=FleetSection, description="software updates (docs/fleet.md)")

    @field_validator("cameras", mode="before")
    @classmethod
    def _vision_extra_installed(cls, cameras: object) -> object:
        # Before the entries are checked: without the extra, this is the one thing to fix first.
        if cameras and (problem := vision_extra_problem()) is not None:
            raise ValueError(problem)
        return cameras

    @model_validator(mode="after")
    def _cross_section(self) -> SiteConfig:
        """Checks across sections; every problem is collected at its value, then all are raised at once."""
        problems: list[tuple[ConfigPath, str]] = []
        problems += _unique("bus name", [(("buses", i, "name"), b.name) for i, b in enumerate(self.buses)])
        problems += _unique("link name", [(("links", i, "name"), link.name) for i, link in enumerate(self.links)])
        problems += _unique("camera name", [(("cameras", i, "name"), c.name) for i, c in enumerate(self.cameras)])
        points = self._point_places()
        problems += _unique("point id", points)
        known = {point for _path, point in points}
        checks: list[Callable[[], None]] = [
            lambda: check_site_plan(self.rules, self.broadcast),
            lambda: check_bus_boards(self.broadcast, self.buses),
            lambda: check_write_points(self.commands.write_points, self.broadcast, self.buses),
            lambda: _check_ack_key(self.links, self.satellite)]
        for check in checks:
            try:
                check()
            except PlacedConfigError as exc:
                problems += exc.problems
        problems += [(("commands", "write_points", i), f"unknown point '{point}'")
                     for i, point in enumerate(self.commands.write_points) if point not in known]
        problems += [(("satellite", "aliases", str(alias)), f"unknown point '{point}'")
                     for alias, point in self.satellite.aliases.items() if point not in known]
        problems += [(("links", i, "points", point), f"unknown point '{point}'")
                     for i, link in enumerate(self.links) for report in report_links([link])
                     for point in report.points if point not in known]
        if not self.satellite.aliases:
            problems += [(("links", i, "type"), "a satellite link needs satellite.aliases (point numbers "
                          "agreed with the platform)") for i, link in enumerate(self.links) if satellite_links([link])]
        if problems:
            raise PlacedConfigError(problems)
        return self

    def _point_places(self) -> list[tuple[ConfigPath, str]]:
        """Every point id with the path it is written at (a camera's at its name)."""
        places: list[tuple[ConfigPath, str]] = []
        for b, bus in enumerate(self.buses):
            for d, device in enumerate(bus.devices):
                points = device.points
                places += [(("buses", b, "devices", d, "points", p, "id"), point.id) for p, point in enumerate(points)]
        places += [(("cameras", c, "name"), f"{camera.name}.{role}")
                   for c, camera in enumerate(self.cameras) for role in ("fire", "smoke", "flame_out")]
        return places

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


def site_model(data: object) -> type[SiteConfig]:
    """The model to validate this site file's data with: SiteConfig with each driver section's union over the
    types the file names. A section with a missing or unknown type gets every type of its roles, so its error
    (``unknown type 'x' (did you mean ...) (known: ...)``) reads as it always did."""
    sections = data if isinstance(data, dict) else {}
    return _site_model(tuple(used_types(sections.get(name), roles) for name, roles in SECTION_ROLES.items()))


def full_site_model() -> type[SiteConfig]:
    """SiteConfig with every driver's config model in its unions (``fieldgate schema``)."""
    return _site_model((None,) * len(SECTION_ROLES))


@functools.lru_cache(maxsize=16)  # a site reloads with the same types: one model, not one per reload
def _site_model(types: tuple[frozenset[str] | None, ...]) -> type[SiteConfig]:
    fields: dict[str, Any] = {}
    for (name, roles), used in zip(SECTION_ROLES.items(), types, strict=True):
        declared = SiteConfig.model_fields[name]
        fields[name] = (list[section_union(roles, used)],  # type: ignore[misc]
                        Field(default_factory=list, description=declared.description))
    return cast(type[SiteConfig], create_model("SiteConfig", __base__=SiteConfig, __module__=__name__, **fields))


def _unique(what: str, places: list[tuple[ConfigPath, str]]) -> list[tuple[ConfigPath, str]]:
    """A problem at every repeat of a name, saying where it was first given."""
    first: dict[str, ConfigPath] = {}
    problems: list[tuple[ConfigPath, str]] = []
    for path, name in places:
        if name in first:
            problems.append((path, f"{what} '{name}' is used twice (first at {dotted(first[name])})"))
        else:
            first[name] = path
    return problems


def _check_ack_key(links: list[LinkConfig], satellite: SatelliteSection) -> None:
    """A satellite link that waits for the platform's ACK must be able to tell a genuine one."""
    if satellite.has_ack_key:
        return
    problems: list[tuple[ConfigPath, str]] = [
        (("links", i, "policy", "app_ack"), "policy.app_ack (on by default) needs satellite.ack_key_file or "
         "satellite.ack_key_credential: the key the platform's ACKs are checked with (docs/satellite.md §1.4)")
        for i, link in enumerate(links) for sat in satellite_links([link]) if sat.policy.app_ack]
    if problems:
        raise PlacedConfigError(problems)
