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
            raise CommandFailed(f"update {m.state.to_version} is {m.state.phase}: send the next bundle afterwards")
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
        m = self.manager
        gw = self._gateway()
        if not m.idle() or m.state.phase in ("waiting", "trial", "installing"):
            raise CommandFailed(f"a roll-out is in progress ({m.state.kind} {m.state.phase} {m.state.sha256})")
        path = await asyncio.to_thread(updates.find_bundle, m.store, sha256)
        if path is None:
            raise CommandFailed(f"no bundle {sha256[:16]}: send it with update_chunk or drop it in {m.store.inbox}")
        root = gw.config.fleet.ab_root
        m.state = RolloutState(kind="update", phase="installing", sha256=sha256, command_id=command_id,
                               window_s=window_s, from_version=inv.software_version(),
                               config_label=m.inventory()["config"]["label"], history=m.state.history)
        try:
            manifest = await self._check(path, sha256)
            m.state.from_slot, m.state.to_slot = updates.slots(root)
        except UpdateRefused as exc:
            m.finish("refused", str(exc))
            await m.event("refused", {})
            raise CommandFailed(f"update refused: {exc}") from None
        m.state.to_version = manifest.version
        await asyncio.to_thread(m.store.save, m.state)
        await m.event("installing", {"from": m.state.from_slot, "to": m.state.to_slot,
                                     "from_version": m.state.from_version, "to_version": manifest.version})
        m.start_task(self._install_and_switch(manifest, max_wait_s), "update-install", gw.broadcast is not None)
        return {"sha256": sha256, "version": manifest.version, "from": m.state.from_slot, "to": m.state.to_slot,
                "window_s": window_s, "waiting": None, "max_wait_s": max_wait_s}

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
