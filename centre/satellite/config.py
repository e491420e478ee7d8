"""The centre bridge's config file: the command receiver, the broker, and card -> gateway.

Loaded like a site config: every problem is one ``file:line:column: message`` line. A gateway is
described either by its own site file (``site:``, read with the gateway's loader, so aliases, rule
aliases, units, issuers and the topic prefix cannot drift from what the gateway runs) or inline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from drivers.beidou.config import BeidouConfig
from drivers.mqtt.config import MqttTls
from gateway import compact
from gateway.ackkey import AckKeyError, load_ack_key
from gateway.config.errors import ConfigError
from gateway.config.loader import load_site, validate_document
from gateway.config.yamlmarks import ConfigSyntaxError, load_marked
from gateway.payloads import HISTORICAL_AFTER
from gateway.shared import ConfigPath, Name, PlacedConfigError, Seconds, StrictModel, TopicPrefix

CardId = int


class ReceiverConfig(StrictModel):
    """The command receiver (指挥机) on a serial port; the same driver and dialects as a gateway's module."""

    port: str = Field(min_length=1, description="serial device of the command receiver")
    baud: int = Field(19200, gt=0)
    dialect: Literal["auto", "2.1", "bds3", "4.0"] = "auto"
    encoding: Literal["code", "mixed"] = Field("mixed", description="how ACKs and commands are sent")
    info_category: int | None = Field(None, ge=0, le=255, description="4.0 $TXSQ category (default 0x46)")
    max_bytes: int | None = Field(None, ge=1, le=1750, description="default from the receiver's card level")
    interval: Seconds | None = Field(None, gt=0, le=3600, description="default read from the receiver's card")
    probe_timeout: Seconds = Field(2.0, gt=0, le=30)
    feedback_timeout: Seconds = Field(10.0, gt=0, le=120)
    reopen_delay: Seconds = Field(5.0, gt=0, le=600)

    def link_config(self) -> BeidouConfig:
        """The gateway driver's config for this receiver (dest is per message; 0 is never used)."""
        return BeidouConfig(type="beidou", name="receiver", port=self.port, baud=self.baud, dialect=self.dialect,
                            dest=0, encoding=self.encoding, info_category=self.info_category,
                            max_bytes=self.max_bytes, interval=self.interval,
                            probe_timeout=self.probe_timeout, feedback_timeout=self.feedback_timeout,
                            reopen_delay=self.reopen_delay)


class BrokerConfig(StrictModel):
    host: str = Field(min_length=1)
    port: int = Field(1883, gt=0, lt=65536)
    client_id: Name = Field("fieldgate-satcentre", description="one per bridge: several receivers, several ids")
    keepalive: Seconds = Field(30, ge=5, le=3600)
    reconnect: Seconds = Field(2.0, gt=0, le=300)
    tls: MqttTls | None = Field(None, description="as a gateway's MQTT link: ca/cert/key as file or systemd "
                                                  "credential, check_hostname, min_version (files: relative to "
                                                  "this file)")


class GatewayEntry(StrictModel):
    """One subordinate gateway: its BeiDou card and what its compact messages mean."""

    card: int = Field(ge=1, lt=2**21, description="the gateway's BeiDou card id (the sender the receiver reports)")
    ack_key_file: Path = Field(description="the gateway's ACK key (fieldgate ack keygen); relative to this file")
    site: Path | None = Field(None, description="the gateway's site config: everything below is taken from it")
    gateway_id: Name | None = None
    gateway_number: int | None = Field(None, ge=0, lt=2**32)
    aliases: dict[int, str] = Field(default_factory=dict)
    rule_aliases: dict[str, int] = Field(default_factory=dict)
    units: dict[str, str] = Field(default_factory=dict, description="point id -> unit (a site file gives them)")
    topic_prefix: TopicPrefix | None = Field(None, description="default: broker section's topic_prefix")

    @model_validator(mode="after")
    def _site_or_inline(self) -> GatewayEntry:
        inline = self.gateway_id is not None or self.gateway_number is not None or self.aliases
        if self.site is not None and inline:
            raise ValueError("give either site (the gateway's config file) or gateway_id/gateway_number/aliases, "
                             "not both")
        if self.site is None and (self.gateway_id is None or self.gateway_number is None):
            raise ValueError("needs site (the gateway's config file), or gateway_id and gateway_number")
        return self


