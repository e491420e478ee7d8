"""Signed software updates on the virtual rig (docs/fleet.md): a box with an A/B install run as its unit
runs it (sim/ab_box.py: boot check, then `current/bin/fieldgate run`, restarted after a failure), one
broker, the platform's `centre.fleetupdate` sending signed bundles of real releases of this tree.

- a release that cannot start rolls back by itself (the boot check, second start), and the journal's
  backlog, held for an uplink that was down all along, is published after the rollback;
- a transfer interrupted half-way (the box restarted in between) resumes: only the missing chunks are sent,
  and the release commits after its health window;
- a downgrade without `downgrade: true` in the signed manifest is refused.
"""

from __future__ import annotations

import ensurepip
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from centre.fleet import FleetLink, Plan, Target
from centre.fleetupdate import push_update, send_chunks
from gateway.alerts.signing import public_key_text
from gateway.commands.config import key_text
from gateway.fleet import bundle
from gateway.fleet.updates import CHUNK_BYTES
from sim.ab_box import ABBox, build_release, update_site
from sim.broker import Broker
from sim.platform import Platform
from sim.support import free_port, wait_for
from tests.hil.rig import ROOT, RigFile

pytestmark = [pytest.mark.hil, pytest.mark.timeout(240)]


@dataclass
class Releases:
    base: Path  # 0.1.0, this tree as installed
    good: bytes  # bundle of 0.1.1
    broken: bytes  # bundle of 0.1.2, whose daemon raises at start (validate works)
    older: bytes  # bundle of 0.0.9 without the downgrade flag
    update_key: Ed25519PrivateKey


@pytest.fixture(scope="session")
def releases(tmp_path_factory: pytest.TempPathFactory) -> Releases:
    out = tmp_path_factory.mktemp("releases")
    key = Ed25519PrivateKey.generate()

    def pack(wheel: Path, *extra: Path, **kw: Any) -> bytes:
        version = wheel.name.split("-")[1]
        return bundle.build([wheel, *extra], bundle.manifest_for([wheel, *extra], version, **kw), key, "release")

    # The good release carries its installer (pip, run from its wheel into a venv made without pip), as a
    # bundle for the Debian package must; the broken one relies on the interpreter's ensurepip.
    pip = next((Path(ensurepip.__file__).parent / "_bundled").glob("pip-*.whl"))

    older = out / "old" / "fieldgate-0.0.9-py3-none-any.whl"  # refused before anything reads it
    older.parent.mkdir()
    older.write_bytes(b"not read")
    return Releases(base=build_release(out / "base", "0.1.0"), good=pack(build_release(out / "good", "0.1.1"), pip),
                    broken=pack(build_release(out / "broken", "0.1.2", broken=True)), older=pack(older),
                    update_key=key)


class Box:
    def __init__(self, tmp: Path, broker: Broker, releases: Releases, archive_port: int | None = None) -> None:
        self.gw = "upd-01"
        self.issuer = Ed25519PrivateKey.generate()
        root = tmp / "opt" / "releases"
        site = tmp / "site.yaml"
        site.write_text(update_site(self.gw, tmp / "state", broker.port, key_text(self.issuer.public_key()),
                                    public_key_text(releases.update_key), root, archive_port=archive_port))
        self.box = ABBox(root, tmp / "state", site, tmp / "box.log").install(releases.base)

    def up(self) -> None:
        self.box.up()

    def plan(self, **kw: Any) -> Plan:
        return Plan(self.issuer, "ops", **{"window_s": 5.0, "max_wait_s": 30.0, "reply_timeout": 30.0,
                                           "outcome_timeout": 150.0, **kw})


@pytest.fixture
def link(broker: Broker) -> Iterator[FleetLink]:
    client = FleetLink("127.0.0.1", broker.port)
    yield client
    client.close()


def rollouts(collector: Platform, gw: str) -> list[dict[str, Any]]:
    return [r for r in collector.records("evidence") if r.get("kind") == "rollout" and r.get("key") == gw]


