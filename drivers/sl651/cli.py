"""``fieldgate sl651 decode <hex>``: light to import (the codec loads only when the command runs), so the
rest of the CLI does not pay for it. The receiver, ``fieldgate sl651-centre``, is a centre program (centre/)."""

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

