"""``fieldgate fleet``: argparse only; centre/fleet.py (MQTT, signing) loads when it runs."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.fleet.config import DEFAULT_UPDATE_TIMEOUT_S
from gateway.fleet.store import sha256_hex

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from centre.fleet import FleetLink


def add_subcommands(sub: Any) -> None:
    fleet = sub.add_parser("fleet", help="roll signed configurations and software updates out; list who runs what")
    commands = fleet.add_subparsers(dest="fleet_command", required=True)
    push_cmd = commands.add_parser("push", help="sign and send site files, wave by wave, and follow them")
    push_cmd.add_argument("--broker", default="127.0.0.1:1883", help="host:port")
    push_cmd.add_argument("--key", required=True, help="issuer private key (fieldgate command keygen)")
    push_cmd.add_argument("--key-id", required=True)
    push_cmd.add_argument("--site", action="append", default=[], metavar="GW=FILE",
                          help="a gateway and its new site file (repeat)")
    push_cmd.add_argument("--group", action="append", default=[],
                          help="a group of --groups; each gateway's file is --site-dir/<gateway>.yaml")
    push_cmd.add_argument("--groups", help="YAML file: group name -> list of gateway ids")
    push_cmd.add_argument("--site-dir", default=".", help="where a group's site files are")
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
    build = commands.add_parser("build-update", help="pack a wheelhouse into a bundle signed with an update key")
    build.add_argument("--wheelhouse", required=True, help="directory of wheels (make wheelhouse): fieldgate and deps")
    build.add_argument("--version", required=True, help="the fieldgate version in it (its wheel must be there)")
    build.add_argument("--min-from", help="oldest running version that may update to it")
    build.add_argument("--downgrade", action="store_true", help="allow installing over a newer version (signed)")
    build.add_argument("--python", help="major.minor of the box's Python (default: this one's)")
    build.add_argument("--platform", help="linux-aarch64, linux-x86_64 or any (default: this machine's)")
    build.add_argument("--key", required=True, help="update private key (fieldgate alert keygen makes one)")
    build.add_argument("--key-name", required=True, help="its name in the gateways' fleet.update_keys")
    build.add_argument("--out", required=True, help="the bundle file to write")
    build.set_defaults(handler=_build_update)
    update = commands.add_parser("push-update", help="send a signed update bundle and follow it to its outcome")
    update.add_argument("--broker", default="127.0.0.1:1883", help="host:port")
    update.add_argument("--key", required=True, help="issuer private key (fieldgate command keygen)")
    update.add_argument("--key-id", required=True)
    update.add_argument("--bundle", required=True, help="from fleet build-update")
    update.add_argument("--gateway", action="append", default=[], help="a gateway id (repeat)")
    update.add_argument("--group", action="append", default=[], help="a group of --groups (repeat)")
    update.add_argument("--groups", help="YAML file: group name -> list of gateway ids")
    update.add_argument("--first", type=int, default=0, help="gateways in the first wave (0: all at once)")
    update.add_argument("--window", type=float, default=120.0, help="health window, seconds")
    update.add_argument("--max-wait", type=float, default=600.0, help="longest wait for a safe moment, seconds")
    update.add_argument("--reply-timeout", type=float, default=30.0,
                        help="wait for the reply to one chunk, seconds (raise it for a link that stalls)")
    update.add_argument("--verify-timeout", type=float, default=DEFAULT_UPDATE_TIMEOUT_S,
                        help="the gateways' commands.update_timeout: how long the last chunk and update_apply "
                             "may take to verify the bundle, seconds")
    update.set_defaults(handler=_push_update)
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
        for gw in group_members(args.groups, args.group):
            sites.setdefault(gw, Path(args.site_dir) / f"{gw}.yaml")
        if not sites:
            raise ValueError("name gateways with --site GW=FILE or --group")
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


def group_members(groups_file: str | None, names: list[str]) -> list[str]:
    """The gateway ids of the named groups, in order, each once (a group file maps name -> [ids])."""
    if not names:
        return []
    if groups_file is None:
        raise ValueError("--group needs --groups FILE")
    import yaml

    groups = yaml.safe_load(Path(groups_file).read_text(encoding="utf-8"))
    if not isinstance(groups, dict):
        raise ValueError(f"{groups_file}: expected a mapping of group name -> list of gateway ids")
    members: list[str] = []
    for name in names:
        ids = groups.get(name)
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise ValueError(f"{groups_file}: no group '{name}' (a list of gateway ids)")
        members += [i for i in ids if i not in members]
    return members


def _build_update(args: argparse.Namespace) -> int:
    from gateway.fleet import bundle

    try:
        wheels = sorted(Path(args.wheelhouse).glob("*.whl"))
        manifest = bundle.manifest_for(wheels, args.version, min_from=args.min_from, downgrade=args.downgrade,
                                       python=args.python, platform_tag=args.platform)
        data = bundle.build(wheels, manifest, _private(args.key), args.key_name)
        bundle.check_contents(manifest)
        Path(args.out).write_bytes(data)
    except (OSError, ValueError, bundle.UpdateRefused) as exc:
        print(f"fleet build-update: {exc}", file=sys.stderr)
        return 2
    if not any(w.name.startswith("pip-") for w in wheels):
        print("fleet build-update: note: no pip-*.whl in the wheelhouse; the box must have python3-venv "
              "(ensurepip) to install it (docs/fleet.md)", file=sys.stderr)
    print(json.dumps({"bundle": args.out, "sha256": sha256_hex(data), "bytes": len(data),
                      "version": manifest.version, "files": len(manifest.files)}))
    return 0


def _push_update(args: argparse.Namespace) -> int:
    from centre.fleet import Plan, Target
    from centre.fleetupdate import push_update

    try:
        gateways = [*args.gateway, *(g for g in group_members(args.groups, args.group) if g not in args.gateway)]
        if not gateways:
            raise ValueError("name gateways with --gateway or --group")
        body = Path(args.bundle).read_bytes()
        plan = Plan(_private(args.key), args.key_id, None, args.window, args.max_wait, args.first,
                    reply_timeout=args.reply_timeout, verify_timeout=args.verify_timeout)
        link = _link(args.broker)
    except (OSError, ValueError) as exc:
        print(f"fleet push-update: {exc}", file=sys.stderr)
        return 2
    try:
        done = push_update(link, plan, [Target(gw, body) for gw in gateways])
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
