"""Secrets named in the config: plain files or systemd credentials.

A credential name is looked up in ``$CREDENTIALS_DIRECTORY`` (set by systemd for
``LoadCredential=``). Every problem is reported as one sentence naming the file, so a
missing or unreadable key is a configuration error the technician can act on, not a
traceback in a reconnect loop. Used by the core (the satellite ACK key) and by drivers
(the MQTT link's TLS material and login); imports nothing else from the core.
"""

from __future__ import annotations

import os
from pathlib import Path

CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"
# A secret file larger than this is certainly the wrong file (a CA bundle is ~200 kB at most).
MAX_SECRET_BYTES = 1 << 20


class CredentialError(Exception):
    """A secret named in the config cannot be found or read. The message is the whole story."""


def locate(what: str, path: Path | None, credential: str | None, environ: dict[str, str] | None = None) -> Path | None:
    """The file holding ``what`` (None when neither a path nor a credential is configured)."""
    if path is not None:
        return path
    if credential is None:
        return None
    env = os.environ if environ is None else environ
    directory = env.get(CREDENTIALS_ENV)
    if not directory:
        raise CredentialError(
            f"{what}: credential '{credential}' is configured but ${CREDENTIALS_ENV} is not set "
            f"(run under systemd with LoadCredential={credential}:…, or give a file path instead)"
        )
    return Path(directory) / credential


def check_readable(what: str, path: Path) -> None:
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            handle.read(1)
    except FileNotFoundError:
        raise CredentialError(f"{what} file {path} does not exist") from None
    except PermissionError:
        raise CredentialError(f"{what} file {path} is not readable by this user (uid {os.getuid()})") from None
    except IsADirectoryError:
        raise CredentialError(f"{what} file {path} is a directory") from None
    except OSError as exc:
        raise CredentialError(f"{what} file {path} cannot be read: {exc.strerror or exc}") from None
    if size == 0:
        raise CredentialError(f"{what} file {path} is empty")
    if size > MAX_SECRET_BYTES:
        raise CredentialError(f"{what} file {path} is {size} bytes; that is not a certificate, key or password")


def read_secret(what: str, path: Path) -> str:
    """A one-line secret (username, password): the file's text without surrounding whitespace."""
    check_readable(what, path)
    try:
        text = path.read_text(encoding="utf-8").strip()
    except UnicodeDecodeError:
        raise CredentialError(f"{what} file {path} is not UTF-8 text") from None
    if not text:
        raise CredentialError(f"{what} file {path} holds only whitespace")
    return text
