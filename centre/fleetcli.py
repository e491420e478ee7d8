"""``fieldgate fleet``: argparse only; centre/fleet.py (MQTT, signing) loads when it runs."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from centre.fleet import FleetLink


def add_subcommands(sub: Any) -> None:
    fleet = sub.add_parser("fleet", help="roll a signed configuration out to gateways; list who runs what")
    commands = fleet.add_subparsers(dest="fleet_command", required=True)
    push_cmd = commands.add_parser("push", help="sign and send site files, wave by wave, and follow them")
    push_cmd.add_argument("--broker", default="127.0.0.1:1883", help="host:port")
    push_cmd.add_argument("--key", required=True, help="issuer private key (fieldgate command keygen)")
    push_cmd.add_argument("--key-id", required=True)
    push_cmd.add_argument("--site", action="append", required=True, metavar="GW=FILE",
                          help="a gateway and its new site file (repeat)")
    push_cmd.add_argument("--signatures", action="append", default=[], metavar="GW=FILE",
                          help="JSON list of operator signatures for that gateway's file (fleet sign-config)")
    push_cmd.add_argument("--first", type=int, default=0, help="gateways in the first wave (0: all at once)")
    push_cmd.add_argument("--label", help="version label the gateways report")
    push_cmd.add_argument("--window", type=float, default=60.0, help="health window, seconds")
    push_cmd.add_argument("--max-wait", type=float, default=600.0, help="longest wait for a safe moment, seconds")
    push_cmd.set_defaults(handler=_push)
    sign_cmd = commands.add_parser("sign-config", help="an operator's signature over a site file for one gateway")
    sign_cmd.add_argument("--key", required=True, help="operator private key (fieldgate alert keygen)")
    sign_cmd.add_argument("--operator", required=True)
    sign_cmd.add_argument("--gateway", required=True)
    sign_cmd.add_argument("--site", required=True)
    sign_cmd.set_defaults(handler=_sign_config)
    summary = commands.add_parser("summary", help="who runs what (from the health messages)")
    summary.add_argument("--broker", default="127.0.0.1:1883")
    summary.add_argument("--wait", type=float, default=10.0, help="seconds to listen")
    summary.set_defaults(handler=_summary)


def _private(path: str) -> Ed25519PrivateKey:
    from gateway.commands.cli import _private_key

    return _private_key(path)


def _link(broker: str) -> FleetLink:
    from centre.fleet import FleetLink

    host, _, port = broker.rpartition(":")
    return FleetLink(host or "127.0.0.1", int(port))


def _pairs(items: list[str]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for item in items:
        gw, sep, file = item.partition("=")
        if not sep:
            raise ValueError(f"'{item}': expected GW=FILE")
        out[gw] = Path(file)
    return out


def _push(args: argparse.Namespace) -> int:
    from centre.fleet import Plan, Target, push
    from gateway.alerts.signing import OperatorSignature

    try:
        sites = _pairs(args.site)
        signatures = {gw: [OperatorSignature.model_validate(s) for s in json.loads(p.read_text())]
                      for gw, p in _pairs(args.signatures).items()}
        targets = [Target(gw, path.read_bytes(), signatures.get(gw, [])) for gw, path in sites.items()]
        plan = Plan(_private(args.key), args.key_id, args.label, args.window, args.max_wait, args.first)
        link = _link(args.broker)
    except (OSError, ValueError) as exc:
        print(f"fleet push: {exc}", file=sys.stderr)
        return 2
    try:
        done = push(link, plan, targets)
    finally:
        link.close()
    print(json.dumps([t.to_json() for t in done], indent=1))
    return 0 if all(t.outcome == "committed" for t in done) else 1


def _sign_config(args: argparse.Namespace) -> int:
    from centre.fleet import sign_config

    body = Path(args.site).read_bytes()
    print(json.dumps(sign_config(_private(args.key), args.operator, args.gateway, body).model_dump()))
    return 0


def _summary(args: argparse.Namespace) -> int:
    from centre.fleet import summary_rows

    link = _link(args.broker)
    try:
        time.sleep(args.wait)
        rows = summary_rows(link)
    finally:
        link.close()
    print(json.dumps(rows, indent=1))
    return 0
