"""``fieldgate sl651 decode <hex>`` and ``fieldgate sl651-centre``: light to import (the codec and the
receiver load only when their command runs), so the rest of the CLI does not pay for them."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def add_subcommands(sub: Any) -> None:
    sl651 = sub.add_parser("sl651", help="SL 651-2014 hydrological frames (docs/sl651.md)")
    tools = sl651.add_subparsers(dest="sl651_command", required=True)
    decode = tools.add_parser("decode", help="print one HEX/BCD frame as JSON; exit 1 with one line if rejected")
    decode.add_argument("frame", help="the frame as hex (spaces and colons are ignored)")
    decode.set_defaults(handler=cmd_decode)

    centre = sub.add_parser("sl651-centre", help="receive SL 651 stations over TCP and publish them to MQTT")
    centre.add_argument("--config", help="YAML file with the settings below (flags override it)")
    centre.add_argument("--listen", help="host:port to accept stations on (default 0.0.0.0:5005)")
    centre.add_argument("--broker", help="MQTT broker host:port (default 127.0.0.1:1883)")
    centre.add_argument("--centre-address", type=int, help="only accept frames for this centre address (1-255)")
    centre.add_argument("--topic-prefix", help="MQTT topic prefix (default fieldgate/v1)")
    centre.add_argument("--stations", help="only accept these station addresses (hex, comma separated)")
    centre.set_defaults(handler=cmd_centre)



def cmd_decode(args: argparse.Namespace) -> int:
    from drivers.sl651.errors import Sl651Error
    from drivers.sl651.message import decode, to_json

    text = "".join(args.frame.split()).replace(":", "")
    try:
        data = bytes.fromhex(text)
    except ValueError:
        print(f"sl651 decode: not hex: {text[:40]!r}", file=sys.stderr)
        return 2
    try:
        message = decode(data)
    except Sl651Error as exc:
        print(f"sl651 decode: rejected ({len(data)} bytes): {exc}", file=sys.stderr)
        return 1
    print(json.dumps(to_json(message), ensure_ascii=False))
    return 0


def cmd_centre(args: argparse.Namespace) -> int:
    from drivers.sl651.centre import main

    code: int = main(args)
    return code
