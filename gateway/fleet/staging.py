"""Receiving a site file in signed chunks, and deciding whether it may be applied on this gateway.

The file is validated with the loader `fieldgate validate` uses (``load_site_text``, which reports
``file:line:column``). Beyond validity, a roll-out may not change what it cannot safely change remotely:
the gateway's id, its state directory (the journal lives there) and who signs its software updates. A file
that changes the broadcast outputs or the interlock needs the operators' signatures as an Actual alert does
(two distinct operators of the *running* config, fresh within its ``two_person_window``), over
``config_signing_message(gateway id, sha256, signed_at)``.
"""

from __future__ import annotations

import base64
import binascii
import shutil
import time
from dataclasses import dataclass

from gateway.alerts.signing import Keyring, OperatorSignature, SignatureRefused, config_signing_message
from gateway.commands.target import CommandFailed
from gateway.config import ConfigError, SiteConfig
from gateway.config.loader import load_site_text
from gateway.fleet.store import MAX_CONFIG_BYTES, RolloutStore, sha256_hex
from gateway.fsutil import ensure_dir, write_atomic
from gateway.registry import relay_board_units

MAX_CHUNKS = 64
OPERATOR_SIGNATURES = 2  # as for a manual Actual alert (gateway/alerts/interlock.py required_signatures)


@dataclass(frozen=True)
class ChunkProgress:
    sha256: str
    received: int
    total: int

    @property
    def complete(self) -> bool:
        return self.received == self.total


def receive_chunk(store: RolloutStore, sha256: str, index: int, total: int, data_b64: str) -> ChunkProgress:
    """Keep one chunk of the file ``sha256``; only one file is in transit at a time (a new one drops the
    chunks of the last), so what is kept is bounded by MAX_CHUNKS x the chunk size."""
    if not 0 <= index < total <= MAX_CHUNKS:
        raise CommandFailed(f"chunk {index} of {total}: index must be below total, total at most {MAX_CHUNKS}")
    try:
        data = base64.b64decode(data_b64, validate=True)
    except (binascii.Error, ValueError):
        raise CommandFailed("chunk data is not base64") from None
    folder = store.chunks / sha256
    if store.chunks.is_dir():
        for other in store.chunks.iterdir():
            if other.name != sha256:
                shutil.rmtree(other, ignore_errors=True)
    ensure_dir(folder)
    existing = {p.name for p in folder.iterdir() if p.name.isdigit()}
    if existing and f"total-{total}" not in {p.name for p in folder.iterdir()}:
        shutil.rmtree(folder, ignore_errors=True)  # the same file announced with another chunking: start over
        ensure_dir(folder)
    (folder / f"total-{total}").touch()
    write_atomic(folder / str(index), data, durable=False)  # resumable; the staged file itself is durable
    received = sum(1 for p in folder.iterdir() if p.name.isdigit())
    return ChunkProgress(sha256, received, total)


def assemble(store: RolloutStore, progress: ChunkProgress) -> bytes:
    folder = store.chunks / progress.sha256
    data = b"".join((folder / str(i)).read_bytes() for i in range(progress.total))
    if len(data) > MAX_CONFIG_BYTES:
        raise CommandFailed(f"the file is {len(data)} bytes, more than {MAX_CONFIG_BYTES}")
    if sha256_hex(data) != progress.sha256:
        shutil.rmtree(folder, ignore_errors=True)
        raise CommandFailed("the assembled file does not match its sha256; send it again")
    store.write_file(store.staged_path, data)
    shutil.rmtree(folder, ignore_errors=True)
    return data


def validate(data: bytes, config_path: str) -> tuple[SiteConfig | None, list[str]]:
    """(config, []) or (None, problems as file:line:column), with the loader of `fieldgate validate`."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, [f"{config_path} (staged): not UTF-8 text ({exc.reason} at byte {exc.start})"]
    try:
        return load_site_text(text, f"{config_path} (staged)"), []
    except ConfigError as exc:
        return None, exc.lines
    except Exception as exc:  # a defect in the loader refuses the file; it never takes the daemon down
        return None, [f"{config_path} (staged): could not be loaded: {type(exc).__name__}: {str(exc)[:200]}"]


def changes_broadcast(running: SiteConfig, staged: SiteConfig) -> bool:
    """Does the new file change the broadcast outputs, the interlock, or a relay board they drive?"""
    if running.broadcast != staged.broadcast:
        return True
    return _relay_buses(running) != _relay_buses(staged)


def _relay_buses(config: SiteConfig) -> list[object]:
    names = {bus for bus, _unit in relay_board_units(config.broadcast.outputs, config.buses)}
    return [bus for bus in config.buses if bus.name in names]


def refusal(running: SiteConfig, staged: SiteConfig, sha256: str, signatures: list[OperatorSignature],
            now: float | None = None) -> str | None:
    """Why this file may not be applied here, or None."""
    if staged.gateway.id != running.gateway.id:
        return f"the file is for gateway '{staged.gateway.id}', this is '{running.gateway.id}'"
    if staged.gateway.state_dir.resolve() != running.gateway.state_dir.resolve():
        return "the file moves gateway.state_dir (the journal lives there): that needs a technician"
    if (staged.fleet.update_keys, staged.fleet.ab_root) != (running.fleet.update_keys, running.fleet.ab_root):
        # Who may sign the software, and where it is installed: a technician's decision, never a remote one.
        return "the file changes fleet.update_keys or fleet.ab_root: that needs a technician"
    if changes_broadcast(running, staged):
        keyring = Keyring(running.broadcast.operators)
        try:
            keyring.require_message(
                lambda at: config_signing_message(running.gateway.id, sha256, at), signatures,
                OPERATOR_SIGNATURES, running.broadcast.two_person_window, time.time() if now is None else now)
        except SignatureRefused as exc:
            return f"the file changes the broadcast outputs or the interlock: {exc}"
    return None
