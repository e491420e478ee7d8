"""Operator signatures (Ed25519) over an alert digest; the two-person rule for manual Actual alerts."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from pydantic import Field

from gateway.alerts.model import Alert
from gateway.shared import StrictModel

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

# cryptography (OpenSSL bound in, ~7 MB resident) is imported where a key is loaded or a signature checked,
# not with this module: the site config imports it, and a site without operators or issuers never signs.

MAX_FUTURE_SKEW_S = 60.0  # a signature stamped further ahead than this is refused


class OperatorSignature(StrictModel):
    operator: str = Field(min_length=1, max_length=64)
    signed_at: int = Field(description="epoch seconds, part of the signed message")
    signature: str = Field(description="base64 Ed25519 signature")


class SignatureRefused(Exception):
    pass


def signing_message(alert: Alert, signed_at: int) -> bytes:
    return f"fieldgate-alert-v1|{alert.digest()}|{signed_at}".encode()


def config_signing_message(gateway_id: str, sha256: str, signed_at: int) -> bytes:
    """What operators sign to let a site file that changes the broadcast outputs or the interlock be
    applied on ``gateway_id`` (docs/fleet.md): the file by its sha256, for that gateway only."""
    return f"fieldgate-config-v1|{gateway_id}|{sha256}|{signed_at}".encode()


def sign(alert: Alert, operator: str, key: Ed25519PrivateKey, now: float) -> OperatorSignature:
    return sign_message(lambda at: signing_message(alert, at), operator, key, now)


def sign_message(message: Callable[[int], bytes], operator: str, key: Ed25519PrivateKey,
                 now: float) -> OperatorSignature:
    signed_at = int(now)
    signature = key.sign(message(signed_at))
    return OperatorSignature(operator=operator, signed_at=signed_at, signature=base64.b64encode(signature).decode())


def public_key_bytes(text: str) -> bytes:
    """The raw 32 bytes of a base64 Ed25519 public key (what `fieldgate alert keygen` prints), checked as far
    as ``load_public_key`` checks it (any 32 bytes load), without importing cryptography: the config does this."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("the key is not base64") from exc
    if len(raw) != 32:
        raise ValueError("the key must be a raw 32-byte Ed25519 public key")
    return raw


def load_public_key(text: str) -> Ed25519PublicKey:
    """A raw 32-byte Ed25519 public key, base64 (what `fieldgate alert keygen` prints)."""
    raw = public_key_bytes(text)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    return Ed25519PublicKey.from_public_bytes(raw)


def checked_keys(keys: dict[str, str], what: str) -> dict[str, str]:
    """A config's name -> base64 key mapping, every key checked (a validator of operator and update keys)."""
    for name, text in keys.items():
        try:
            public_key_bytes(text)
        except ValueError as exc:
            raise ValueError(f"{what} {name}: {exc}") from exc
    return keys


def public_key_text(key: Ed25519PrivateKey) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


class Keyring:
    def __init__(self, operators: Mapping[str, str]) -> None:
        self._raw = {name: public_key_bytes(text) for name, text in operators.items()}  # every key checked now
        self._loaded: dict[str, Ed25519PublicKey] | None = None

    @property
    def _keys(self) -> dict[str, Ed25519PublicKey]:
        """The key objects, made at the first signature to check (cryptography is imported then)."""
        if self._loaded is None:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

            self._loaded = {name: Ed25519PublicKey.from_public_bytes(raw) for name, raw in self._raw.items()}
        return self._loaded

    def verified_signers(
        self, alert: Alert, signatures: Iterable[OperatorSignature], window_s: float, now: float
    ) -> tuple[list[str], list[str]]:
        """(operators whose signature is valid and fresh, one per distinct key; reasons for the rest)."""
        return self.verified_message_signers(lambda at: signing_message(alert, at), signatures, window_s, now)

    def verified_message_signers(
        self, message: Callable[[int], bytes], signatures: Iterable[OperatorSignature], window_s: float, now: float
    ) -> tuple[list[str], list[str]]:
        """As verified_signers, for any message stamped with the signing time (a site file's digest).

        cryptography is imported at the first signature to check, not before: an automatic alert (no
        signatures) never waits on that import on its way to the sirens."""
        good: list[str] = []
        keys_seen: set[bytes] = set()
        problems: list[str] = []
        for sig in signatures:
            key = self._keys.get(sig.operator)
            if key is None:
                problems.append(f"{sig.operator}: unknown operator")
                continue
            if sig.signed_at > now + MAX_FUTURE_SKEW_S:
                problems.append(f"{sig.operator}: signed in the future")
                continue
            if now - sig.signed_at > window_s:
                problems.append(f"{sig.operator}: signature older than {window_s:.0f} s")
                continue
            from cryptography.exceptions import InvalidSignature  # imported already: the key was made with it

            try:
                key.verify(base64.b64decode(sig.signature, validate=True), message(sig.signed_at))
            except (InvalidSignature, binascii.Error, ValueError):
                problems.append(f"{sig.operator}: signature does not match what was signed")
                continue
            raw = self._raw[sig.operator]
            if raw in keys_seen:
                problems.append(f"{sig.operator}: same key as another signer")
                continue
            keys_seen.add(raw)
            good.append(sig.operator)
        return good, problems

    def require(
        self, alert: Alert, signatures: Iterable[OperatorSignature], count: int, window_s: float, now: float
    ) -> list[str]:
        return self.require_message(lambda at: signing_message(alert, at), signatures, count, window_s, now)

    def require_message(
        self, message: Callable[[int], bytes], signatures: Iterable[OperatorSignature], count: int, window_s: float,
        now: float,
    ) -> list[str]:
        good, problems = self.verified_message_signers(message, signatures, window_s, now)
        if len(good) < count:
            detail = "; ".join(problems) if problems else "no signatures"
            raise SignatureRefused(f"{count} distinct operator signature(s) required, {len(good)} valid ({detail})")
        return good
