"""The signed command envelope: JSON form (MQTT), compact form (satellite), canonical signing bytes.

Both forms describe the same fields; the signature is over the same canonical bytes
whichever way the command travelled (docs/commands.md):

    DOMAIN + RFC 8785 canonical JSON of
    {"args":{...},"cmd":"...","exp":N,"gw":"...","iat":N,"id":N,"kid":"...","nonce":"<base64>","v":1}

Parsing never trusts its input: anything unexpected raises :class:`EnvelopeError`
with the reason the reply will carry.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, cast

from gateway.commands.canonical import CanonicalError, canonical_json
from gateway.commands.names import COMMANDS, CommandName, Reason

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gateway import compact

VERSION = 1
DOMAIN = b"fieldgate-command-v1|"
MAX_ID = 2**53 - 1  # JSON-safe integer; also fits the compact header's command id
MAX_TIME = 2**32 - 1  # u32 epoch seconds, as in the compact header
MAX_NONCE_BYTES = 12  # the compact form keeps the nonce length in 4 bits
SIGNATURE_BYTES = 64
# A broadcast request with two signatures is ~2 KB; a chunk (below) ~30 KB. The MQTT link takes 32 KiB
# (drivers/mqtt/inbound.py MAX_MESSAGE_BYTES).
MAX_ENVELOPE_BYTES = 32 * 1024
MAX_ARGS_BYTES = 8_192
# A chunk of a site file or an update bundle carries up to 30 KiB of base64 (gateway/commands/dispatch.py);
# a chunk never fits a satellite message anyway.
MAX_CHUNK_ARGS_BYTES = 31 * 1024
_CHUNKS = frozenset({"config_chunk", "update_chunk"})
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_FIELDS = frozenset({"v", "id", "gw", "iat", "exp", "nonce", "kid", "cmd", "args", "sig"})


class EnvelopeError(Exception):
    """The input is not an acceptable envelope. ``hint`` holds what could be read (id, kid, cmd)."""

    def __init__(self, reason: Reason, detail: str, hint: dict[str, Any] | None = None) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail
        self.hint = hint or {}


@dataclass(frozen=True, slots=True)
class Envelope:
    id: int  # command id, unique per issuer key (the replay cache remembers it until expiry)
    gw: str  # target gateway id
    iat: int  # issued at, UTC epoch seconds
    exp: int  # expires, UTC epoch seconds
    nonce: bytes  # 0..12 random bytes
    kid: str  # issuer key id
    cmd: CommandName
    args: dict[str, Any]
    sig: bytes | None = None  # Ed25519 over signing_bytes(); None = unsigned

    def body(self) -> dict[str, Any]:
        """Every signed field, as it appears in the JSON form."""
        return {"v": VERSION, "id": self.id, "gw": self.gw, "iat": self.iat, "exp": self.exp,
                "nonce": base64.b64encode(self.nonce).decode(), "kid": self.kid, "cmd": self.cmd,
                "args": self.args}

    def signing_bytes(self) -> bytes:
        return DOMAIN + canonical_json(self.body())

    def signed(self, key: Ed25519PrivateKey) -> Envelope:
        return replace(self, sig=key.sign(self.signing_bytes()))

    def to_json(self) -> dict[str, Any]:
        out = self.body()
        if self.sig is not None:
            out["sig"] = base64.b64encode(self.sig).decode()
        return out

    def to_bytes(self) -> bytes:
        """The MQTT payload (any JSON layout is accepted; this one is compact)."""
        return json.dumps(self.to_json(), separators=(",", ":"), ensure_ascii=False).encode()


def check_fields(env: Envelope) -> None:
    """Ranges shared by both forms (raises EnvelopeError MALFORMED)."""
    problems = []
    if not 0 <= env.id <= MAX_ID:
        problems.append(f"id must be 0..{MAX_ID}")
    if not _NAME.match(env.gw):
        problems.append("gw must match [A-Za-z0-9_.-]{1,64}")
    if not (0 <= env.iat <= MAX_TIME and 0 <= env.exp <= MAX_TIME):
        problems.append("iat and exp must be u32 epoch seconds")
    elif env.exp <= env.iat:
        problems.append("exp must be after iat")
    if len(env.nonce) > MAX_NONCE_BYTES:
        problems.append(f"nonce longer than {MAX_NONCE_BYTES} bytes")
    if not _NAME.match(env.kid):
        problems.append("kid must match [A-Za-z0-9_.-]{1,64}")
    if env.cmd not in COMMANDS:
        problems.append(f"unknown command '{env.cmd[:64]}'")
    try:
        limit = MAX_CHUNK_ARGS_BYTES if env.cmd in _CHUNKS else MAX_ARGS_BYTES
        if len(canonical_json(env.args)) > limit:
            problems.append(f"args longer than {limit} bytes")
    except CanonicalError as exc:
        problems.append(f"args: {exc}")
    if env.sig is not None and len(env.sig) != SIGNATURE_BYTES:
        raise EnvelopeError(Reason.BAD_SIGNATURE, f"signature must be {SIGNATURE_BYTES} bytes", _hint(env))
    if problems:
        raise EnvelopeError(Reason.MALFORMED, "; ".join(problems), _hint(env))


def _hint(env: Envelope) -> dict[str, Any]:
    return {"id": env.id, "kid": env.kid[:64], "cmd": env.cmd[:64]}


# --------------------------------------------------------------------------- JSON form


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key '{key[:64]}'")  # which one would the signer have meant?
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def strict_loads(data: bytes) -> Any:
    return json.loads(data, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)


def parse_json(payload: bytes) -> Envelope:
    """The JSON form (MQTT payload). Raises EnvelopeError; ``sig`` absent gives ``sig=None``."""
    if len(payload) > MAX_ENVELOPE_BYTES:
        raise EnvelopeError(Reason.MALFORMED, f"envelope larger than {MAX_ENVELOPE_BYTES} bytes")
    try:
        data = strict_loads(payload)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise EnvelopeError(Reason.MALFORMED, f"not JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise EnvelopeError(Reason.MALFORMED, "the envelope must be a JSON object")
    hint = {k: data[k] for k in ("id", "kid", "cmd") if isinstance(data.get(k), int | str)
            and not isinstance(data.get(k), bool)}
    hint = {k: v[:64] if isinstance(v, str) else v for k, v in hint.items()
            if not isinstance(v, int) or 0 <= v <= MAX_ID}
    unknown = sorted(set(data) - _FIELDS)
    missing = sorted(_FIELDS - {"sig"} - set(data))
    if unknown or missing:
        detail = "; ".join(part for part in (
            f"unknown field(s) {', '.join(k[:32] for k in unknown[:5])}" if unknown else "",
            f"missing field(s) {', '.join(missing)}" if missing else "") if part)
        raise EnvelopeError(Reason.MALFORMED, detail, hint)
    if data["v"] != VERSION or isinstance(data["v"], bool):
        raise EnvelopeError(Reason.MALFORMED, f"unsupported version {str(data['v'])[:16]}", hint)
    ints = {k: data[k] for k in ("id", "iat", "exp")}
    strs = {k: data[k] for k in ("gw", "kid", "cmd", "nonce")}
    bad = [k for k, v in ints.items() if not isinstance(v, int) or isinstance(v, bool)]
    bad += [k for k, v in strs.items() if not isinstance(v, str)]
    if not isinstance(data["args"], dict):
        bad.append("args")
    if bad:
        raise EnvelopeError(Reason.MALFORMED, f"wrong type for {', '.join(sorted(bad))}", hint)
    nonce = _canonical_b64(data["nonce"], "nonce", hint, Reason.MALFORMED)
    sig: bytes | None = None
    if data.get("sig") is not None:
        if not isinstance(data["sig"], str):
            raise EnvelopeError(Reason.BAD_SIGNATURE, "sig must be a base64 string", hint)
        sig = _canonical_b64(data["sig"], "sig", hint, Reason.BAD_SIGNATURE)
    env = Envelope(id=data["id"], gw=data["gw"], iat=data["iat"], exp=data["exp"], nonce=nonce, kid=data["kid"],
                   cmd=cast(CommandName, data["cmd"]), args=data["args"], sig=sig)
    check_fields(env)
    return env


def _canonical_b64(text: str, name: str, hint: dict[str, Any], reason: Reason) -> bytes:
    # One text per byte string: the signed nonce text must be the one the gateway re-creates.
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise EnvelopeError(reason, f"{name} is not base64", hint) from None
    if base64.b64encode(raw).decode() != text:
        raise EnvelopeError(reason, f"{name} is not in canonical base64 (standard alphabet, padded)", hint)
    return raw


# --------------------------------------------------------------------------- compact form


def compact_body(env: Envelope, issuer_number: int) -> bytes:
    """The COMMAND body after the compact header (which carries gateway number, iat and id).

    ``code | nonce_len << 4`` (1 byte), issuer number (varint), exp - iat (varint), nonce,
    args (canonical JSON, empty for ``{}``), signature (64 bytes, always last).
    """
    if env.sig is None:
        raise ValueError("sign the envelope before packing it")
    check_fields(env)
    if not 0 <= issuer_number < 2**32:
        raise ValueError("issuer number must be 0..2**32-1")
    out = bytearray([COMMANDS.index(env.cmd) | len(env.nonce) << 4])
    _put_varint(out, issuer_number)
    _put_varint(out, env.exp - env.iat)
    out += env.nonce
    if env.args:
        out += canonical_json(env.args)
    out += env.sig
    return bytes(out)


def encode_compact(env: Envelope, *, gateway_number: int, issuer_number: int) -> bytes:
    """A whole compact COMMAND message (header + body), ready for a BeiDou/Iridium MT."""
    from gateway import compact  # the compact codec: only where a satellite message is made or read

    return compact.encode_command(compact_body(env, issuer_number), gateway=gateway_number, time=env.iat,
                                  command_id=env.id)


def from_compact(message: compact.CompactMessage, gateway_id: str, issuers: dict[int, str]) -> Envelope:
    """Rebuild the envelope from a decoded COMMAND. The gateway id is the verifier's own (the
    header's gateway number was already matched); issuer numbers map to key ids via config."""
    from gateway import compact  # the compact codec: only where a satellite message is made or read

    hint: dict[str, Any] = {"id": message.seqs[0] if message.seqs else None}
    if message.kind is not compact.MessageKind.COMMAND or len(message.seqs) != 1:
        raise EnvelopeError(Reason.MALFORMED, f"not a COMMAND message ({message.kind.name})", hint)
    body = message.command
    pos = 0
    try:
        head = body[0]
        pos = 1
        issuer, pos = _get_varint(body, pos)
        ttl, pos = _get_varint(body, pos)
    except IndexError:
        raise EnvelopeError(Reason.MALFORMED, "COMMAND body truncated", hint) from None
    code, nonce_len = head & 0x0F, head >> 4
    if code >= len(COMMANDS):
        raise EnvelopeError(Reason.MALFORMED, f"unknown command code {code}", hint)
    hint["cmd"] = COMMANDS[code]
    if nonce_len > MAX_NONCE_BYTES:
        raise EnvelopeError(Reason.MALFORMED, f"nonce length {nonce_len} over {MAX_NONCE_BYTES}", hint)
    if len(body) < pos + nonce_len + SIGNATURE_BYTES:
        raise EnvelopeError(Reason.UNSIGNED, "COMMAND body has no room for a 64-byte signature", hint)
    kid = issuers.get(issuer)
    if kid is None:
        raise EnvelopeError(Reason.UNKNOWN_KEY, f"unknown issuer number {issuer}", hint)
    hint["kid"] = kid
    nonce = body[pos:pos + nonce_len]
    raw_args = body[pos + nonce_len:len(body) - SIGNATURE_BYTES]
    args: Any = {}
    if raw_args:
        try:
            args = strict_loads(raw_args)
        except (ValueError, RecursionError) as exc:
            raise EnvelopeError(Reason.MALFORMED, f"args are not JSON: {str(exc)[:200]}", hint) from None
        if not isinstance(args, dict):
            raise EnvelopeError(Reason.MALFORMED, "args must be a JSON object", hint)
    env = Envelope(id=message.seqs[0], gw=gateway_id, iat=message.base_time, exp=message.base_time + ttl,
                   nonce=bytes(nonce), kid=kid, cmd=COMMANDS[code], args=args, sig=bytes(body[-SIGNATURE_BYTES:]))
    check_fields(env)
    return env


def _put_varint(out: bytearray, n: int) -> None:
    while True:
        low = n & 0x7F
        n >>= 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return


def _get_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    for i in range(5):  # u32 fields only: at most 5 bytes
        byte = data[pos + i]
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos + i + 1
    raise IndexError("varint longer than 5 bytes")