class CentreConfig(StrictModel):
    name: Name = Field("satcentre", description="in logs and the bridge's own status topic")
    receiver: ReceiverConfig
    broker: BrokerConfig
    topic_prefix: TopicPrefix = Field("fieldgate/v1", description="default topic prefix of the gateways")
    gateways: list[GatewayEntry] = Field(min_length=1, max_length=10_000)
    dedup_per_gateway: int = Field(4096, ge=64, le=1_000_000, description="seqs remembered per gateway")
    max_queued: int = Field(1000, ge=10, le=100_000, description="messages waiting for the broker at most")
    state_file: Path | None = Field(None, description="dedup, owed ACKs, queued commands and publications (SQLite); "
                                                      "default /var/lib/fieldgate/<name>.db; relative: to this file")

    @model_validator(mode="after")
    def _unique_cards(self) -> CentreConfig:
        problems: list[tuple[ConfigPath, str]] = []
        seen: dict[int, int] = {}
        for i, entry in enumerate(self.gateways):
            if entry.card in seen:
                problems.append((("gateways", i, "card"), f"card {entry.card} is also gateways[{seen[entry.card]}]"))
            seen.setdefault(entry.card, i)
        if problems:
            raise PlacedConfigError(problems)
        return self


@dataclass(frozen=True)
class Gateway:
    """A card's gateway, resolved: everything the bridge needs to read its messages and answer them."""

    card: int
    gateway_id: str
    number: int
    aliases: compact.AliasTable
    rules_by_alias: Mapping[int, str]
    units: Mapping[str, str]
    cameras: frozenset[str]
    issuers: Mapping[int, str]  # issuer number -> key id
    topic_prefix: str
    ack_key: bytes
    historical_after: Seconds = HISTORICAL_AFTER
    base: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "base", f"{self.topic_prefix.rstrip('/')}/{self.gateway_id}")


STATE_DIR = Path("/var/lib/fieldgate")


@dataclass(frozen=True)
class Centre:
    config: CentreConfig
    gateways: Mapping[int, Gateway]  # by card
    state_path: Path = STATE_DIR / "satcentre.db"


def load_centre(path: str | Path) -> Centre:
    """The config at ``path`` with every gateway resolved; raises ConfigError (file:line:column lines)."""
    try:
        doc = load_marked(path)
    except ConfigSyntaxError as exc:
        raise ConfigError([str(exc)]) from None
    config: CentreConfig = validate_document(doc, CentreConfig)
    folder = Path(path).parent
    gateways: dict[int, Gateway] = {}
    problems: list[str] = []
    numbers: dict[int, int] = {}
    for i, entry in enumerate(config.gateways):
        try:
            gateway = _resolve(entry, config, folder)
        except (ConfigError, AckKeyError) as exc:
            key = "site" if isinstance(exc, ConfigError) else "ack_key_file"
            lines = exc.lines if isinstance(exc, ConfigError) else [str(exc)]
            problems.extend(f"{doc.mark_for(('gateways', i, key))}: gateways[{i}].{key}: {line}" for line in lines)
            continue
        if gateway.number in numbers:
            problems.append(f"{doc.mark_for(('gateways', i))}: gateways[{i}]: gateway number {gateway.number} is "
                            f"also gateways[{numbers[gateway.number]}]'s (compact messages name gateways by number)")
        numbers.setdefault(gateway.number, i)
        gateways[entry.card] = gateway
    if problems:
        raise ConfigError(problems)
    state = config.state_file or STATE_DIR / f"{config.name}.db"
    tls = config.broker.tls
    if tls is not None:  # files named relative to this config, like every other file it names
        tls = tls.model_copy(update={k: folder / v for k in ("ca_file", "cert_file", "key_file")
                                     if (v := getattr(tls, k)) is not None and not v.is_absolute()})
        config = config.model_copy(update={"broker": config.broker.model_copy(update={"tls": tls})})
    return Centre(config, gateways, state if state.is_absolute() else folder / state)


def _resolve(entry: GatewayEntry, config: CentreConfig, folder: Path) -> Gateway:
    key_file = entry.ack_key_file if entry.ack_key_file.is_absolute() else folder / entry.ack_key_file
    key = load_ack_key(key_file, None)
    assert key is not None  # a file was named
    if entry.site is None:
        assert entry.gateway_id is not None and entry.gateway_number is not None  # the validator saw to it
        return Gateway(entry.card, entry.gateway_id, entry.gateway_number, compact.AliasTable(entry.aliases),
                       {n: rule for rule, n in entry.rule_aliases.items()}, dict(entry.units), frozenset(), {},
                       entry.topic_prefix or config.topic_prefix, key)
    from drivers.mqtt.config import MqttLinkConfig

    site = load_site(entry.site if entry.site.is_absolute() else folder / entry.site)
    units = {p.id: getattr(p, "unit", "") for bus in site.buses for d in bus.devices for p in d.points}
    prefixes = [link.topic_prefix for link in site.links
                if isinstance(link, MqttLinkConfig) and link.profile == "fieldgate"]
    issuers = {i.number: kid for kid, i in site.commands.issuers.items() if i.number is not None}
    return Gateway(entry.card, site.gateway.id, site.satellite.gateway_number,
                   compact.AliasTable(site.satellite.aliases),
                   {n: rule for rule, n in site.satellite.rule_aliases.items()}, units,
                   frozenset(c.name for c in site.cameras), issuers,
                   prefixes[0] if prefixes else config.topic_prefix, key, site.journal.historical_after)
