"""The software update's steps in the daemon: ``update_chunk``, ``update_apply``, switch, go back.

Part of the roll-out (gateway/fleet/rollout.py owns the state, the safe-moment wait, the health window and
the records); the blocking work is in gateway/fleet/updates.py, the boot check in gateway/fleet/boot.py.

``update_apply`` checks the bundle and answers; then, in the background, installs the release into the
other slot and has the new interpreter validate the site file, waits for a safe moment, persists
``{phase: trial, kind: update, from_slot, to_slot, deadline}``, flips ``current`` and has the daemon exit
with RESTART_EXIT so that systemd starts the new release. That release commits after the health window
(the same check as a configuration); if it is unhealthy it flips back and exits, if it cannot start the
boot check flips back on the second start. A rollback nobody could journal (the boot check, a daemon
that exits right after) is marked ``unreported`` and journalled by the next daemon that runs.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol

from gateway.commands.target import CommandFailed
from gateway.fleet import boot, updates
from gateway.fleet import inventory as inv
from gateway.fleet.bundle import Manifest, UpdateRefused
from gateway.fleet.moment import RolloutGateway, unsafe_reason
from gateway.fleet.store import RolloutState, RolloutStore


class RolloutSteps(Protocol):
    """What the update's steps use of the roll-out (gateway/fleet/rollout.py RolloutManager)."""

    state: RolloutState
    store: RolloutStore
    config_path: Path
    exit_for_switch: Callable[[], None] | None
    _gateway: RolloutGateway | None

    def idle(self) -> bool: ...

    def inventory(self) -> dict[str, Any]: ...

    def finish(self, phase: str, reason: str) -> None: ...

    def enter_trial(self, gw: RolloutGateway) -> None: ...

    async def event(self, step: str, extra: dict[str, Any], concerned: bool = False) -> None: ...

    async def when_safe(self, max_wait_s: float, concerned: bool,
                        act: Callable[[RolloutGateway, float], Awaitable[bool]]) -> bool: ...

    def start_task(self, steps: Coroutine[Any, Any, None], name: str, concerned: bool) -> None: ...

log = logging.getLogger("fieldgate.fleet")


def _tell(answer: asyncio.Future[dict[str, Any]], outcome: dict[str, Any] | BaseException) -> None:
    """The update_apply command's answer, if it still waits for one (a cut-off command does not)."""
    if answer.done():
        return
    if isinstance(outcome, dict):
        answer.set_result(outcome)
    elif isinstance(outcome, Exception):
        answer.set_exception(outcome)
    else:  # the task was cancelled: the daemon stops (the next start finds `installing` and ends it)
        answer.set_exception(CommandFailed("the update was stopped before its answer: the daemon is stopping"))


def _nobody_waits(answer: asyncio.Future[dict[str, Any]]) -> None:
    if not answer.cancelled():
        answer.exception()  # retrieved: the refusal is in the records and the state, not in the command


