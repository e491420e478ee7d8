"""`fieldgate commission site.yaml`: start the site's gateway here, run the guided check, write the report.

It refuses while the daemon runs (its status page answers): two gateways would poll the same lines and
write the same journal. On a running box use the status page's Commission action instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import socket
import sys
import time
from pathlib import Path
from typing import Any

from gateway import i18n
from gateway.i18n import _

START_TIMEOUT_S = 30.0


def add_subcommands(subparsers: Any) -> None:
    p = subparsers.add_parser("commission", help="guided commissioning check and report (HTML, PDF)")
    p.add_argument("config")
    p.add_argument("--operator", help="operator whose key signs the Test broadcast (a name in broadcast.operators)")
    p.add_argument("--key", type=Path, help="that operator's Ed25519 private key (PEM)")
    p.add_argument("--wait", type=float, default=20.0, help="seconds to wait for readings and links (default 20)")
    p.add_argument("--out", type=Path, help="report folder (default <state_dir>/commission)")
    p.set_defaults(handler=cmd_commission)


def _daemon_answers(site: Any) -> bool:
    status = site.status
    if status is None:
        return False
    host = "127.0.0.1" if status.host in ("0.0.0.0", "", "::") else status.host
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, status.port)) == 0


def cmd_commission(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError, load_site

    try:
        site = load_site(args.config)
    except ConfigError as exc:
        print("\n".join(exc.lines), file=sys.stderr)
        return 1
    if _daemon_answers(site):
        print(_("the daemon is running (its status page answers): use the page's Commission action, or stop it "
                "first"), file=sys.stderr)
        return 1
    if (args.operator is None) != (args.key is None):
        print(_("--operator and --key go together"), file=sys.stderr)
        return 1
    return asyncio.run(_commission(args, site))


async def _commission(args: argparse.Namespace, site: Any) -> int:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from gateway.alerts.signing import sign
    from gateway.app import Gateway
    from gateway.commission import commission
    from gateway.commission.checks import test_alert

    language = i18n.current()
    gw = Gateway(site, config_path=str(args.config))
    key: Ed25519PrivateKey | None = None
    if args.operator is not None:
        loaded = serialization.load_pem_private_key(args.key.read_bytes(), password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            print(_("refused: not an Ed25519 key"), file=sys.stderr)
            return 1
        key = loaded
    stop = asyncio.Event()
    running = asyncio.create_task(gw.run(stop))
    try:
        await asyncio.wait_for(asyncio.shield(gw.ready.wait()), START_TIMEOUT_S)
        request = None
        if key is not None:
            # Signed once the gateway runs: on a new state directory its broadcast history begins at this
            # start, and the interlock refuses an alert from people sent before it (it may have been played).
            alert = test_alert(gw, time.time())
            request = (alert, [sign(alert, args.operator, key, time.time())])
        outcome = await commission(gw, by=f"{getpass.getuser()} (fieldgate commission)", wait_s=args.wait,
                                   request=request, language=language, out_dir=args.out)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(running, 60)
    from gateway.commission.report import verdict

    for result in outcome["results"]:
        finding = _(result["summary"]).format(**result["args"])
        print(f"{verdict(result['ok']):8} {result['section']}: {result['subject']}: {finding}")
    print(_("report: {html} and {pdf} (recorded in the audit chain)").format(html=outcome["html"],
                                                                            pdf=outcome["pdf"]))
    print(_("PASSED") if outcome["passed"] else _("NOT PASSED"))
    return 0 if outcome["passed"] else 2
