"""`fieldgate` command line: run, validate, schema."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config import ConfigError, SiteConfig, load_site

if TYPE_CHECKING:
    from gateway.compact import CompactMessage

Handler = Callable[[argparse.Namespace], int]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fieldgate", description="Field gateway for emergency telemetry")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
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

    from drivers.modbus.tools import add_subcommands as modbus_tools
    from gateway.ackkey import add_subcommands as ack_commands
    from gateway.alerts.cli import add_subcommands as alert_commands
    from gateway.commands.cli import add_subcommands as command_commands
    from gateway.rules.cli import add_subcommands as rules_commands
    from gateway.status.cli import add_subcommands as status_commands

    rules_commands(sub)
    alert_commands(sub)
    command_commands(sub)
    ack_commands(sub)
    status_commands(sub)
    modbus_tools(sub)

    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    handler: Handler = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        return 130


def setup_logging(verbose: bool) -> None:
    from gateway import logsetup

    logsetup.setup_logging(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("pymodbus", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL if not verbose else logging.DEBUG)


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
    print(f"{args.config}: ok — gateway {config.gateway.id}, {len(config.buses)} buses, {points} points, "
          f"{len(config.cameras)} cameras, {len(config.rules.rules)} rules, "
          f"{len(config.broadcast.outputs)} broadcast outputs, {len(config.links)} links")
    for warning in _local_checks(config, args.config):
        print(f"{args.config}: warning: {warning}")
    if args.explain:
        from drivers.modbus.tools import explain

        for bus in config.buses:
            print("\n".join(explain(bus)))
    return 0


def _local_checks(config: SiteConfig, path: str) -> list[str]:
    """Files the config names that this machine cannot read (model manifests, TLS material, keys).

    Warnings, not errors: a technician often validates on a laptop a file meant for the box, where
    /opt/fieldgate/models and the systemd credentials exist. The daemon checks them again at start.
    """
    from drivers.mqtt.config import MqttLinkConfig
    from drivers.mqtt.credentials import problems
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
        if isinstance(link, MqttLinkConfig):
            found.extend(f"links[{i}] ({link.name}): {problem}" for problem in problems(link))
    if config.status is not None:
        found.extend(f"status: {problem}" for problem in status_warnings(config.status))
    if any(not isinstance(link, MqttLinkConfig) for link in config.links):
        from gateway.ackkey import AckKeyError, load_ack_key

        try:
            load_ack_key(config.satellite.ack_key_file, config.satellite.ack_key_credential, Path(path).parent)
        except AckKeyError as exc:
            found.append(str(exc))  # names itself: "satellite ACK key ..."
    return found


def cmd_decode(args: argparse.Namespace) -> int:
    from gateway import compact

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
            data = bytes.fromhex(args.message.replace(" ", "").replace(":", ""))
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
    out = {
        "kind": message.kind.name.lower(), "gateway": message.gateway, "base_time": message.base_time,
        "seqs": list(message.seqs), "readings": [r.to_json() for r in message.readings],
    }
    if message.alarm is not None:
        alarm = message.alarm
        out["alarm"] = {"seq": alarm.seq, "time": alarm.time, "point": alarm.point, "rule": alarm.rule,
                        "level": alarm.level, "value": alarm.value, "quality": alarm.quality.value,
                        "text": alarm.text, "ref_seq": alarm.ref_seq}
    if message.acked:
        out["acked"] = [list(r) for r in message.acked]
        out["mac"] = mac
    if message.command:
        out["command_bytes"] = len(message.command)
    print(json.dumps(out, ensure_ascii=False, indent=2))
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


def cmd_schema(_args: argparse.Namespace) -> int:
    print(json.dumps(SiteConfig.model_json_schema(), indent=2))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return 1
    from gateway.daemon import serve
    from gateway.journal import JournalUnavailable

    try:
        asyncio.run(serve(args.config, config))
    except JournalUnavailable as exc:
        print(f"{args.config}: the journal cannot be opened: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
