"""Payload profiles: how journal records look on the wire for one link (docs/payloads.md).

``get_profile(name, gateway_id, config)`` is the one place that maps the link's
``profile:`` setting to a profile object. The same object is handed to the link runner
(``encode``) and to the MQTT link (session: status/will topic, subscriptions, connect
messages, reply topics).
"""

from __future__ import annotations

from typing import Protocol, get_args

from gateway.profiles.base import InboundCommand, PayloadProfile
from gateway.profiles.fieldgate import FieldgateSessionProfile
from gateway.profiles.options import ThingsboardOptions
from gateway.profiles.thingsboard import ThingsboardProfile
from gateway.shared import PayloadProfileName

PROFILES: tuple[PayloadProfileName, ...] = get_args(PayloadProfileName)


class ProfileSettings(Protocol):
    """What a profile reads of its link's config section (drivers/mqtt/config.py)."""

    @property
    def topic_prefix(self) -> str: ...

    @property
    def thingsboard(self) -> ThingsboardOptions: ...


def get_profile(name: str, gateway_id: str, config: ProfileSettings,
                historical_after: float = 30.0) -> PayloadProfile:
    """The profile object for one link; ``name`` is normally ``config.profile``."""
    if name == FieldgateSessionProfile.name:
        return FieldgateSessionProfile(gateway_id, config.topic_prefix, historical_after)
    if name == ThingsboardProfile.name:
        return ThingsboardProfile(gateway_id, config.thingsboard)
    raise ValueError(f"unknown payload profile '{name}'; known: {', '.join(PROFILES)}")


__all__ = ["PROFILES", "FieldgateSessionProfile", "InboundCommand", "PayloadProfile", "ThingsboardProfile",
           "get_profile"]
