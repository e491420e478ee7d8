"""`fieldgate` command line: run, validate, schema (and the subcommands of the modules it names)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway import i18n
from gateway.config import ConfigError, SiteConfig, load_site

if TYPE_CHECKING:
    from gateway.compact import CompactMessage

Handler = Callable[[argparse.Namespace], int]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fieldgate", description="Field gateway for emergency telemetry")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--lang", choices=i18n.SETTINGS,
                        help="language of messages for people (en, zh-CN); default: the site file's "
                        "status.language, else LANGUAGE/LC_ALL/LANG")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the gateway on a site config")
    run.add_argument("config")
    run.set_defaults(handler=cmd_run)

    validate = sub.add_parser("validate", help="check a site config; exit 0 if usable, 1 if not")
    validate.add_argument("config")
    validate.add_argument("--explain", action="store_true", help="show the planned Modbus requests")
    validate.set_defaults(handler=cmd_validate)

    schema = sub.add_parser("schema", help="print the JSON Schema of the site config (for editors)")
    schema.set_defaults(handler=cmd_schema)

    decode = sub.add_parser("decode", help="decode a compact satellite message (platform side)")
    decode.add_argument("message", nargs="?", help="the message as hex; omit to read raw bytes from --file")
    decode.add_argument("--file", help="a file holding the raw message bytes")
    decode.add_argument("--config", help="site config whose satellite.aliases name the points")
    decode.add_argument("--ack-key-file", help="an ACK: check its MAC with this gateway's ACK key")
    decode.set_defaults(handler=cmd_decode)

    if _command_word(sys.argv[1:] if argv is None else argv) != "run":
        _add_tool_subcommands(sub)  # not for the daemon: ~1 MB resident of modules it never uses

    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    handler: Handler = args.handler
    config_arg = getattr(args, "config", None)
    token = i18n.use(i18n.choose(args.lang, i18n.site_setting(config_arg if isinstance(config_arg, str) else None)))
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130
    finally:
        i18n.reset(token)


def setup_logging(verbose: bool) -> None:
    from gateway import logsetup

    logsetup.setup_logging(logging.DEBUG if verbose else logging.INFO)
    quiet = logging.CRITICAL if not verbose else logging.DEBUG  # libraries that chatter at INFO
    logging.getLogger("pymodbus").setLevel(quiet)
    logging.getLogger("asyncio").setLevel(quiet)


def _load(path: str) -> SiteConfig | None:
    try:
        return load_site(path)
    except ConfigError as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return None


def cmd_validate(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return 1
    points = sum(len(d.points) for b in config.buses for d in b.devices)
    print(i18n._("{file}: ok — gateway {gateway}, {buses} buses, {points} points, {cameras} cameras, {rules} rules, "
                 "{outputs} broadcast outputs, {links} links").format(
        file=args.config, gateway=config.gateway.id, buses=len(config.buses), points=points,
        cameras=len(config.cameras), rules=len(config.rules.rules), outputs=len(config.broadcast.outputs),
        links=len(config.links)))
    for warning in _local_checks(config, args.config):
        print(i18n._("{file}: warning: {warning}").format(file=args.config, warning=warning))
    if args.explain:
        from gateway.registry import explain_bus

        for bus in config.buses:
            print("\n".join(explain_bus(bus)))
    return 0


def _local_checks(config: SiteConfig, path: str) -> list[str]:
    """Files the config names that this machine cannot read (model manifests, TLS material, keys).

    Warnings, not errors: a technician often validates on a laptop a file meant for the box, where
    /opt/fieldgate/models and the systemd credentials exist. The daemon checks them again at start.
    """
    from gateway.registry import link_problems, satellite_links
    from gateway.status.config import status_warnings

    found = []
    if config.cameras:  # the vision extra: a site with cameras loaded only where it is installed
        from gateway.vision.manifest import ManifestError, load_manifest

        for i, camera in enumerate(config.cameras):
            try:
                load_manifest(camera.detector.model)
            except ManifestError as exc:
                found.append(f"cameras[{i}].detector.model: {exc}")
    for i, link in enumerate(config.links):
        found.extend(f"links[{i}] ({link.name}): {problem}" for problem in link_problems(link))
    if config.status is not None:
        found.extend(f"status: {problem}" for problem in status_warnings(config.status))
    if satellite_links(config.links):
        from gateway.ackkey import AckKeyError, load_ack_key

        try:
            load_ack_key(config.satellite.ack_key_file, config.satellite.ack_key_credential, Path(path).parent)
        except AckKeyError as exc:
            found.append(str(exc))  # names itself: "satellite ACK key ..."
    return found


def cmd_decode(args: argparse.Namespace) -> int:
    from gateway import compact, compactview

    aliases: dict[int, str] = {}
    if args.config:
        config = _load(args.config)
        if config is None:
            return 1
        aliases = dict(config.satellite.aliases)
    try:
        if args.file:
            with open(args.file, "rb") as handle:
                data = handle.read(4096)
        elif args.message:
            data = compactview.parse_hex(args.message)
        else:
            print("decode: give the message as hex, or --file", file=sys.stderr)
            return 2
    except (OSError, ValueError) as exc:
        print(f"decode: {exc}", file=sys.stderr)
        return 2
    try:
        message = compact.decode(data, aliases)
    except compact.CompactDecodeError as exc:
        print(f"decode: not a valid compact message ({len(data)} bytes): {exc}", file=sys.stderr)
        return 1
    mac = _ack_mac_check(message, args.ack_key_file)
    if mac is None:
        return 2
    print(compactview.dumps(compactview.message_json(message, ack_mac=mac or None), indent=2))
    return 0


def _ack_mac_check(message: CompactMessage, key_file: str | None) -> str | None:
    """For an ACK: "valid" / "INVALID" with a key, "not checked" without; None if the key is unusable."""
    from gateway import compact
    from gateway.ackkey import AckKeyError, load_ack_key

    if message.kind is not compact.MessageKind.ACK:
        return ""
    if not key_file:
        return "not checked (give --ack-key-file)"

    try:
        key = load_ack_key(Path(key_file), None)
    except AckKeyError as exc:
        print(f"decode: {exc}", file=sys.stderr)
        return None
    assert key is not None  # a file was named
    return "valid" if compact.ack_authentic(message, key) else "INVALID: not made with this key"


def _command_word(argv: list[str]) -> str | None:
    """The subcommand ``argv`` names (the first word that is not an option or ``--lang``'s value)."""
    words = iter(argv)
    for word in words:
        if word == "--lang":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def _add_tool_subcommands(sub: Any) -> None:
    """The subcommands of the modules beside the daemon (rules, alerts, commands, tools, centre programs)."""
    from centre.cli import add_subcommands as centre_commands
    from gateway.ackkey import add_subcommands as ack_commands
    from gateway.alerts.cli import add_subcommands as alert_commands
    from gateway.commands.cli import add_subcommands as command_commands
    from gateway.commission.cli import add_subcommands as commission_commands
    from gateway.registry import add_tool_subcommands
    from gateway.rules.cli import add_subcommands as rules_commands
    from gateway.status.cli import add_subcommands as status_commands

    rules_commands(sub)
    alert_commands(sub)
    command_commands(sub)
    ack_commands(sub)
    status_commands(sub)
    add_tool_subcommands(sub)
    from gateway.vision.modelcli import add_subcommands as model_commands  # argparse only; numpy on use

    model_commands(sub)
    centre_commands(sub)
    commission_commands(sub)


def cmd_schema(_args: argparse.Namespace) -> int:
    from gateway.config.site import full_site_model

    print(json.dumps(full_site_model().model_json_schema(), indent=2))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return 1
    from gateway.daemon import serve
    from gateway.journal import JournalUnavailable

    try:
        return asyncio.run(serve(args.config, config))
    except JournalUnavailable as exc:
        print(f"{args.config}: the journal cannot be opened: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
