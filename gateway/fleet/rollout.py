"""The configuration roll-out on the gateway: stage, wait for a safe moment, apply, watch, commit or roll back.

Owned by the daemon (gateway/daemon.py), so it outlives each Gateway the daemon restarts:

1. ``config_chunk`` commands bring the file (resumable; one file in transit at a time).
2. ``config_apply`` validates it (the loader of `fieldgate validate`), refuses what may not be changed
   remotely, asks for two operators' signatures when the broadcast outputs or interlock change, and
   answers at once; the rest runs here and is reported as ``rollout`` evidence records.
3. It waits (bounded) while a broadcast is active or an alarm that may trigger one is raised, then keeps
   the running file as ``previous.yaml``, writes the new one in place and restarts the gateway on it.
4. The health window: the new gateway must be READY and, at the end of the window, have every device
   online that was online before, every link connected that was connected before, its rules loaded and
   its command plane running if it was. Then it commits; otherwise the previous file goes back by itself.
5. A daemon that starts with a roll-out still on trial (it crashed, the watchdog killed it, the power
   went) rolls back before it runs anything.

Every step is persisted (gateway/fleet/store.py) before it acts, and journalled as evidence; steps of a
file that touches the broadcast path also go to the broadcast audit chain.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.alerts.signing import OperatorSignature
from gateway.commands.target import CommandFailed
from gateway.config import SiteConfig
from gateway.contracts import IdentifiedModem
from gateway.fleet import inventory as inv
from gateway.fleet import staging
from gateway.fleet.moment import RolloutGateway, unsafe_reason
from gateway.fleet.store import RolloutState, RolloutStore, sha256_hex
from gateway.fsutil import write_atomic
from gateway.shared import EventRecord, RecordClass, now

if TYPE_CHECKING:
    from gateway.fleet.release import ReleaseUpdates

log = logging.getLogger("fieldgate.fleet")
READY_TIMEOUT_S = 60.0  # a new gateway that is not READY within this is rolled back
_SAFE_POLL_S = 0.5
Restart = Callable[[SiteConfig], None]


def health_facts(gw: RolloutGateway) -> dict[str, Any]:
    """What the health window compares: before the change (the baseline) and at the end of the window."""
    snap = gw.snapshot()
    return {
        "devices_online": sorted(f"{d['bus']}/{d['device']}" for d in snap["devices"] if d.get("online")),
        "links_connected": sorted(str(link["name"]) for link in snap["links"] if link.get("connected")),
        "rules": gw.rules.rule_count,
        "commands": gw.commands_running,
    }


def health_problems(baseline: dict[str, Any], gw: RolloutGateway) -> list[str]:
    facts = health_facts(gw)
    config = gw.config
    devices = {f"{bus.name}/{device.name}" for bus in config.buses for device in bus.devices}
    links = {link.name for link in config.links}
    problems = [f"device {d} offline (online before)" for d in baseline.get("devices_online", [])
                if d in devices and d not in facts["devices_online"]]
    problems += [f"link {name} not connected (connected before)" for name in baseline.get("links_connected", [])
                 if name in links and name not in facts["links_connected"]]
    if facts["rules"] != len(config.rules.rules):
        problems.append(f"{facts['rules']} rules loaded, {len(config.rules.rules)} configured")
    if baseline.get("commands") and not facts["commands"]:
        problems.append("the command plane is not running (it was): the box would no longer take commands")
    return problems


class RolloutManager:
    def __init__(self, config_path: str, config: SiteConfig, clock: Callable[[], float] = time.time) -> None:
        self.config_path = Path(config_path)
        self.store = RolloutStore(config.gateway.state_dir)
        self.state = self.store.load()
        self._clock = clock
        self._gateway: RolloutGateway | None = None
        self._restart: Restart | None = None
        self._task: asyncio.Task[None] | None = None
        self._pending_events: list[dict[str, Any]] = []  # steps taken before a gateway ran (at start): few
        self._events: set[asyncio.Task[None]] = set()
        self._one_apply = asyncio.Lock()  # two config_apply commands at once: the second sees the first
        self.config_sha = self._file_sha()
        # Set by the daemon: stop the gateway and exit with updates.RESTART_EXIT (a release was switched).
        self.exit_for_switch: Callable[[], None] | None = None
        if self.state.unreported:  # rolled back by the boot check or a daemon that exited right after
            self.state.unreported = False
            self._pending_events.append(self._body("rolled_back", {"at_start": True}))
            self.store.save(self.state)

    @functools.cached_property
    def releases(self) -> ReleaseUpdates:
        """Software updates: their code (bundle, install, boot check) loads with the first update command or a
        roll-out of kind update, not on every start (issue 18, idle memory)."""
        from gateway.fleet.release import ReleaseUpdates

        return ReleaseUpdates(self)

    # ---- the daemon's calls ----

    def recover(self, config: SiteConfig) -> SiteConfig:
        """At start, before anything runs: a roll-out left on trial is rolled back; one left waiting is dropped."""
        state = self.state
        if state.phase in ("waiting", "installing"):
            self.finish("refused", f"the daemon stopped while the roll-out was {state.phase}")
            self._pending_events.append(self._body("refused", {"at_start": True}))
        if state.phase != "trial" or state.kind == "update":
            return config  # an update on trial is the boot check's (gateway/fleet/boot.py) and the window's
        reason = ("the daemon restarted inside the health window (a crash, the watchdog or a power cut) "
                  "before the new configuration was committed")
        previous = self._restore_previous()
        if previous is None:
            log.critical("roll-out %s: cannot roll back (%s); running the new configuration", state.sha256,
                         state.reason)
            return config
        self.finish("rolled_back", reason)
        self._pending_events.append(self._body("rolled_back", {"at_start": True}))
        log.error("roll-out %s rolled back: %s", state.sha256, reason)
        return previous

    def attach(self, gateway: RolloutGateway, restart: Restart) -> None:
        """A new Gateway runs (at start or after a restart this manager asked for)."""
        self._gateway, self._restart = gateway, restart
        self.config_sha = self._file_sha()
        for body in self._pending_events:
            self._spawn_event(body)
        self._pending_events.clear()
        if self.state.phase == "trial" and self._on_trial():
            if self._task is not None:
                self._task.cancel()  # a reload inside the window: the window starts again on the new gateway
            self._task = asyncio.create_task(self._watch(gateway), name="rollout-watch")

    def _on_trial(self) -> bool:
        """Is what runs now the configuration or release on trial?"""
        if self.state.kind == "update":
            return self.state.to_version == inv.software_version()
        return self.state.sha256 == self.config_sha

    def inventory(self) -> dict[str, Any]:
        state = self.state
        if state.kind == "update":
            label = state.config_label
        else:
            label = state.label if state.sha256 == self.config_sha and state.phase in ("trial", "committed") else None
        modems = [{"link": slot.config.name, "type": slot.config.type,
                   **(slot.link.modem_identity() if isinstance(slot.link, IdentifiedModem) else {})}
                  for slot in (self._gateway.satellites if self._gateway else [])]
        return inv.inventory(self.config_sha, label, modems, state.summary())

    # ---- the commands ----

    async def chunk(self, sha256: str, index: int, total: int, data: str) -> dict[str, Any]:
        progress = await asyncio.to_thread(staging.receive_chunk, self.store, sha256, index, total, data)
        result: dict[str, Any] = {"sha256": sha256, "received": progress.received, "total": progress.total}
        if not progress.complete:
            return result
        body = await asyncio.to_thread(staging.assemble, self.store, progress)
        config, problems = await asyncio.to_thread(staging.validate, body, str(self.config_path))
        if self.idle():
            self.state = RolloutState(phase="staged" if config else "refused", sha256=sha256,
                                      reason="; ".join(problems[:3]), history=self.state.history)
            await asyncio.to_thread(self.store.save, self.state)
        await self.event("staged" if config else "invalid", {"problems": problems[:10]})
        return {**result, "staged": config is not None, "problems": problems[:10]}

    async def apply(self, sha256: str, label: str | None, window_s: float, max_wait_s: float,
                    signatures: list[OperatorSignature], command_id: int | None) -> dict[str, Any]:
        async with self._one_apply:
            return await self._apply(sha256, label, window_s, max_wait_s, signatures, command_id)

    async def _apply(self, sha256: str, label: str | None, window_s: float, max_wait_s: float,
                     signatures: list[OperatorSignature], command_id: int | None) -> dict[str, Any]:
        gw = self._gateway
        if gw is None or self._restart is None:
            raise CommandFailed("no roll-out on this gateway: it was not started by `fieldgate run`")
        if not self.idle() or self.state.phase in ("waiting", "trial"):
            raise CommandFailed(f"a roll-out is in progress ({self.state.phase} {self.state.sha256})")
        try:
            body = self.store.staged_path.read_bytes()
        except OSError:
            raise CommandFailed("nothing is staged: send the file with config_chunk first") from None
        if sha256_hex(body) != sha256:
            raise CommandFailed("the staged file is not the one named (its sha256 differs): send it again")
        if sha256 == self.config_sha:
            raise CommandFailed("this file is the running configuration already")
        config, problems = await asyncio.to_thread(staging.validate, body, str(self.config_path))
        concerned = config is not None and staging.changes_broadcast(gw.config, config)
        refused = "; ".join(problems[:3]) if config is None else staging.refusal(gw.config, config, sha256,
                                                                                  signatures, self._clock())
        self.state = RolloutState(phase="waiting", sha256=sha256, label=label, previous_sha256=self.config_sha,
                                  command_id=command_id, window_s=window_s, history=self.state.history)
        if refused is not None or config is None:
            self.finish("refused", refused or "invalid")
            await self.event("refused", {"broadcast": concerned}, concerned)
            raise CommandFailed(f"roll-out refused: {refused}")
        await asyncio.to_thread(self.store.save, self.state)
        waiting = unsafe_reason(gw)
        self.start_task(self._wait_and_apply(config, body, max_wait_s, concerned), "rollout-apply", concerned)
        return {"sha256": sha256, "label": label, "window_s": window_s, "broadcast_change": concerned,
                "waiting": waiting, "max_wait_s": max_wait_s}

    async def update_chunk(self, sha256: str, index: int, total: int, data: str) -> dict[str, Any]:
        return await self.releases.chunk(sha256, index, total, data)

    async def update_apply(self, sha256: str, window_s: float, max_wait_s: float,
                           command_id: int | None) -> dict[str, Any]:
        async with self._one_apply:
            return await self.releases.apply(sha256, window_s, max_wait_s, command_id)

    # ---- the steps ----

    def start_task(self, steps: Coroutine[Any, Any, None], name: str, concerned: bool) -> None:
        async def run() -> None:
            try:
                await steps
            except Exception as exc:  # a failed step must leave a clear state, never a roll-out stuck half-way
                log.exception("roll-out %s failed", self.state.sha256)
                if self.state.phase == "trial":
                    await self._roll_back(f"applying failed: {exc!r}"[:300])
                else:
                    self.finish("refused", f"applying failed: {exc!r}"[:300])
                    await self.event("refused", {}, concerned)
        self._task = asyncio.create_task(run(), name=name)


    async def _wait_and_apply(self, config: SiteConfig, body: bytes, max_wait_s: float, concerned: bool) -> None:
        async def act(gw: RolloutGateway, waited_s: float) -> bool:
            previous = await asyncio.to_thread(self.config_path.read_bytes)
            await asyncio.to_thread(self.store.write_file, self.store.previous_path, previous)
            mode = self.config_path.stat().st_mode & 0o777
            await asyncio.to_thread(write_atomic, self.config_path, body, mode)
            # Checked again with no await between this check and the restart: an alarm raised while the
            # files were written puts the running file back and waits again.
            if unsafe_reason(gw) is not None:
                write_atomic(self.config_path, previous, mode)
                return False
            self.enter_trial(gw)
            log.warning("roll-out %s (%s): applying; health window %.0f s", self.state.sha256,
                        self.state.label, self.state.window_s)
            # Journalled by the next gateway (this one's journal closes with the restart).
            self._pending_events.append(self._body("applying", {
                "waited_s": round(waited_s, 1), "baseline": self.state.baseline}))
            self._task = None
            assert self._restart is not None
            self._restart(config)
            return True

        await self.when_safe(max_wait_s, concerned, act)

    async def when_safe(self, max_wait_s: float, concerned: bool,
                         act: Callable[[RolloutGateway, float], Awaitable[bool]]) -> bool:
        """Wait (bounded, each reason recorded) until nothing forbids a restart, then ``act``; it returns
        False when it found the moment gone at its last check, and the wait goes on. False: refused."""
        started = time.monotonic()
        said: str | None = None
        while True:
            gw = self._gateway
            assert gw is not None
            reason = unsafe_reason(gw)
            if reason is None:
                if await act(gw, time.monotonic() - started):
                    return True
                reason = unsafe_reason(gw) or "the safe moment passed"
            if reason != said:
                said = reason
                self.state.reason = f"waiting: {reason}"
                await asyncio.to_thread(self.store.save, self.state)
                await self.event("waiting", {"until_s": max_wait_s}, concerned)
            if time.monotonic() - started > max_wait_s:
                self.finish("refused", f"no safe moment within {max_wait_s:.0f} s: {reason}")
                await self.event("refused", {}, concerned)
                return False
            await asyncio.sleep(_SAFE_POLL_S)

    def enter_trial(self, gw: RolloutGateway) -> None:
        """Persisted before the restart (synchronously: nothing else runs in between)."""
        self.state.phase = "trial"
        self.state.reason = ""
        self.state.deadline = self._clock() + READY_TIMEOUT_S + self.state.window_s
        self.state.baseline = health_facts(gw)
        self.store.save(self.state)

    async def _watch(self, gw: RolloutGateway) -> None:
        try:
            await self._check_window(gw)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("roll-out %s: health check failed", self.state.sha256)
            await self._roll_back(f"the health check failed: {exc!r}"[:300])

    async def _check_window(self, gw: RolloutGateway) -> None:
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                await gw.ready.wait()
        except TimeoutError:
            await self._roll_back(f"the new configuration was not READY within {READY_TIMEOUT_S:.0f} s")
            return
        await asyncio.sleep(self.state.window_s)
        if self._gateway is not gw:
            return  # restarted meanwhile (by a reload): the next start decides
        problems = health_problems(self.state.baseline, gw)
        if problems:
            await self._roll_back("unhealthy at the end of the window: " + "; ".join(problems[:5]))
            return
        self.finish("committed", "")
        log.warning("roll-out %s (%s) committed", self.state.sha256, self.state.label)
        await self.event("committed", {}, self._concerned())
        self._task = None
        if self.state.kind == "update":
            await asyncio.to_thread(self.releases.clean)

    async def _roll_back(self, reason: str) -> None:
        if self.state.kind == "update":
            self._task = None
            await self.wait_to_restart(reason)
            self.releases.roll_back(reason)
            return
        previous = await asyncio.to_thread(self._restore_previous)
        self._task = None
        if previous is None:
            log.critical("roll-out %s: %s; rollback impossible (%s)", self.state.sha256, reason, self.state.reason)
            return
        await self.wait_to_restart(reason)
        self.finish("rolled_back", reason)
        log.error("roll-out %s rolled back: %s", self.state.sha256, reason)
        self._pending_events.append(self._body("rolled_back", {}))
        assert self._restart is not None
        self._restart(previous)

    async def wait_to_restart(self, reason: str) -> None:
        """Going back restarts the gateway too: it waits for a broadcast like the roll-out did."""
        gw = self._gateway
        said = None
        while gw is not None and (busy := unsafe_reason(gw)) is not None:
            if busy != said:
                said = busy
                await self.event("rollback_waiting", {"why": reason[:200], "waiting": busy}, self._concerned())
            await asyncio.sleep(_SAFE_POLL_S)
            gw = self._gateway

    def _restore_previous(self) -> SiteConfig | None:
        try:
            body = self.store.previous_path.read_bytes()
        except OSError as exc:
            self.state.reason = f"previous.yaml unreadable: {exc}"
            return None
        config, problems = staging.validate(body, str(self.config_path))
        if config is None:
            self.state.reason = f"previous file invalid: {'; '.join(problems[:2])}"
            return None
        write_atomic(self.config_path, body, self.config_path.stat().st_mode & 0o777)
        self.config_sha = sha256_hex(body)
        return config

    # ---- bookkeeping ----

    def finish(self, phase: str, reason: str) -> None:
        self.state.phase = phase  # type: ignore[assignment]  # one of the Phase literals, by the callers
        self.state.reason = reason
        self.state.deadline = None
        self.store.save(self.state)

    def _concerned(self) -> bool:
        gw = self._gateway
        return gw is not None and gw.broadcast is not None

    def idle(self) -> bool:
        return self._task is None or self._task.done()

    def _file_sha(self) -> str | None:
        try:
            return sha256_hex(self.config_path.read_bytes())
        except OSError:
            return None

    def _body(self, step: str, extra: dict[str, Any]) -> dict[str, Any]:
        s = self.state
        return {"step": step, "of": s.kind, "phase": s.phase, "sha256": s.sha256, "label": s.label,
                "previous_sha256": s.previous_sha256, "command_id": s.command_id, "reason": s.reason[:300], **extra}

    async def event(self, step: str, extra: dict[str, Any], concerned: bool = False) -> None:
        body = self._body(step, extra)
        gw = self._gateway
        if gw is None:
            self._pending_events.append(body)
            return
        await self._journal(gw, body, concerned)

    def _spawn_event(self, body: dict[str, Any]) -> None:
        gw = self._gateway
        assert gw is not None
        task = asyncio.get_running_loop().create_task(self._journal(gw, body, gw.broadcast is not None))
        self._events.add(task)
        task.add_done_callback(self._events.discard)

    async def _journal(self, gw: RolloutGateway, body: dict[str, Any], concerned: bool) -> None:
        try:
            await gw.journal.append_now(RecordClass.EVIDENCE, EventRecord("rollout", gw.config.gateway.id, body, now()))
            if concerned and gw.broadcast is not None:
                await gw.broadcast.note("config_rollout", body)  # the broadcast audit chain
        except Exception as exc:
            log.error("roll-out record not journalled (%r): %s", exc, body)
