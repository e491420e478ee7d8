"""`fieldgate status`: the running daemon's summary in a terminal; `fieldgate status passwd`."""

from __future__ import annotations

import argparse
import getpass
import json
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from gateway.i18n import _
from gateway.shared import parse_duration
from gateway.status import auth
from gateway.status.config import StatusConfig, split_listen
from gateway.status.summary import render_summary
from gateway.status.view import overdue_loops

MAX_RESPONSE_BYTES = 16 * 1024 * 1024


def add_subcommands(subparsers: Any) -> None:
    """Adds ``status [--url URL] [--config SITE] [--json]`` and ``status passwd USER --file F``."""
    status = subparsers.add_parser("status", help="show the running daemon's status (from its status server)")
    status.add_argument("--url", help="status server base URL (default: from --config, else http://127.0.0.1:8080)")
    status.add_argument("--config", help="site YAML whose status.listen (and status.tls) to use")
    status.add_argument("--cafile", type=Path,
                        help="trust only this certificate (PEM) for https; default with --config and status.tls: "
                        "status.tls.cert_file, the page's own certificate")
    status.add_argument("--json", action="store_true", help="print /api/status as JSON")
    status.add_argument("--timeout", type=parse_duration, default=5.0, help="how long to wait for the daemon (5s)")
    status.set_defaults(handler=cmd_status)
    sub = status.add_subparsers(dest="status_command")
    passwd = sub.add_parser("passwd", help="add or change a status-page user in a users file")
    passwd.add_argument("user")
    passwd.add_argument("--file", required=True, type=Path, help="the users file (status.users_file)")
    passwd.add_argument("--scheme", choices=["scrypt", "pbkdf2"], default="scrypt")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from stdin (scripts)")
    passwd.set_defaults(handler=cmd_passwd)


def base_url(url: str | None, config_path: str | None) -> str:
    if url:
        return url.rstrip("/")
    if config_path:
        section = _status_section(config_path)
        host, port = split_listen(section.listen)
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1" if host != "::" else "::1"
        scheme = "https" if section.tls is not None else "http"
        return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"
    return "http://127.0.0.1:8080"


def trusted_certificate(cafile: Path | None, config_path: str | None) -> Path | None:
    """The certificate to trust for https: --cafile, else the page's own (status.tls.cert_file)."""
    if cafile is not None or not config_path:
        return cafile
    tls = _status_section(config_path).tls
    return tls.cert_file if tls is not None else None


def _status_section(config_path: str) -> StatusConfig:
    from gateway.config import load_site

    site = load_site(config_path)
    section = getattr(site, "status", None)
    return section if isinstance(section, StatusConfig) else StatusConfig()


def fetch_status(base: str, timeout: float, cafile: Path | None = None) -> dict[str, Any]:
    """GET /api/status. With ``cafile``, https trusts that certificate alone (not the system CAs)."""
    context = ssl.create_default_context(cafile=str(cafile)) if cafile is not None else None
    request = urllib.request.Request(base + "/api/status", headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
        data = response.read(MAX_RESPONSE_BYTES + 1)
    if len(data) > MAX_RESPONSE_BYTES:
        raise ValueError("response larger than 16 MiB")
    body = json.loads(data)
    if not isinstance(body, dict):
        raise ValueError("/api/status did not return a JSON object")
    return body


def cmd_status(args: argparse.Namespace) -> int:
    """Exit 0 when healthy, 1 when the daemon cannot be reached, 2 when a loop is overdue."""
    from gateway.config import ConfigError

    try:
        base = base_url(args.url, args.config)
        cafile = trusted_certificate(args.cafile, args.config)
    except ConfigError as exc:
        print("\n".join(exc.lines), file=sys.stderr)
        return 1
    try:
        snapshot = fetch_status(base, args.timeout, cafile)
    except (OSError, urllib.error.URLError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        print(_("fieldgate status: no answer from {url}: {reason}").format(url=base, reason=reason), file=sys.stderr)
        return 1
    snapshot.pop("session", None)
    print(json.dumps(snapshot, indent=2) if args.json else render_summary(snapshot))
    return 2 if overdue_loops(snapshot) else 0


def cmd_passwd(args: argparse.Namespace) -> int:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"new password for {args.user}: ")
        if getpass.getpass("again: ") != password:
            print("passwords differ; nothing changed", file=sys.stderr)
            return 1
    if len(password) < 8:
        print("a password needs at least 8 characters; nothing changed", file=sys.stderr)
        return 1
    try:
        auth.set_password(args.file, args.user, password, args.scheme)
    except (ValueError, OSError) as exc:
        print(f"fieldgate status passwd: {exc}", file=sys.stderr)
        return 1
    print(f"{args.file}: password for {args.user} set ({args.scheme})")
    return 0
