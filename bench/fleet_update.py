"""Software update, command to committed, on the virtual rig; baseline: a configuration roll-out on the same
box with the same health window, in the same run.

Each run: a fresh A/B box (sim/ab_box.py: the installed release 0.1.0 of this tree, the unit's loop with
the boot check), one mosquitto, the platform's centre.fleet / centre.fleetupdate. First a configuration
roll-out (one chunk, config_apply), then an update to 0.1.1 (the bundle in 22 KiB chunks, update_apply:
install into slot a with pip --no-index, validate with the new interpreter, switch, restart, window).
The unit's RestartSec (10 s on a box) is 0.3 s here. Prints JSON.

    .venv/bin/python bench/fleet_update.py --runs 3 --window 5
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from centre.fleet import FleetLink, Plan, Target, push  # noqa: E402
from centre.fleetupdate import push_update, send_chunks  # noqa: E402
from gateway.alerts.signing import public_key_text  # noqa: E402
from gateway.commands.config import key_text  # noqa: E402
from gateway.fleet import bundle  # noqa: E402
from sim.ab_box import ABBox, build_release, update_site  # noqa: E402
from sim.broker import Broker  # noqa: E402


def one_run(work: Path, base: Path, good: bytes, update_key: Ed25519PrivateKey, window: float) -> dict[str, Any]:
    issuer = Ed25519PrivateKey.generate()
    broker = Broker(work / "broker").start()
    root, state, site = work / "opt" / "releases", work / "state", work / "site.yaml"

    def text(name: str) -> str:
        return update_site("bench-01", state, broker.port, key_text(issuer.public_key()),
                           public_key_text(update_key), root, name=name)

    site.write_text(text("v1"))
    box = ABBox(root, state, site, work / "box.log").install(base)
    link = FleetLink("127.0.0.1", broker.port)
    plan = Plan(issuer, "ops", window_s=window, max_wait_s=30.0, outcome_timeout=300.0)
    try:
        box.up()
        config = push(link, plan, [Target("bench-01", text("v2").encode())])[0]
        started = time.monotonic()
        target = Target("bench-01", good)
        send_chunks(link, plan, target)
        transferred = time.monotonic() - started
        update = push_update(link, plan, [target])[0]
        total = time.monotonic() - started
        if config.outcome != "committed" or update.outcome != "committed":
            raise RuntimeError(f"config {config.to_json()}, update {update.to_json()}; log:\n{box.log()}")
        steps = {r["step"]: float(r["ts"]) for r in link.rollouts["bench-01"] if r.get("sha256") == target.sha256}
        return {"config_s": config.to_json()["seconds"], "update_s": round(total, 2),
                "transfer_s": round(transferred, 2), "chunks": target.chunks_sent,
                # From the gateway's own record times: pip and `fieldgate validate` in the new venv; then
                # the switch, the restart on the new release, READY and the health window.
                "install_s": round(steps["installed"] - steps["installing"], 2),
                "switch_to_commit_s": round(steps["committed"] - steps["applying"], 2),
                "ratio": round(total / config.to_json()["seconds"], 2)}
    finally:
        link.close()
        box.stop()
        broker.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--window", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleet-update-") as tmp:
        work = Path(tmp)
        key = Ed25519PrivateKey.generate()
        base = build_release(work / "base", "0.1.0")
        wheel = build_release(work / "good", "0.1.1")
        good = bundle.build([wheel], bundle.manifest_for([wheel], "0.1.1"), key, "release")
        runs = [one_run(work / f"run-{i}", base, good, key, args.window) for i in range(args.runs)]
    summary = {k: statistics.median(r[k] for r in runs)
               for k in ("config_s", "update_s", "transfer_s", "install_s", "switch_to_commit_s", "ratio")}
    print(json.dumps({"machine": platform.machine(), "window_s": args.window, "bundle_bytes": len(good),
                      "runs": runs, "median": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
