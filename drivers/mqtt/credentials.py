"""Where the link's secrets come from: plain files or systemd credentials.

A credential name is looked up in ``$CREDENTIALS_DIRECTORY`` (set by systemd for
``LoadCredential=``). Every problem is reported as one sentence naming the file, so a
missing or unreadable key is a configuration error the technician can act on, not a
traceback in a reconnect loop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from drivers.mqtt.config import MqttLinkConfig

CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"
# A secret file larger than this is certainly the wrong file (a CA bundle is ~200 kB at most).
MAX_SECRET_BYTES = 1 << 20


class CredentialError(Exception):
    """A secret named in the config cannot be found or read. The message is the whole story."""


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca: Path | None
    cert: Path | None
    key: Path | None


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


def tls_files(config: MqttLinkConfig, environ: dict[str, str] | None = None) -> TlsFiles | None:
    """Resolve and check the TLS files; raises CredentialError naming the first bad one."""
    tls = config.tls
    if tls is None:
        return None
    files = TlsFiles(
        ca=locate("CA certificate", tls.ca_file, tls.ca_credential, environ),
        cert=locate("client certificate", tls.cert_file, tls.cert_credential, environ),
        key=locate("client key", tls.key_file, tls.key_credential, environ),
    )
    for what, path in (("CA certificate", files.ca), ("client certificate", files.cert), ("client key", files.key)):
        if path is not None:
            check_readable(what, path)
    return files


def login(config: MqttLinkConfig, environ: dict[str, str] | None = None) -> tuple[str | None, str | None]:
    """(username, password) as configured; raises CredentialError for an unreadable file."""
    username = config.username
    user_path = locate("username", config.username_file, config.username_credential, environ)
    if user_path is not None:
        username = read_secret("username", user_path)
    password = None
    password_path = locate("password", config.password_file, config.password_credential, environ)
    if password_path is not None:
        password = read_secret("password", password_path)
    return username, password


def problems(config: MqttLinkConfig, environ: dict[str, str] | None = None) -> list[str]:
    """Every secret problem of one link, for `fieldgate validate` and the link's start-up check."""
    found = []
    for check in (tls_files, login):
        try:
            check(config, environ)
        except CredentialError as exc:
            found.append(str(exc))
    return found
