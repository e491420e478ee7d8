"""The site file's ``fleet:`` section: who may sign software updates, and where the releases live."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from gateway.alerts.signing import checked_keys
from gateway.shared import Name, StrictModel

DEFAULT_MAX_UPDATE_BYTES = 200 * 1024 * 1024
# How long the update_chunk that completes a bundle, and update_apply, may run (commands.update_timeout; the
# centre waits as long for their replies). The last chunk reads the chunk files and writes the bundle, then
# reads the bundle and writes its unpacked wheels, hashing all the way: 4 x 200 MiB. On a slow SD card
# (~10 MB/s read, ~4 MB/s sustained write, shared with the journal) that is 400/10 + 400/4 = 140 s, plus
# ~20 s of SHA-256 on a small ARM core: 160 s; about twice that for a busy card. update_apply re-reads and
# re-unpacks (2 passes, 3 from the inbox): less. The transfer itself is never inside one command: a chunk
# envelope is ~30 KB (base64), 0.25 s at 1 Mbit/s; the 200 MiB take ~38 min, in 9 310 commands.
DEFAULT_UPDATE_TIMEOUT_S = 300.0


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
