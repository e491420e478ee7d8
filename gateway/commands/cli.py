"""`fieldgate command keygen | sign | verify`: make and check signed command envelopes.

For the platform side and for tests. Private keys stay on the platform (or an operator's
token); a gateway only ever holds public keys.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from gateway import compact
from gateway.alerts.signing import public_key_text
from gateway.commands.config import CommandsConfig, IssuerConfig, load_issuer_keys
from gateway.commands.envelope import (
    MAX_ID,
    MAX_NONCE_BYTES,
    Envelope,
    EnvelopeError,
    encode_compact,
    from_compact,
    parse_json,
    strict_loads,
)
from gateway.commands.names import COMMANDS, CommandName
from gateway.commands.plane import Rejected, Verifier
from gateway.fsutil import SECRET, create_exclusive

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


def add_subcommands(sub: Any) -> None:
    """Add ``command`` with its sub-commands to the ``fieldgate`` parser's subparsers."""
    command = sub.add_parser("command", help="signed commands: keygen, sign, verify (docs/commands.md)")
    actions = command.add_subparsers(dest="command_action", required=True)

    keygen = actions.add_parser("keygen", help="make an issuer key pair")
    keygen.add_argument("--key-id", required=True, help="the issuer key id (commands.issuers.<key id>)")
    keygen.add_argument("--out", default=".", help="folder for <key id>.key (created 0600, never overwritten)")
    keygen.set_defaults(handler=_keygen)

    sign = actions.add_parser("sign", help="make a signed envelope (JSON, or compact for satellite)")
    sign.add_argument("--key", required=True, help="PEM private key from keygen")
    sign.add_argument("--key-id", required=True)
    sign.add_argument("--gateway", required=True, help="target gateway id")
    sign.add_argument("--cmd", required=True, choices=COMMANDS)
    sign.add_argument("--args", default="{}", help="JSON object, or @file")
    sign.add_argument("--ttl", type=int, default=300, help="seconds until it expires (default 300)")
    sign.add_argument("--id", type=int, help="command id, unique per key (default random)")
    sign.add_argument("--issued-at", type=int, help="epoch seconds (default now)")
    sign.add_argument("--nonce-bytes", type=int, help=f"0..{MAX_NONCE_BYTES} (default 12 JSON, 0 compact)")
    sign.add_argument("--compact", action="store_true", help="satellite form (needs the two numbers)")
    sign.add_argument("--gateway-number", type=int, help="compact: the gateway's satellite number")
    sign.add_argument("--issuer-number", type=int, help="compact: commands.issuers.<key id>.number")
    sign.add_argument("--out", help="write here (compact: raw bytes) instead of stdout (compact: hex)")
    sign.set_defaults(handler=_sign)

    verify = actions.add_parser("verify", help="check an envelope's signature, target, time and allowlist")
    verify.add_argument("envelope", help="file with a JSON envelope or a compact message (raw or hex); - = stdin")
    verify.add_argument("--config", help="site YAML: gateway.id and the commands: section")
    verify.add_argument("--public-key", help="base64 key instead of --config (no allowlist check)")
    verify.add_argument("--key-id", help="with --public-key")
    verify.add_argument("--gateway", help="with --public-key: this gateway's id")
    verify.add_argument("--gateway-number", type=int, help="compact input: this gateway's satellite number")
    verify.add_argument("--issuer-number", type=int, help="compact input with --public-key: the key's number")
    verify.add_argument("--now", type=float, help="check times against this epoch instead of the clock")
    verify.set_defaults(handler=_verify)