class ReleaseUpdates:
    def __init__(self, manager: RolloutSteps) -> None:
        self.manager = manager
        self._one_chunk = asyncio.Lock()  # the command plane runs a few at once; the last one assembles

    async def chunk(self, sha256: str, index: int, total: int, data: str) -> dict[str, Any]:
        async with self._one_chunk:
            return await self._chunk(sha256, index, total, data)

    def _gateway(self) -> RolloutGateway:
        gw = self.manager._gateway
        if gw is None or self.manager.exit_for_switch is None:
            raise CommandFailed("no software update on this gateway: it was not started by `fieldgate run`")
        return gw

    async def _chunk(self, sha256: str, index: int, total: int, data: str) -> dict[str, Any]:
        m = self.manager
        if m.state.kind == "update" and m.state.phase in ("installing", "waiting"):
            # The unpacked wheelhouse is being installed from: another bundle must not replace it now.
            raise CommandFailed(f"update {m.state.to_version or m.state.sha256} is {m.state.phase}: "
                                "send the next bundle afterwards")
        section = self._gateway().config.fleet
        if (m.store.updates / f"bundle-{sha256}.tar").is_file():  # complete already: a resend changes nothing
            return {**updates.Transfer(sha256, total, []).reply(), "assembled": True}
        transfer = await asyncio.to_thread(updates.receive_chunk, m.store, sha256, index, total, data,
                                           section.max_update_bytes)
        if transfer.missing:
            return transfer.reply()
        path = await asyncio.to_thread(updates.assemble, m.store, transfer)
        try:
            manifest = await self._check(path, sha256)
        except UpdateRefused as exc:
            if m.idle():
                m.state = RolloutState(kind="update", phase="refused", sha256=sha256, reason=str(exc),
                                       history=m.state.history)
                await asyncio.to_thread(m.store.save, m.state)
            await m.event("invalid", {"problems": [str(exc)]})
            return {**transfer.reply(), "verified": False, "problem": str(exc)}
        if m.idle():
            m.state = RolloutState(kind="update", phase="staged", sha256=sha256, to_version=manifest.version,
                                   history=m.state.history)
            await asyncio.to_thread(m.store.save, m.state)
        await m.event("staged", {"version": manifest.version})
        return {**transfer.reply(), "verified": True, "version": manifest.version}

    async def _check(self, path: Any, sha256: str) -> Manifest:
        section = self._gateway().config.fleet
        return await asyncio.to_thread(updates.check, self.manager.store, path, sha256, section.update_keys,
                                       inv.software_version(), section.max_update_bytes)

    async def apply(self, sha256: str, window_s: float, max_wait_s: float, command_id: int | None) -> dict[str, Any]:
        """Check the bundle and answer; install and switch in the background.

        The check runs in the roll-out's task from its start, not in the command: a command cut off by
        ``commands.update_timeout`` (a big bundle on a slow card) leaves the check running in its thread
        either way, so the update goes on, one at a time, and ends ``refused`` or as any update does,
        with its records. Before, the cancel left ``installing`` with no task behind it and every later
        update command was refused until a restart."""
        m = self.manager
        gw = self._gateway()
        if not m.idle() or m.state.phase in ("waiting", "trial", "installing"):
            raise CommandFailed(f"a roll-out is in progress ({m.state.kind} {m.state.phase} {m.state.sha256})")
        path = await asyncio.to_thread(updates.find_bundle, m.store, sha256)
        if path is None:
            raise CommandFailed(f"no bundle {sha256[:16]}: send it with update_chunk or drop it in {m.store.inbox}")
        m.state = RolloutState(kind="update", phase="installing", sha256=sha256, command_id=command_id,
                               window_s=window_s, from_version=inv.software_version(),
                               config_label=m.inventory()["config"]["label"], history=m.state.history,
                               reason="checking the bundle")
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        m.start_task(self._check_install_and_switch(path, sha256, max_wait_s, answer), "update-install",
                     gw.broadcast is not None)
        try:
            return await asyncio.shield(answer)
        except asyncio.CancelledError:
            answer.add_done_callback(_nobody_waits)
            log.warning("update %s: update_apply cut off before its answer; the update goes on in the "
                        "background and its records say how it ends", sha256[:16])
            raise

    async def _check_install_and_switch(self, path: Path, sha256: str, max_wait_s: float,
                                        answer: asyncio.Future[dict[str, Any]]) -> None:
        m = self.manager
        state = m.state
        try:
            manifest = await self._check(path, sha256)
            state.from_slot, state.to_slot = updates.slots(self._gateway().config.fleet.ab_root)
            state.to_version, state.reason = manifest.version, ""
            await asyncio.to_thread(m.store.save, state)
            await m.event("installing", {"from": state.from_slot, "to": state.to_slot,
                                         "from_version": state.from_version, "to_version": manifest.version})
        except UpdateRefused as exc:
            m.finish("refused", str(exc))
            await m.event("refused", {})
            _tell(answer, CommandFailed(f"update refused: {exc}"))
            return
        except BaseException as exc:  # start_task's handler leaves a clear state; the command hears why
            _tell(answer, exc)
            raise
        _tell(answer, {"sha256": sha256, "version": manifest.version, "from": state.from_slot,
                       "to": state.to_slot, "window_s": state.window_s, "waiting": None, "max_wait_s": max_wait_s})
        await self._install_and_switch(manifest, max_wait_s)

    async def _install_and_switch(self, manifest: Manifest, max_wait_s: float) -> None:
        m = self.manager
        state = m.state
        gw = self._gateway()
        root = gw.config.fleet.ab_root
        assert state.to_slot is not None
        try:
            await asyncio.to_thread(updates.install, root, state.to_slot, updates.wheelhouse(m.store), manifest,
                                    m.config_path)
        except UpdateRefused as exc:
            m.finish("refused", str(exc))
            await m.event("refused", {})
            return
        state.phase = "waiting"
        await asyncio.to_thread(m.store.save, state)
        await m.event("installed", {"to": state.to_slot, "to_version": manifest.version})

        async def switch(gw: RolloutGateway, waited_s: float) -> bool:
            await m.event("applying", {"waited_s": round(waited_s, 1), "to": state.to_slot})
            if unsafe_reason(gw) is not None:  # the record was written meanwhile: look again
                return False
            m.enter_trial(gw)
            assert state.to_slot is not None and m.exit_for_switch is not None
            boot.flip_current(root, state.to_slot)
            log.warning("update %s: switched to %s (%s); the daemon restarts on it", state.to_version,
                        state.to_slot, root)
            m.exit_for_switch()
            return True

        await m.when_safe(max_wait_s, gw.broadcast is not None, switch)

    def clean(self) -> None:
        """After a commit: the bundle and its unpacked wheels are not needed any more (hundreds of MB)."""
        shutil.rmtree(self.manager.store.updates, ignore_errors=True)

    def roll_back(self, reason: str) -> None:
        """The new release is unhealthy at the end of its window (the wait for a safe moment is done): go
        back to the release it came from and exit; that one journals the rollback when it starts."""
        m = self.manager
        state = m.state
        gw = m._gateway
        assert gw is not None and state.from_slot is not None and m.exit_for_switch is not None
        boot.flip_current(gw.config.fleet.ab_root, state.from_slot)
        state.unreported = True
        m.finish("rolled_back", reason)
        log.error("update %s rolled back to %s: %s", state.to_version, state.from_slot, reason)
        m.exit_for_switch()
