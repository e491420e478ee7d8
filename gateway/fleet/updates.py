"""A software update on the gateway: bring the bundle, check it, install it beside the running release.

1. ``update_chunk`` keeps each piece as its own file under ``<state_dir>/fleet/update/chunks/<sha256>/``,
   so an interrupted transfer resumes: every reply lists the indices still missing. One bundle is in
   transit at a time; the whole is bounded by ``fleet.max_update_bytes`` and by the disk's free space.
   A technician may instead drop the bundle in ``<state_dir>/fleet/inbox/``.
2. The bundle is checked (gateway/fleet/bundle.py: update key, sha256 of every file, version policy).
3. The release is installed into the other slot of the A/B root (``a`` or ``b``, never the one ``current``
   points at) with ``pip install --no-index`` from the bundle's wheelhouse, and the *new* interpreter must
   pass ``fieldgate validate`` on the running site file before anything is switched.

Switching, the health window and going back belong to the roll-out (gateway/fleet/rollout.py) and the
boot check (gateway/fleet/boot.py). Everything here is blocking and runs in a thread.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.commands.target import CommandFailed
from gateway.fleet import boot, bundle
from gateway.fleet.store import RolloutStore
from gateway.fsutil import ensure_dir, write_atomic

CHUNK_BYTES = 22 * 1024  # of the bundle per update_chunk: the signed envelope fits the MQTT link's 32 KiB
MAX_CHUNKS = 100_000
FREE_MARGIN_BYTES = 64 * 1024 * 1024  # left free for the journal, whatever an update needs
MAX_INBOX_BUNDLES = 4
STEP_TIMEOUT_S = 900.0  # one pip install on a slow card
RESTART_EXIT = 75  # the daemon's exit code after a switch: systemd restarts it (Restart=on-failure)
_SHOWN_MISSING = 64


@dataclass(frozen=True)
class Transfer:
    sha256: str
    total: int
    missing: list[int]

    def reply(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "total": self.total, "received": self.total - len(self.missing),
                "missing": self.missing[:_SHOWN_MISSING], "missing_count": len(self.missing)}


def receive_chunk(store: RolloutStore, sha256: str, index: int, total: int, data_b64: str,
                  max_bytes: int) -> Transfer:
    if not 0 <= index < total <= min(MAX_CHUNKS, -(-max_bytes // CHUNK_BYTES)):
        raise CommandFailed(f"chunk {index} of {total}: index must be below total, and total x {CHUNK_BYTES} "
                            f"bytes at most fleet.max_update_bytes ({max_bytes})")
    try:
        data = base64.b64decode(data_b64, validate=True)
    except (binascii.Error, ValueError):
        raise CommandFailed("chunk data is not base64") from None
    if len(data) > CHUNK_BYTES:
        raise CommandFailed(f"a chunk holds at most {CHUNK_BYTES} bytes, this one {len(data)}")
    chunks = store.updates / "chunks"
    folder = chunks / sha256
    if chunks.is_dir():
        for other in chunks.iterdir():
            if other.name != sha256:  # one bundle in transit at a time: what is kept stays bounded
                shutil.rmtree(other, ignore_errors=True)
    marker = folder / f"total-{total}"
    if folder.is_dir() and not marker.exists():
        shutil.rmtree(folder, ignore_errors=True)  # announced with another chunking: start over
    ensure_dir(folder)
    marker.touch()
    have = _received(folder)
    if index not in have:
        needed = (total - len(have)) * CHUNK_BYTES * 2 + FREE_MARGIN_BYTES  # chunks, then the unpacked wheels
        free = shutil.disk_usage(folder).free
        if free < needed:
            raise CommandFailed(f"not enough free disk for the bundle: {free // 2**20} MiB free, "
                                f"{needed // 2**20} MiB needed")
        write_atomic(folder / f"{index:06d}", data, durable=False)  # the assembled bundle is checked by sha256
        have.add(index)
    return Transfer(sha256, total, [i for i in range(total) if i not in have])


def _received(folder: Path) -> set[int]:
    return {int(entry.name) for entry in os.scandir(folder) if entry.name.isdigit()}


def assemble(store: RolloutStore, transfer: Transfer) -> Path:
    """The complete bundle, as ``update/bundle-<sha256>.tar``; a wrong digest drops the chunks."""
    folder = store.updates / "chunks" / transfer.sha256
    target = store.updates / f"bundle-{transfer.sha256}.tar"
    for old in store.updates.glob("bundle-*.tar"):
        old.unlink()
    digest = hashlib.sha256()
    with target.open("xb") as out:
        for index in range(transfer.total):
            piece = (folder / f"{index:06d}").read_bytes()
            digest.update(piece)
            out.write(piece)
    shutil.rmtree(folder, ignore_errors=True)
    if digest.hexdigest() != transfer.sha256:
        target.unlink()
        raise CommandFailed("the assembled bundle does not match its sha256; send it again")
    return target


def find_bundle(store: RolloutStore, sha256: str) -> Path | None:
    """The bundle ``sha256``: sent in chunks, or dropped in the inbox by a technician."""
    sent = store.updates / f"bundle-{sha256}.tar"
    if sent.is_file():
        return sent
    if not store.inbox.is_dir():
        return None
    dropped = sorted(store.inbox.glob("*.tar"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in dropped[:MAX_INBOX_BUNDLES]:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        if digest.hexdigest() == sha256:
            return path
    return None


def check(store: RolloutStore, path: Path, sha256: str, keys: Mapping[str, str], running_version: str,
          max_bytes: int) -> bundle.Manifest:
    """Verify the bundle and unpack its wheelhouse into ``update/ready/``; raises bundle.UpdateRefused."""
    if path.stat().st_size > max_bytes:
        raise bundle.UpdateRefused(f"the bundle is larger than fleet.max_update_bytes ({max_bytes})")
    ready = store.updates / "ready"
    shutil.rmtree(ready, ignore_errors=True)
    return bundle.verify(path, keys, running_version, ready, max_bytes)


def wheelhouse(store: RolloutStore) -> Path:
    return store.updates / "ready" / "wheels"


def slots(root: Path) -> tuple[str, str]:
    """(the slot running now, the one to install into)."""
    running = boot.current_slot(root)
    if running is None:
        raise bundle.UpdateRefused(f"{root / boot.CURRENT} is not a symbolic link: this box has no A/B install "
                                   "(deploy/raspberrypi/install.sh makes one)")
    return running, "b" if running == "a" else "a"


def install(root: Path, slot: str, wheels: Path, manifest: bundle.Manifest, config_path: Path) -> None:
    """A fresh venv in ``root/slot`` from the wheelhouse alone; then the new release must read the site file."""
    if slot == boot.current_slot(root):
        raise bundle.UpdateRefused(f"slot {slot} is running")
    target = root / slot
    shutil.rmtree(target, ignore_errors=True)
    # pip from the bundle when it carries one (run from its wheel, as get-pip does): the Debian package's
    # venv has no pip and the box may lack python3-venv's ensurepip; else the interpreter's ensurepip.
    carried = sorted(name for name in manifest.files if name.startswith("pip-"))
    _run([sys.executable, "-m", "venv", *(["--without-pip"] if carried else []), str(target)],
         "creating the virtualenv")
    _carry_links(Path(sysconfig.get_paths()["purelib"]), target)
    python = target / "bin" / "python"
    pip = [str(python), str(wheels / carried[-1] / "pip")] if carried else [str(python), "-m", "pip"]
    _run([*pip, "install", "--no-index", "--no-cache-dir", "--disable-pip-version-check",
          "--find-links", str(wheels), *sorted(str(wheels / name) for name in manifest.files)], "pip install")
    if sys.flags.optimize:  # pip wrote level-0 byte code; the service runs at its own level (fieldgate.service)
        _run([str(python), *service_byte_code_options(), "-m", "compileall", "-q", "-j", "0",
              "-o", str(sys.flags.optimize), str(_site(target))], "byte-compiling the release")
    version = _run([str(python), "-c", "from importlib import metadata; print(metadata.version('fieldgate'))"],
                   "reading the installed version").strip()
    if version != manifest.version:
        raise bundle.UpdateRefused(f"the installed release says version {version}, the manifest {manifest.version}")
    _run([str(target / "bin" / "fieldgate"), "validate", str(config_path)],
         f"the new release's `fieldgate validate {config_path}`")


def service_byte_code_options() -> list[str]:
    """The interpreter options that write byte code as the running service reads it: without column tables when
    it runs so (PYTHONNODEBUGRANGES=1 in fieldgate.service; sys.flags does not say it, a compiled probe does)."""
    with_columns = next(iter(compile("0", "<probe>", "eval").co_positions()))[2] is not None
    return [] if with_columns else ["-X", "no_debug_ranges"]


def _carry_links(running_site: Path, target: Path) -> None:
    """What the installer linked into the running venv from outside (python3-systemd from Debian, a
    ``fieldgate-*.pth``) is linked into the new one too: pip does not know about it."""
    site = _site(target)
    try:
        entries = list(running_site.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.is_symlink() and not entry.resolve().is_relative_to(Path(sys.prefix).resolve()):
            os.symlink(os.readlink(entry), site / entry.name)
        elif entry.name.startswith("fieldgate-") and entry.suffix == ".pth" and entry.is_file():
            shutil.copyfile(entry, site / entry.name)


def _site(venv: Path) -> Path:
    return Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])


def _run(argv: list[str], what: str) -> str:
    # The new release must not see the running one's import path; pip and the checks run as a technician's
    # commands would, not at the service's optimisation level (which drops pip's and our asserts).
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONOPTIMIZE", "PYTHONNODEBUGRANGES")}
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=STEP_TIMEOUT_S, env=env, check=False,
                              cwd="/")  # nothing of the working directory on the new release's path
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise bundle.UpdateRefused(f"{what} failed: {exc}"[:400]) from None
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-4:]
        raise bundle.UpdateRefused(f"{what} failed (exit {done.returncode}): {' | '.join(tail)}"[:600])
    return done.stdout
