"""Manual alerts through the inbox of a running subsystem: requests made with `fieldgate alert`
(draft, sign by one or two operators, submit) switch the simulated siren, or are refused."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from gateway.alerts import cli as alert_cli
from gateway.alerts.inbox import InboxLimits, InboxWatcher
from gateway.shared import NullProgress
from tests.hil.test_broadcast import SIREN_COIL, Rig, rig_test

pytestmark = [pytest.mark.hil, pytest.mark.timeout(60)]


def fieldgate_alert(*argv: str) -> None:
    parser = argparse.ArgumentParser(prog="fieldgate")
    alert_cli.add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["alert", *argv])
    assert int(args.handler(args)) == 0, argv


def request(rig: Rig, ident: str, signers: list[str]) -> Path:
    path = rig.tmp / f"{ident}.json"
    fieldgate_alert("draft", "--status", "Actual", "--event", "洪水预警", "--zone", "dam", "--clip", "evacuate",
                    "--identifier", ident, "--out", str(path))
    for name in signers:
        key_file = rig.tmp / f"{name}.key"
        key_file.write_bytes(rig.keys[name].private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        fieldgate_alert("sign", str(path), "--operator", name, "--key", str(key_file), "--confirm", "Actual")
    return path


def answer(inbox: Path, sub: str, ident: str) -> dict[str, object] | None:
    found = list((inbox / sub).glob(f"*-{ident}.result.json"))
    return json.loads(found[0].read_text()) if found else None  # type: ignore[no-any-return]


async def until_moved(inbox: Path, sub: str, ident: str) -> dict[str, object]:
    for _ in range(300):  # 15 s
        found = answer(inbox, sub, ident)
        if found is not None:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{ident} never reached {sub}/")


@rig_test
async def test_inbox_two_signatures_sound_the_siren_one_is_refused(rig: Rig) -> None:
    inbox = rig.tmp / "inbox"
    watcher = InboxWatcher(rig.config, rig.subsystem, inbox_dir=inbox, limits=InboxLimits(interval_s=0.05))
    inbox.mkdir()
    task = asyncio.create_task(watcher.run(NullProgress()))
    try:
        lone = request(rig, "op-lone", ["zhang"])
        fieldgate_alert("submit", str(lone), "--inbox", str(inbox))
        refused = await until_moved(inbox, "refused", "op-lone")
        assert refused["alert"] == "op-lone" and "2 distinct" in str(refused["reason"])
        assert await rig.coil(SIREN_COIL) is False
        assert not [w for w in rig.board.writes if w == (SIREN_COIL, True)]

        both = request(rig, "op-both", ["zhang", "li"])
        fieldgate_alert("submit", str(both), "--inbox", str(inbox))
        done = await until_moved(inbox, "done", "op-both")
        assert done["outcome"] == "done" and done["status"] == "Actual"
        siren = [r for r in done["results"] if r["output"] == "siren"]  # type: ignore[union-attr]
        assert siren and siren[-1]["action"] == "activate" and siren[-1]["ok"] is True, done
        assert await rig.coil(SIREN_COIL) is True
        assert list(inbox.glob("*.json")) == [] and list((inbox / "work").iterdir()) == []
        # Both files and their fates are in the hash-chained audit, with the request's digest.
        notes = [e for e in rig.evidence if e["type"] == "broadcast_inbox"]
        assert [(n["alert"], n["outcome"]) for n in notes] == [("op-lone", "refused"), ("op-both", "done")]
        assert all(len(str(n["sha256"])) == 64 for n in notes)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