def _keygen(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    out = Path(args.out) / f"{args.key_id}.key"
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        with create_exclusive(out, SECRET) as handle:
            handle.write(pem)
    except OSError as exc:
        print(f"cannot create {out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"private key: {out} (keep it on the platform side, never on the gateway)")
    print(f"add to the gateway's site config:\ncommands:\n  issuers:\n    {args.key_id}:\n"
          f"      key: {public_key_text(key)}\n      allow: [ping, status]")
    return 0


def _private_key(path: str) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} is not an Ed25519 private key")
    return key


def _sign(args: argparse.Namespace) -> int:
    try:
        key = _private_key(args.key)
        text = Path(args.args[1:]).read_text(encoding="utf-8") if args.args.startswith("@") else args.args
        cmd_args = strict_loads(text.encode())
        if not isinstance(cmd_args, dict):
            raise ValueError("--args must be a JSON object")
        if args.compact and (args.gateway_number is None or args.issuer_number is None):
            raise ValueError("--compact needs --gateway-number and --issuer-number")
        nonce_bytes = args.nonce_bytes if args.nonce_bytes is not None else (0 if args.compact else 12)
        if not 0 <= nonce_bytes <= MAX_NONCE_BYTES:
            raise ValueError(f"--nonce-bytes must be 0..{MAX_NONCE_BYTES}")
        issued = args.issued_at if args.issued_at is not None else int(time.time())
        command_id = args.id if args.id is not None else _default_id(args.compact, issued)
        env = Envelope(id=command_id, gw=args.gateway, iat=issued, exp=issued + args.ttl,
                       nonce=secrets.token_bytes(nonce_bytes), kid=args.key_id, cmd=cast(CommandName, args.cmd),
                       args=cmd_args).signed(key)
        if args.compact:
            data = encode_compact(env, gateway_number=args.gateway_number, issuer_number=args.issuer_number)
        else:
            parse_json(env.to_bytes())  # the same checks the gateway makes
            data = env.to_bytes()
    except (OSError, ValueError, EnvelopeError, compact.CompactEncodeError) as exc:
        print(f"cannot sign: {exc}", file=sys.stderr)
        return 1
    if args.out:
        Path(args.out).write_bytes(data)
        print(f"{args.out}: {len(data)} bytes, command id {env.id}", file=sys.stderr)
    else:
        print(data.hex() if args.compact else data.decode())
    return 0


def _default_id(compact_form: bool, issued: int) -> int:
    """JSON: random. Compact: the issue second modulo 2**14 (a 2-byte varint): unique per second for
    4.5 hours, longer than any command stays in the replay cache. A real platform keeps a counter."""
    return issued % 2**14 if compact_form else secrets.randbelow(MAX_ID)


def _read_input(name: str) -> bytes:
    data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
    stripped = data.strip()
    if stripped.startswith(b"{"):
        return stripped
    try:
        return bytes.fromhex(stripped.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return data


def _verifier_from_args(args: argparse.Namespace, now: float) -> tuple[Verifier, dict[int, str]]:
    if args.config:
        from gateway.config.yamlmarks import ConfigSyntaxError, load_marked

        path = Path(args.config)
        try:
            data = load_marked(path).data or {}
        except ConfigSyntaxError as exc:
            raise ValueError(str(exc)) from None
        config = CommandsConfig.model_validate(data.get("commands") or {})
        gateway_id = str((data.get("gateway") or {}).get("id", ""))
        keys = load_issuer_keys(config, path.parent)
        return Verifier(config, gateway_id, keys, lambda: now), config.issuer_numbers()
    if not (args.public_key and args.key_id and args.gateway):
        raise ValueError("give --config, or --public-key with --key-id and --gateway")
    issuer = IssuerConfig(key=args.public_key, number=args.issuer_number, allow=list(COMMANDS))
    config = CommandsConfig(issuers={args.key_id: issuer}, allow=list(COMMANDS))
    given: dict[str, Ed25519PublicKey] = load_issuer_keys(config)
    verifier = Verifier(config, args.gateway, given, lambda: now, check_write_points=False)
    return verifier, config.issuer_numbers()


def _verify(args: argparse.Namespace) -> int:
    now = args.now if args.now is not None else time.time()
    try:
        verifier, numbers = _verifier_from_args(args, now)
        data = _read_input(args.envelope)
        if data.startswith(b"{"):
            env = parse_json(data)
        else:
            message = compact.decode(data)
            if args.gateway_number is None:
                raise ValueError("compact input: give --gateway-number")
            if message.gateway != args.gateway_number:
                print(f"rejected: wrong_gateway: addressed to number {message.gateway}", file=sys.stderr)
                return 1
            env = from_compact(message, verifier.gateway_id, numbers)
        verifier.check(env)
    except (OSError, ValueError, compact.CompactDecodeError) as exc:
        print(f"cannot verify: {exc}", file=sys.stderr)
        return 2
    except (EnvelopeError, Rejected) as exc:
        print(f"rejected: {exc}", file=sys.stderr)
        return 1
    print(f"ok: command {env.id} '{env.cmd}' from {env.kid} for {env.gw}, valid {env.iat}..{env.exp}")
    print(json.dumps(env.args, ensure_ascii=False))
    return 0
