"""`fieldgate` command line: run, validate, schema."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Callable

from gateway.config import ConfigError, SiteConfig, load_site

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

    from gateway.alerts.cli import add_subcommands as alert_commands
    from gateway.rules.cli import add_subcommands as rules_commands

    rules_commands(sub)
    alert_commands(sub)

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
    if args.explain:
        from drivers.modbus.codec import plan_blocks

        for bus in config.buses:
            print(f"bus {bus.name} ({bus.type})")
            for device in bus.devices:
                blocks = plan_blocks(device.points, device.max_block, device.max_gap)
                print(f"  device {device.name} unit {device.unit_id}: {len(blocks)} requests per poll")
                for block in blocks:
                    names = ", ".join(p.id for p in block.points)
                    print(f"    read {block.table} {block.start}..{block.start + block.count - 1} "
                          f"({block.count}) → {names}")
    return 0


def cmd_schema(_args: argparse.Namespace) -> int:
    print(json.dumps(SiteConfig.model_json_schema(), indent=2))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return 1
    from gateway.daemon import serve

    asyncio.run(serve(args.config, config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
