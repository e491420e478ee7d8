"""The first operator-signed alert after a start must not pay the ``cryptography`` import on the event loop;
a site without operators must not import it at all (issue 18, memory).

Each case runs in a fresh interpreter (this test process has cryptography imported long ago): it builds the
Interlock the broadcast subsystem builds at start, lets start-up settle on a running loop, then decides a
manual alert carrying two operators' signatures, recording every ``cryptography`` import and its thread
with an audit hook.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from typing import Any

import pytest

from tests.hil.rig import ROOT
from tests.unit.test_alerts import alert, broadcast_config, two_signed

pytestmark = [pytest.mark.hil, pytest.mark.timeout(60)]

CHILD = """
import asyncio, json, sys, threading, time

imports = []
def on_audit(event, args):
    if event == "import" and str(args[0]).startswith("cryptography"):
        imports.append([str(args[0]), threading.current_thread().name])
sys.addaudithook(on_audit)

from gateway.alerts.config import BroadcastConfig
from gateway.alerts.interlock import Interlock
from gateway.alerts.model import Alert
from gateway.alerts.signing import OperatorSignature

async def main():
    given = json.loads(sys.stdin.read())
    lock = Interlock(BroadcastConfig.model_validate(given["config"]))  # as the broadcast subsystem at start
    for _ in range(1000):  # start-up settles: its helper threads end (bounded: 10 s)
        if threading.active_count() == 1:
            break
        await asyncio.sleep(0.01)
    at_start = list(imports)
    signatures = [OperatorSignature.model_validate(s) for s in given["signatures"]]
    decision = lock.decide(Alert.model_validate(given["alert"]), "remote", time.time(), signatures)
    print(json.dumps({"accepted": decision.accepted, "reason": decision.reason, "at_start": at_start,
                      "on_verify": imports[len(at_start):], "loaded": "cryptography" in sys.modules}))

asyncio.run(main())
"""


def first_signed_alert(operators: bool) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    manual = alert(identifier="first-after-start", sent=now, expires=now + dt.timedelta(hours=1))
    config = broadcast_config() if operators else broadcast_config(operators={})
    given = {"config": config.model_dump(mode="json", exclude_unset=True), "alert": manual.model_dump(mode="json"),
             "signatures": [s.model_dump(mode="json") for s in two_signed(manual, now.timestamp())]}
    run = subprocess.run([sys.executable, "-c", CHILD], input=json.dumps(given), capture_output=True, text=True,
                         cwd=ROOT, timeout=50)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)  # type: ignore[no-any-return]


def test_a_site_with_operators_imports_cryptography_at_start_off_the_loop() -> None:
    got = first_signed_alert(operators=True)
    assert got["accepted"], got["reason"]
    # Before the fix: nothing at start, and the whole import (cryptography, its hazmat bindings, the
    # Ed25519 module) ran in MainThread, inside decide(), on the event loop.
    assert got["on_verify"] == []
    assert got["at_start"] and {thread for _name, thread in got["at_start"]} == {"keyring-warm-up"}


def test_a_site_without_operators_never_imports_cryptography() -> None:
    got = first_signed_alert(operators=False)
    assert not got["accepted"]  # signatures, but no operator to check them against
    assert not got["loaded"] and got["at_start"] == [] and got["on_verify"] == []
