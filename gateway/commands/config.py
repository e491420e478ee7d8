"""The ``commands:`` section of the site config: who may command this gateway, and what."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, field_validator, model_validator

from gateway.alerts.signing import load_public_key, public_key_bytes
from gateway.commands.names import READ_ONLY, CommandName
from gateway.fleet.config import DEFAULT_UPDATE_TIMEOUT_S
from gateway.shared import Seconds, StrictModel

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

KEY_ID = r"^[A-Za-z0-9_.-]{1,64}$"
KeyId = Annotated[str, Field(pattern=KEY_ID)]


class CommandKeyError(ValueError):
    """An issuer key cannot be loaded (missing file, not an Ed25519 public key)."""


class IssuerConfig(StrictModel):
    """One signing key of the platform side (a person's token or a platform service)."""

    key: str | None = Field(default=None, description="base64 raw 32-byte Ed25519 public key")
    key_file: Path | None = Field(default=None, description="file with the base64 key or a PEM public key")
    number: int | None = Field(default=None, ge=0, lt=2**32,
                               description="issuer number in the compact satellite form (agreed with the platform)")
    allow: list[CommandName] = Field(min_length=1, description="commands this key may issue")

    @field_validator("key")
    @classmethod
    def _key_parses(cls, key: str | None) -> str | None:
        if key is not None:
            public_key_bytes(key)  # loaded (with cryptography) when the command plane starts
        return key

    @model_validator(mode="after")
    def _one_key(self) -> IssuerConfig:
        if (self.key is None) == (self.key_file is None):
            raise ValueError("give exactly one of key (base64) or key_file")
        return self


class CommandsConfig(StrictModel):
    issuers: dict[KeyId, IssuerConfig] = Field(default_factory=dict, description="key id -> issuer")
    allow: list[CommandName] = Field(default_factory=lambda: list(READ_ONLY),
                                     description="commands this site accepts at all (default: read-only ones)")
    write_points: list[str] = Field(default_factory=list, description="the only points write_point may set")
    max_clock_skew: Seconds = Field(default=60.0, le=3600, description="tolerated difference of the two clocks")
    max_ttl: Seconds = Field(default=3600.0, ge=1, le=7 * 86400,
                             description="longest accepted validity (expires - issued_at); bounds the replay cache")
    replay_cache: Path | None = Field(default=None, description="defaults to <state_dir>/commands/replay.sqlite")
    replay_cache_size: int = Field(default=10_000, ge=100, le=1_000_000,
                                   description="entries kept; when full of unexpired entries, commands are refused")
    timeout: Seconds = Field(default=30.0, gt=0, le=600, description="longest a command may run")
    update_timeout: Seconds = Field(
        default=DEFAULT_UPDATE_TIMEOUT_S, gt=0, le=3600,
        description="longest update_chunk and update_apply may run: they assemble and verify the bundle")
    max_result_bytes: int = Field(default=60_000, ge=256, le=1_000_000, description="larger results are summarised")

    @field_validator("issuers")
    @classmethod
    def _key_ids(cls, issuers: dict[KeyId, IssuerConfig]) -> dict[str, IssuerConfig]:
        import re

        numbers: dict[int, str] = {}
        for kid, issuer in issuers.items():
            if not re.match(KEY_ID, kid):
                raise ValueError(f"issuer key id '{kid}' must match {KEY_ID}")
            if issuer.number is not None:
                if issuer.number in numbers:
                    raise ValueError(f"issuers {numbers[issuer.number]} and {kid} have the same number")
                numbers[issuer.number] = kid
        return issuers

    def replay_cache_path(self, state_dir: Path) -> Path:
        return self.replay_cache or state_dir / "commands" / "replay.sqlite"

    def issuer_numbers(self) -> dict[int, str]:
        return {i.number: kid for kid, i in self.issuers.items() if i.number is not None}


def load_issuer_keys(config: CommandsConfig, base_dir: Path | None = None) -> dict[str, Ed25519PublicKey]:
    """Every issuer's public key; ``key_file`` paths are relative to ``base_dir`` (the config's folder)."""
    return {kid: _load(kid, issuer, base_dir) for kid, issuer in config.issuers.items()}


def _load(kid: str, issuer: IssuerConfig, base_dir: Path | None) -> Ed25519PublicKey:
    if issuer.key is not None:
        return load_public_key(issuer.key)
    assert issuer.key_file is not None
    path = issuer.key_file if issuer.key_file.is_absolute() or base_dir is None else base_dir / issuer.key_file
    try:
        data = path.read_bytes()[:8192]
    except OSError as exc:
        raise CommandKeyError(f"issuer {kid}: cannot read key_file {path}: {exc.strerror or exc}") from None
    return public_key_from_bytes(data, f"issuer {kid}: key_file {path}")


def public_key_from_bytes(data: bytes, where: str) -> Ed25519PublicKey:
    """A PEM ``PUBLIC KEY`` or the base64 raw key that ``fieldgate command keygen`` prints."""
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        try:
            key = serialization.load_pem_public_key(text)
        except ValueError as exc:
            raise CommandKeyError(f"{where}: not a PEM public key ({exc})") from None
        if not isinstance(key, Ed25519PublicKey):
            raise CommandKeyError(f"{where}: the PEM key is not an Ed25519 key")
        return key
    try:
        return load_public_key(text.decode("ascii"))
    except (UnicodeDecodeError, binascii.Error, ValueError) as exc:
        raise CommandKeyError(f"{where}: {exc}") from None


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_text(key: Ed25519PublicKey) -> str:
    return base64.b64encode(raw_public_key(key)).decode()


def effective_allow(config: CommandsConfig) -> Mapping[str, frozenset[str]]:
    """Per issuer: what it may issue on this site (its own list within the site's allowlist)."""
    site = frozenset(config.allow)
    return {kid: frozenset(issuer.allow) & site for kid, issuer in config.issuers.items()}
