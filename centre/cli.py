"""``fieldgate sat-centre`` and ``fieldgate sl651-centre``: argparse only; each program loads when it runs."""

from __future__ import annotations

import argparse
from typing import Any

from centre.satellite.cli import add_subcommands as satellite_commands


def add_subcommands(sub: Any) -> None:
    satellite_commands(sub)
    centre = sub.add_parser("sl651-centre", help="receive SL 651 stations over TCP and publish them to MQTT")
    centre.add_argument("--config", help="YAML file with the settings below (flags override it)")
    centre.add_argument("--listen", help="host:port to accept stations on (default 0.0.0.0:5005)")
    centre.add_argument("--broker", help="MQTT broker host:port (default 127.0.0.1:1883)")
    centre.add_argument("--centre-address", type=int, help="only accept frames for this centre address (1-255)")
    centre.add_argument("--topic-prefix", help="MQTT topic prefix (default fieldgate/v1)")
    centre.add_argument("--stations", help="only accept these station addresses (hex, comma separated)")
    centre.set_defaults(handler=_sl651_centre)


def _sl651_centre(args: argparse.Namespace) -> int:
    from centre.sl651 import main

    code: int = main(args)
    return code
