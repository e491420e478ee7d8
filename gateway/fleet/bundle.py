"""A software update bundle: a tar of a wheelhouse and a manifest signed with an update key (docs/fleet.md).

Layout (uncompressed tar; the wheels are compressed already)::

    manifest.json   {"format": 1, "version", "min_from", "downgrade", "python", "platform", "files": {name: sha256}}
    manifest.sig    {"key": <name in fleet.update_keys>,
                     "signature": <base64 Ed25519 over UPDATE_DOMAIN + manifest.json>}
    wheels/<name>   every wheel the manifest names, nothing else

The gateway trusts only the keys of its own site file (``fleet.update_keys``), distinct from the command
issuers and the operators. ``downgrade: true`` is part of what is signed, so a bundle that goes back a
version says so under the key. Nothing in a bundle is trusted before its signature and every file's
sha256 are checked, and a tar member that is not a plain file in the expected place is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import platform
import re
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, StrictBool, ValidationError

from gateway.alerts.signing import load_public_key
from gateway.fsutil import ensure_dir
from gateway.shared import StrictModel

if TYPE_CHECKING:  # cryptography is imported where a bundle is built or checked, not with the daemon
    import tarfile

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

UPDATE_DOMAIN = b"fieldgate-update-v1|"
MAX_MANIFEST_BYTES = 256 * 1024
MAX_FILES = 400
VERSION = r"^[0-9]+(\.[0-9]+){0,3}$"  # release numbers only: compared as tuples, no pre-release forms
_WHEEL = re.compile(r"^[A-Za-z0-9_.+-]{1,200}\.whl$")


class UpdateRefused(Exception):
    """The bundle may not be installed here; the message says why (it goes into the reply)."""


class Manifest(StrictModel):
    format: Literal[1] = 1
    version: str = Field(pattern=VERSION)
    min_from: str | None = Field(default=None, pattern=VERSION, description="oldest release that may update to it")
    downgrade: StrictBool = False
    python: str = Field(pattern=r"^3\.[0-9]{1,2}$", description="major.minor of the interpreter the wheels are for")
    platform: str = Field(pattern=r"^[a-z0-9_-]{1,40}$", description="'linux-aarch64', 'linux-x86_64' or 'any'")
    files: dict[str, str] = Field(min_length=1, max_length=MAX_FILES)


def version_tuple(text: str) -> tuple[int, ...]:
    if not re.match(VERSION, text):
        raise UpdateRefused(f"version '{text}' is not a release number like 1.2.3")
    return tuple(int(part) for part in text.split("."))


def this_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def this_platform() -> str:
    return f"{sys.platform}-{platform.machine()}".lower()


def signed_bytes(manifest_json: bytes) -> bytes:
    return UPDATE_DOMAIN + manifest_json


def build(wheels: list[Path], manifest: Manifest, key: Ed25519PrivateKey, key_name: str) -> bytes:
    """The bundle's bytes (the platform's side: `fieldgate fleet build-update`)."""
    body = manifest.model_dump_json().encode()
    sig = {"key": key_name, "signature": base64.b64encode(key.sign(signed_bytes(body))).decode()}
    import tarfile  # here, not at import: the daemon of a site that never updates does without it

    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("manifest.json", body), ("manifest.sig", json.dumps(sig).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for wheel in wheels:
            tar.add(wheel, arcname=f"wheels/{wheel.name}", recursive=False)
    return out.getvalue()


def manifest_for(wheels: list[Path], version: str, *, min_from: str | None = None, downgrade: bool = False,
                 python: str | None = None, platform_tag: str | None = None) -> Manifest:
    files = {w.name: hashlib.sha256(w.read_bytes()).hexdigest() for w in wheels}
    return Manifest(version=version, min_from=min_from, downgrade=downgrade, python=python or this_python(),
                    platform=platform_tag or this_platform(), files=files)


def verify(bundle: Path, keys: Mapping[str, str], running_version: str, dest: Path,
           max_bytes: int) -> Manifest:
    """Check the bundle and unpack its wheels into ``dest/wheels``; raises UpdateRefused with the reason."""
    import tarfile

    try:
        with tarfile.open(bundle, mode="r:") as tar:
            members = _members(tar, max_bytes)
            manifest = _signed_manifest(tar, members, keys)
            check_policy(manifest, running_version)
            _unpack(tar, members, manifest, dest)
    except tarfile.TarError as exc:
        raise UpdateRefused(f"not a readable tar: {exc}") from None
    return manifest


def check_policy(manifest: Manifest, running_version: str) -> None:
    """Version, interpreter and platform: may this release replace the running one here?"""
    if manifest.python != this_python():
        raise UpdateRefused(f"built for Python {manifest.python}, this box runs {this_python()}")
    if manifest.platform not in ("any", this_platform()):
        raise UpdateRefused(f"built for {manifest.platform}, this box is {this_platform()}")
    check_contents(manifest)
    new = version_tuple(manifest.version)
    try:
        running = version_tuple(running_version)
    except UpdateRefused:
        running = None  # a development build: any signed release may replace it
    if running is not None:
        if new == running:
            raise UpdateRefused(f"version {manifest.version} is the running version already")
        if new < running and not manifest.downgrade:
            raise UpdateRefused(f"version {manifest.version} is older than the running {running_version} and the "
                                "manifest does not say downgrade: true")
        if manifest.min_from is not None and running < version_tuple(manifest.min_from):
            raise UpdateRefused(f"this release updates from {manifest.min_from} or later; {running_version} runs here")


def check_contents(manifest: Manifest) -> None:
    """What the platform checks before it signs: the fieldgate wheel of that version is in it."""
    if not any(name.startswith(f"fieldgate-{manifest.version}-") for name in manifest.files):
        raise UpdateRefused(f"the bundle holds no fieldgate-{manifest.version} wheel")


def _members(tar: tarfile.TarFile, max_bytes: int) -> dict[str, tarfile.TarInfo]:
    members: dict[str, tarfile.TarInfo] = {}
    total = 0
    for info in tar:
        if len(members) > MAX_FILES + 2:
            raise UpdateRefused(f"more than {MAX_FILES} files in the bundle")
        name = info.name
        if not info.isfile():
            raise UpdateRefused(f"'{name[:100]}' is not a plain file")
        folder, _, base = name.rpartition("/")
        if name in members or not ((folder == "" and base in ("manifest.json", "manifest.sig"))
                                   or (folder == "wheels" and _WHEEL.match(base))):
            raise UpdateRefused(f"unexpected member '{name[:100]}' (only manifest.json, manifest.sig, wheels/*.whl)")
        total += info.size
        if total > max_bytes:
            raise UpdateRefused(f"the unpacked bundle is larger than {max_bytes} bytes")
        members[name] = info
    return members


def _read(tar: tarfile.TarFile, info: tarfile.TarInfo | None, limit: int) -> bytes:
    if info is None:
        raise UpdateRefused("the bundle has no manifest.json and manifest.sig")
    if info.size > limit:
        raise UpdateRefused(f"{info.name} is larger than {limit} bytes")
    handle = tar.extractfile(info)
    assert handle is not None  # a regular file (checked in _members)
    return handle.read(limit)


def _signed_manifest(tar: tarfile.TarFile, members: Mapping[str, tarfile.TarInfo],
                     keys: Mapping[str, str]) -> Manifest:
    body = _read(tar, members.get("manifest.json"), MAX_MANIFEST_BYTES)
    try:
        sig = json.loads(_read(tar, members.get("manifest.sig"), 4096))
        key_name, signature = str(sig["key"]), base64.b64decode(sig["signature"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise UpdateRefused("manifest.sig is not {\"key\", \"signature\"} with a base64 signature") from None
    if not keys:
        raise UpdateRefused("this site trusts no update key (fleet.update_keys is empty)")
    if key_name not in keys:
        raise UpdateRefused(f"signed with key '{key_name[:64]}', not one of fleet.update_keys")
    from cryptography.exceptions import InvalidSignature

    try:
        load_public_key(keys[key_name]).verify(signature, signed_bytes(body))
    except InvalidSignature:
        raise UpdateRefused(f"the manifest's signature does not verify with update key '{key_name}'") from None
    try:
        return Manifest.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UpdateRefused(f"manifest.json: {'.'.join(map(str, first['loc']))}: {first['msg']}"[:300]) from None


def _unpack(tar: tarfile.TarFile, members: Mapping[str, tarfile.TarInfo], manifest: Manifest, dest: Path) -> None:
    wheels = {name.removeprefix("wheels/"): info for name, info in members.items() if name.startswith("wheels/")}
    if set(wheels) != set(manifest.files):
        missing, extra = sorted(set(manifest.files) - set(wheels)), sorted(set(wheels) - set(manifest.files))
        raise UpdateRefused(f"the wheels differ from the manifest: missing {missing[:3]}, not listed {extra[:3]}")
    folder = dest / "wheels"
    shutil.rmtree(folder, ignore_errors=True)
    ensure_dir(folder)
    for name, info in wheels.items():
        handle = tar.extractfile(info)
        assert handle is not None
        digest = hashlib.sha256()
        with (folder / name).open("xb") as out:
            while block := handle.read(1 << 20):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != manifest.files[name]:
            shutil.rmtree(folder, ignore_errors=True)
            raise UpdateRefused(f"{name}: sha256 differs from the manifest")
