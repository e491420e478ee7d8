"""The site file's ``fleet:`` section: who may sign software updates, and where the releases live."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from gateway.alerts.signing import checked_keys
from gateway.shared import Name, StrictModel

DEFAULT_MAX_UPDATE_BYTES = 200 * 1024 * 1024


class FleetSection(StrictModel):
    update_keys: dict[Name, str] = Field(
        default_factory=dict,
        description="name -> base64 raw Ed25519 public key that signs update bundles (not a command or operator key)")
    ab_root: Path = Field(default=Path("/opt/fieldgate/releases"),
                          description="holds the update slots a and b and the 'current' link (to ../venv at install)")
    max_update_bytes: int = Field(default=DEFAULT_MAX_UPDATE_BYTES, ge=1024 * 1024, le=2 * 1024**3,
                                  description="largest update bundle accepted, in bytes")

    @field_validator("update_keys")
    @classmethod
    def _keys_parse(cls, keys: dict[str, str]) -> dict[str, str]:
        return checked_keys(keys, "update key")