def test_a_release_that_cannot_start_rolls_back_and_the_backlog_is_published(
    tmp_path: Path, broker: Broker, collector: Platform, link: FleetLink, releases: Releases, rig: RigFile
) -> None:
    archive = Broker(tmp_path / "archive-broker", rig.mosquitto, port=free_port())  # down until the end
    box = Box(tmp_path, broker, releases, archive.port)
    box.up()
    try:
        done = push_update(link, box.plan(), [Target(box.gw, releases.broken)])[0]
        assert done.outcome == "rolled_back", (done.to_json(), box.box.log())
        assert "started 2 times" in done.reason
        assert box.box.slot() == "../venv"
        assert [slot for slot, _code in box.box.starts] == ["../venv", "a"]  # the switch, the crash
        assert box.box.starts[1][1] not in (0, None)
        record = next(r for r in rollouts(collector, box.gw) if r["step"] == "rolled_back")
        assert record["at_start"] is True and record["of"] == "update"
        # The archive uplink was down through all of it: its backlog (from before the switch to after the
        # rollback) is in the journal the releases share, and goes out once the broker is there.
        archive.start()
        late = Platform(archive.port)
        try:
            wait_for(lambda: {"installing", "applying", "rolled_back"} <= {r["step"] for r in rollouts(late, box.gw)},
                     60, f"the backlog on the archive uplink; log:\n{box.box.log()}")
        finally:
            late.close()
    finally:
        box.box.stop()
        archive.stop()


def test_an_interrupted_transfer_resumes_and_the_release_commits_after_its_window(
    tmp_path: Path, broker: Broker, collector: Platform, link: FleetLink, releases: Releases
) -> None:
    box = Box(tmp_path, broker, releases)
    box.up()
    try:
        target = Target(box.gw, releases.good)
        total = -(-len(releases.good) // CHUNK_BYTES)
        first_half = list(range(total // 2))
        reply = send_chunks(link, box.plan(), target, first_half)
        assert reply["missing_count"] == total - len(first_half), reply
        box.box.stop()  # the transfer is interrupted: the box restarts (a power cut would do the same)
        box.up()
        started = time.monotonic()
        target = Target(box.gw, releases.good)
        done = push_update(link, box.plan(), [target])[0]
        took = time.monotonic() - started
        assert done.outcome == "committed", (done.to_json(), box.box.log())
        assert target.chunks_sent == 1 + total - len(first_half)  # one probe, then only what was missing
        assert box.box.slot() == "a"
        steps = [r["step"] for r in rollouts(collector, box.gw) if r.get("sha256") == target.sha256]
        assert steps[-1] == "committed" and "installed" in steps and "rolled_back" not in steps
        print(f"\nUPDATE command to committed: {took:.1f} s (window 5 s, bundle {len(releases.good)} bytes, "
              f"{total} chunks, {target.chunks_sent} sent after the interruption)")
    finally:
        box.box.stop()


def test_a_downgrade_without_the_flag_is_refused(
    tmp_path: Path, broker: Broker, collector: Platform, releases: Releases
) -> None:
    """With `fieldgate fleet push-update` itself, the gateway named by a group."""
    box = Box(tmp_path, broker, releases)
    box.up()
    try:
        (tmp_path / "older.tar").write_bytes(releases.older)
        (tmp_path / "groups.yaml").write_text(f"north: [{box.gw}]\n")
        ops = tmp_path / "ops.key"
        ops.write_bytes(box.issuer.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
        done = subprocess.run([sys.executable, "-m", "gateway.cli", "fleet", "push-update", "--broker",
                               f"127.0.0.1:{broker.port}", "--key", str(ops), "--key-id", "ops", "--bundle",
                               str(tmp_path / "older.tar"), "--group", "north", "--groups",
                               str(tmp_path / "groups.yaml"), "--window", "5"],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 1, done.stderr
        (result,) = json.loads(done.stdout)
        assert result["gateway"] == box.gw and result["outcome"] == "refused", result
        assert "older than the running 0.1.0" in result["reason"] and "downgrade: true" in result["reason"]
        assert box.box.slot() == "../venv" and not (tmp_path / "opt" / "releases" / "a").exists()
    finally:
        box.box.stop()
