"""``fieldgate sat-centre CONFIG``: run the centre bridge (``--check``: validate the config only)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any


def add_subcommands(sub: Any) -> None:
    """Add ``sat-centre`` to the ``fieldgate`` parser's subparsers (imports nothing else until it runs)."""
    centre = sub.add_parser("sat-centre", help="centre side of the satellite path: BeiDou command receiver -> MQTT, "
                                               "ACKs back (docs/satellite.md §7)")
    centre.add_argument("config", help="the bridge's config file (YAML)")
    centre.add_argument("--check", action="store_true", help="validate the config and the files it names, then exit")
    centre.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from centre.satellite.config import load_centre
    from gateway.config import ConfigError

    try:
        centre = load_centre(args.config)
    except ConfigError as exc:
        for line in exc.lines:
            print(line, file=sys.stderr)
        return 1
    if args.check:
        cards = ", ".join(f"{card} -> {gw.gateway_id} ({gw.number})" for card, gw in sorted(centre.gateways.items()))
        print(f"{args.config}: ok — receiver {centre.config.receiver.port}, broker {centre.config.broker.host}:"
              f"{centre.config.broker.port}, state {centre.state_path}, cards {cards}")
        return 0
    import sqlite3

    from centre.satellite.service import CentreService

    try:
        service = CentreService(centre)
    except (OSError, sqlite3.Error) as exc:  # LinkRefused is an OSError
        print(f"{args.config}: state file {centre.state_path}: {exc}", file=sys.stderr)
        return 1
    asyncio.run(service.run())
    return 0
