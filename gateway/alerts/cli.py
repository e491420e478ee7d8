"""`fieldgate alert ...`: keys, drafting, two-person signing, verification, CAP export, audit check.

A request file is JSON ``{"alert": {...}, "signatures": [...]}``. Signing shows status, area and
event in a colour per status, and needs ``--confirm STATUS`` typed to match (no shared prompt for
drill and live: the Hawaii lesson).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from gateway.alerts.audit import verify_chain
from gateway.alerts.config import BroadcastConfig
from gateway.alerts.model import Alert, Status
from gateway.alerts.signing import Keyring, OperatorSignature, public_key_text, sign
from gateway.fsutil import SECRET, create_exclusive
from gateway.i18n import _
from gateway.shared import parse_duration

if TYPE_CHECKING:
    pass

_COLOUR = {Status.ACTUAL: "\033[1;41;97m", Status.EXERCISE: "\033[1;43;30m", Status.TEST: "\033[1;46;30m"}


def _banner(alert: Alert) -> str:
    colour = _COLOUR.get(alert.status, "") if sys.stdout.isatty() else ""
    reset = "\033[0m" if colour else ""
    return (f"{colour} {alert.status.value.upper()} {reset} {alert.msg_type.value} '{alert.event}' "
            f"areas={','.join(alert.areas) or '-'} clips={','.join(alert.resources) or '-'}\n"
            + _("digest {digest}").format(digest=alert.digest()))


def _load_request(path: Path) -> tuple[Alert, list[OperatorSignature]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return Alert.model_validate(data["alert"]), [OperatorSignature.model_validate(s) for s in data["signatures"]]


def _save_request(path: Path, alert: Alert, signatures: list[OperatorSignature]) -> None:
    body = {"alert": alert.model_dump(mode="json"), "signatures": [s.model_dump() for s in signatures]}
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(body, ensure_ascii=False, indent=2), encoding="utf-8")
    tmp.replace(path)


def _broadcast_config(path: Path) -> BroadcastConfig:
    from gateway.config.yamlmarks import ConfigSyntaxError, load_marked

    try:
        data = load_marked(path).data or {}
    except ConfigSyntaxError as exc:
        raise ValueError(str(exc)) from None
    return BroadcastConfig.model_validate(data.get("broadcast") or {})


def _keygen(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    out = Path(args.out) / f"{args.operator}.key"
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        with create_exclusive(out, SECRET) as handle:
            handle.write(pem)
    except OSError as exc:
        print(f"cannot create {out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(_("private key: {path} (keep it on the operator's token, never on the gateway)").format(path=out))
    print(_("add to broadcast.operators:") + f"\n  {args.operator}: {public_key_text(key)}")
    return 0


def _draft(args: argparse.Namespace) -> int:
    sent = dt.datetime.now(dt.UTC)
    alert = Alert(
        identifier=args.identifier or f"{args.sender}.{int(time.time())}", sender=args.sender, sent=sent,
        status=Status(args.status), event=args.event, areas=tuple(args.zone), resources=tuple(args.clip),
        tts=args.tts, expires=sent + dt.timedelta(seconds=args.expires), source="manual",
    )
    _save_request(Path(args.out), alert, [])
    print(_banner(alert))
    return 0


def _sign(args: argparse.Namespace) -> int:
    path = Path(args.request)
    alert, signatures = _load_request(path)
    print(_banner(alert))
    if args.confirm != alert.status.value:
        print(_("refused: type --confirm {status} to sign this {status} alert").format(status=alert.status.value),
              file=sys.stderr)
        return 2
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = serialization.load_pem_private_key(Path(args.key).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        print(_("refused: not an Ed25519 key"), file=sys.stderr)
        return 2
    signatures = [s for s in signatures if s.operator != args.operator]
    signatures.append(sign(alert, args.operator, key, time.time()))
    _save_request(path, alert, signatures)
    print(_("signed by {operator}; {count} signature(s) on the request").format(
        operator=args.operator, count=len(signatures)))
    return 0


def _verify(args: argparse.Namespace) -> int:
    alert, signatures = _load_request(Path(args.request))
    config = _broadcast_config(Path(args.config))
    good, problems = Keyring(config.operators).verified_signers(
        alert, signatures, config.two_person_window, time.time())
    required = 2 if alert.status is Status.ACTUAL else 1
    print(_banner(alert))
    print(_("valid signers: {names}; required {required}").format(names=", ".join(good) or _("none"),
                                                                 required=required))
    for problem in problems:
        print(f"  {problem}")
    return 0 if len(good) >= required else 1


def _cap(args: argparse.Namespace) -> int:
    alert, _signatures = _load_request(Path(args.request))
    print(alert.to_cap_xml())
    return 0


def _verify_audit(args: argparse.Namespace) -> int:
    check = verify_chain(Path(args.path))
    print((_("ok: {count} records, last hash {hash}") if check.ok else _("BROKEN: {count} records, last hash {hash}"))
          .format(count=check.records, hash=check.last_hash) + (f"; {check.error}" if check.error else ""))
    return 0 if check.ok else 1


def _submit(args: argparse.Namespace) -> int:
    from gateway.alerts.inbox import submit

    inbox = Path(args.inbox) if args.inbox else Path(_broadcast_config(Path(args.config)).inbox_dir)
    alert, signatures = _load_request(Path(args.request))
    print(_banner(alert))
    target = submit(Path(args.request), inbox)
    print(_("submitted as {target} with {count} signature(s); the gateway's answer will be in {done} or {refused} "
            "(<time>-{name}.result.json)").format(target=target, count=len(signatures), done=inbox / "done",
                                                  refused=inbox / "refused", name=target.name[:-5]))
    return 0


def _guarded(handler: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(handler(args))
        except (OSError, ValueError, KeyError, TypeError) as exc:  # ValidationError is a ValueError
            kind = "invalid" if isinstance(exc, ValidationError) else "error"
            print(f"{kind}: {exc}", file=sys.stderr)
            return 2
    return run


def add_subcommands(subparsers: Any) -> None:
    """Adds ``alert keygen|draft|sign|submit|verify|cap|verify-audit``; each leaf sets ``handler(args) -> int``."""
    alert = subparsers.add_parser("alert", help="manual alerts: draft, two-person signing, CAP export")
    sub = alert.add_subparsers(dest="alert_command", required=True)

    p = sub.add_parser("keygen", help="create an operator's Ed25519 key")
    p.add_argument("--operator", required=True)
    p.add_argument("--out", default=".")
    p.set_defaults(handler=_guarded(_keygen))

    p = sub.add_parser("draft", help="write an unsigned alert request")
    p.add_argument("--status", required=True, choices=["Actual", "Exercise", "Test"])
    p.add_argument("--event", required=True)
    p.add_argument("--zone", action="append", required=True)
    p.add_argument("--clip", action="append", default=[])
    p.add_argument("--tts")
    p.add_argument("--sender", default="operator")
    p.add_argument("--identifier")
    p.add_argument("--expires", type=parse_duration, default=3600.0, help="e.g. 30m or 1h (default 1h)")
    p.add_argument("--out", required=True)
    p.set_defaults(handler=_guarded(_draft))

    p = sub.add_parser("sign", help="add this operator's signature to a request")
    p.add_argument("request")
    p.add_argument("--operator", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--confirm", required=True, help="type the alert's status (Actual/Exercise/Test)")
    p.set_defaults(handler=_guarded(_sign))

    p = sub.add_parser("submit", help="put a signed request into the running gateway's inbox (atomically)")
    p.add_argument("request")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--inbox", help="the inbox directory (broadcast.inbox_dir)")
    where.add_argument("--config", help="site config: use its broadcast.inbox_dir")
    p.set_defaults(handler=_guarded(_submit))

    p = sub.add_parser("verify", help="check a request's signatures against the site's operators")
    p.add_argument("request")
    p.add_argument("config")
    p.set_defaults(handler=_guarded(_verify))

    p = sub.add_parser("cap", help="print a request's alert as CAP 1.2 XML")
    p.add_argument("request")
    p.set_defaults(handler=_guarded(_cap))

    p = sub.add_parser("verify-audit", help="verify the broadcast audit hash chain")
    p.add_argument("path")
    p.set_defaults(handler=_guarded(_verify_audit))
