"""An ``update_apply`` cut off by ``commands.update_timeout`` (a big bundle on a slow card): the update goes
on in the background, one at a time, and ends in a state the platform can see and retry from.

The real RolloutManager on a real signed bundle; only the slow card (the check sleeps first) and pip (the
install makes the slot's folder) stand in, and a small object stands in for the running Gateway."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.alerts.signing import public_key_text
from gateway.commands.target import CommandFailed
from gateway.config import SiteConfig
from gateway.config.loader import load_site_text
from gateway.fleet import boot, bundle, updates
from gateway.fleet.rollout import RolloutManager
from gateway.fleet.store import sha256_hex
from gateway.shared import EventRecord, RecordClass

RELEASE, STRANGER = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
VERSION = "99.0.0"  # newer than any running release
UPDATE_TIMEOUT_S = 0.2  # commands.update_timeout, against CHECK_S of checking the bundle
CHECK_S = 0.6


class RunningBox:
    """What the update's steps use of the running Gateway (gateway/fleet/moment.py RolloutGateway)."""

    def __init__(self, config: SiteConfig) -> None:
        self.config = config
        self.broadcast = None
        self.satellites: list[Any] = []
        self.journal = self
        self.rules = self
        self.rule_count = 0
        self.commands_running = True
        self.ready = asyncio.Event()
        self.steps: list[str] = []

    def active_alarms(self) -> list[dict[str, Any]]:
        return []

    def snapshot(self) -> dict[str, Any]:
        return {"devices": [], "links": []}

    async def append_now(self, _cls: RecordClass, record: EventRecord) -> None:
        self.steps.append(str(record.body["step"]))


def signed_bundle(tmp: Path, key: Ed25519PrivateKey) -> bytes:
    wheel = tmp / "wh" / f"fieldgate-{VERSION}-py3-none-any.whl"
    wheel.parent.mkdir(exist_ok=True)
    wheel.write_bytes(b"PK fake wheel")
    return bundle.build([wheel], bundle.manifest_for([wheel], VERSION), key, "release")


def on_a_slow_card(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The check takes CHECK_S; the install makes the slot's folder. Returns the slots installed into."""
    check, installed = updates.check, []

    def slow_check(*args: Any) -> bundle.Manifest:
        time.sleep(CHECK_S)
        return check(*args)

    def install(root: Path, slot: str, *_: Any) -> None:
        (root / slot).mkdir()
        installed.append(slot)

    monkeypatch.setattr(updates, "check", slow_check)
    monkeypatch.setattr(updates, "install", install)
    return installed


def run_on_a_box(tmp: Path, body: Callable[[RolloutManager, RunningBox, list[str]], Coroutine[Any, Any, None]]) -> None:
    root = tmp / "ab"
    (root / "a").mkdir(parents=True)
    boot.flip_current(root, "a")
    config = load_site_text(f"gateway: {{id: gw1, state_dir: {tmp / 'state'}}}\n"
                            f'fleet: {{update_keys: {{release: "{public_key_text(RELEASE)}"}}, ab_root: {root}}}\n')
    switched: list[str] = []  # the slot `current` points at when the daemon is told to exit

    async def main() -> None:
        manager = RolloutManager(str(tmp / "site.yaml"), config)
        box = RunningBox(config)
        manager.attach(box, lambda _config: None)  # type: ignore[arg-type]
        manager.exit_for_switch = lambda: switched.append(str(boot.current_slot(root)))
        async with asyncio.timeout(10):
            await body(manager, box, switched)

    asyncio.run(main())


async def cut_off_apply(manager: RolloutManager, sha256: str) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(UPDATE_TIMEOUT_S):  # as the command plane runs it (gateway/commands/plane.py)
            await manager.update_apply(sha256, 5.0, 30.0, 1)


async def until(condition: Callable[[], bool]) -> None:
    while not condition():  # noqa: ASYNC110 - the roll-out's own task moves on; this only looks
        await asyncio.sleep(0.02)


def test_a_cut_off_update_apply_goes_on_in_the_background_and_only_once(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Before the fix the phase stayed `installing` with nothing behind it: no switch came (this test
    timed out waiting for it), and every later update command was refused until a restart."""
    installed = on_a_slow_card(monkeypatch)
    body = signed_bundle(tmp_path, RELEASE)
    sha = sha256_hex(body)

    async def steps(manager: RolloutManager, box: RunningBox, switched: list[str]) -> None:
        manager.store.inbox.mkdir(parents=True)
        (manager.store.inbox / "update.tar").write_bytes(body)
        await cut_off_apply(manager, sha)
        assert manager.state.phase == "installing"  # the check goes on in its thread
        with pytest.raises(CommandFailed, match="in progress"):  # never two at once
            await manager.update_apply(sha, 5.0, 30.0, 2)
        await until(lambda: bool(switched))
        assert switched == ["b"] and installed == ["b"]
        assert manager.state.phase == "trial" and manager.state.to_version == VERSION
        assert box.steps == ["installing", "installed", "applying"]

    run_on_a_box(tmp_path, steps)


def test_a_cut_off_update_apply_that_is_refused_meanwhile_lets_the_platform_retry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before the fix the bundle's refusal, found after the cut-off, was never recorded: the phase stayed
    `installing` (this test timed out waiting for `refused`) and the retry was refused as in progress."""
    installed = on_a_slow_card(monkeypatch)
    foreign, good = signed_bundle(tmp_path, STRANGER), signed_bundle(tmp_path, RELEASE)

    async def steps(manager: RolloutManager, box: RunningBox, switched: list[str]) -> None:
        manager.store.inbox.mkdir(parents=True)
        (manager.store.inbox / "foreign.tar").write_bytes(foreign)
        await cut_off_apply(manager, sha256_hex(foreign))
        await until(lambda: manager.state.phase != "installing")
        assert manager.state.phase == "refused" and "does not verify" in manager.state.reason
        assert manager.store.load().phase == "refused"  # persisted: status and the health message say so
        assert box.steps == ["refused"] and installed == []
        (manager.store.inbox / "good.tar").write_bytes(good)
        answer = await manager.update_apply(sha256_hex(good), 5.0, 30.0, 2)  # within the time limit now
        assert (answer["version"], answer["to"]) == (VERSION, "b")
        await until(lambda: bool(switched))
        assert installed == ["b"] and box.steps == ["refused", "installing", "installed", "applying"]

    run_on_a_box(tmp_path, steps)


def test_a_daemon_stopping_while_the_bundle_is_checked_answers_the_waiting_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    on_a_slow_card(monkeypatch)
    body = signed_bundle(tmp_path, RELEASE)

    async def steps(manager: RolloutManager, box: RunningBox, switched: list[str]) -> None:
        manager.store.inbox.mkdir(parents=True)
        (manager.store.inbox / "update.tar").write_bytes(body)
        command = asyncio.create_task(manager.update_apply(sha256_hex(body), 5.0, 30.0, 1))
        await until(lambda: manager._task is not None)
        assert manager._task is not None
        manager._task.cancel()  # as the daemon's stop does
        with pytest.raises(CommandFailed, match="the daemon is stopping"):  # not a CancelledError in the plane
            await command
        assert switched == [] and box.steps == []

    run_on_a_box(tmp_path, steps)
