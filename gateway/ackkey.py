"""The per-gateway key that authenticates the platform's satellite ACKs (docs/satellite.md §1.4).

A symmetric secret shared by this gateway and the platform alone: the platform puts a truncated
HMAC under it at the end of every compact ACK, the gateway releases nothing an ACK names unless
the MAC checks out. It lives in a file or a systemd credential (``satellite.ack_key_file`` /
``satellite.ack_key_credential``), never in the YAML: base64 of 16..64 random bytes on one line,
as ``fieldgate ack keygen`` writes it.

Also the platform-side tool: ``fieldgate ack keygen | make``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import logging
import os
import secrets
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.credentials import CredentialError, check_readable, locate

if TYPE_CHECKING:
    from gateway.config.site import SatelliteSection

log = logging.getLogger("fieldgate.satellite")

KEY_BYTES = 32  # what keygen makes
MIN_KEY_BYTES, MAX_KEY_BYTES = 16, 64
WHAT = "satellite ACK key"


class AckKeyError(Exception):
    """The configured ACK key cannot be used. The message is the whole story."""


def parse_key(text: bytes, where: str) -> bytes:
    """The key from its file content: one line of base64."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise AckKeyError(f"{where} is not base64 text (make one with `fieldgate ack keygen`)") from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise AckKeyError(f"{where} holds {len(key)} bytes; an ACK key is {MIN_KEY_BYTES}..{MAX_KEY_BYTES} "
                          f"(keygen makes {KEY_BYTES})")
    return key


def load_ack_key(ack_key_file: Path | None, ack_key_credential: str | None, base_dir: Path | None = None,
                 environ: dict[str, str] | None = None) -> bytes | None:
    """The key as configured (None when neither source is configured); raises AckKeyError."""
    if ack_key_file is not None and not ack_key_file.is_absolute() and base_dir is not None:
        ack_key_file = base_dir / ack_key_file
    try:
        path = locate(WHAT, ack_key_file, ack_key_credential, environ)
        if path is None:
            return None
        check_readable(WHAT, path)
        data = path.read_bytes()
    except CredentialError as exc:
        raise AckKeyError(str(exc)) from None
    except OSError as exc:
        raise AckKeyError(f"{WHAT} file {path} cannot be read: {exc.strerror or exc}") from None
    return parse_key(data, f"{WHAT} file {path}")


def ack_key_for_daemon(section: SatelliteSection, base_dir: Path) -> bytes | None:
    """Load the key at start; a broken one is one error line, and the satellite links then run without
    it: every ACK is refused and records stay owed (sent again after ack_timeout, or by a primary)."""
    try:
        return load_ack_key(section.ack_key_file, section.ack_key_credential, base_dir)
    except AckKeyError as exc:
        log.error("%s; platform ACKs will be refused and satellite records resent until this is fixed", exc)
        return None


# --------------------------------------------------------------------------- fieldgate ack


def add_subcommands(sub: Any) -> None:
    """Add ``ack`` (keygen, make) to the ``fieldgate`` parser's subparsers."""
    ack = sub.add_parser("ack", help="satellite ACKs, platform side: keygen, make (docs/satellite.md 1.4)")
    actions = ack.add_subparsers(dest="ack_action", required=True)

    keygen = actions.add_parser("keygen", help="make a gateway's ACK key file (0600, never overwritten)")
    keygen.add_argument("--out", required=True, help="the key file to create")
    keygen.set_defaults(handler=_keygen)

    make = actions.add_parser("make", help="make an authenticated compact ACK")
    make.add_argument("--ack-key-file", required=True, help="the gateway's ACK key file (from keygen)")
    make.add_argument("--gateway-number", type=int, required=True, help="satellite.gateway_number of the gateway")
    make.add_argument("--seqs", required=True, help="the journal seqs received, e.g. 17,20-25")
    make.add_argument("--time", type=int, help="epoch seconds (default now)")
    make.add_argument("--out", help="write the raw bytes here instead of hex on stdout")
    make.set_defaults(handler=_make)


def _keygen(args: argparse.Namespace) -> int:
    text = base64.b64encode(secrets.token_bytes(KEY_BYTES)) + b"\n"
    try:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        print(f"cannot create {args.out}: {exc.strerror}", file=sys.stderr)
        return 1
    with os.fdopen(fd, "wb") as handle:
        handle.write(text)
    print(f"ACK key: {args.out}. The platform keeps a copy for this gateway alone; on the gateway it is a "
          f"systemd credential (satellite.ack_key_credential) or a root-only file (satellite.ack_key_file).")
    return 0


def parse_ranges(text: str) -> list[tuple[int, int]]:
    """``17,20-25`` -> [(17, 17), (20, 25)], sorted and merged."""
    ranges: list[tuple[int, int]] = []
    for part in text.replace(" ", "").split(","):
        lo_text, _, hi_text = part.partition("-")
        lo = int(lo_text)
        hi = int(hi_text) if hi_text else lo
        if lo < 0 or hi < lo:
            raise ValueError(f"bad seq range {part!r}")
        ranges.append((lo, hi))
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return merged


def _make(args: argparse.Namespace) -> int:
    try:
        key = load_ack_key(Path(args.ack_key_file), None)
        assert key is not None  # a file was named
        stamp = args.time if args.time is not None else int(time.time())
        from gateway import compact  # the compact codec: only where a satellite message is made or read

        data = compact.encode_ack(parse_ranges(args.seqs), gateway=args.gateway_number, time=stamp, key=key)
    except (AckKeyError, ValueError) as exc:  # CompactEncodeError is a ValueError
        print(f"ack: {exc}", file=sys.stderr)
        return 1
    if args.out:
        Path(args.out).write_bytes(data)
    else:
        print(data.hex())
    return 0
