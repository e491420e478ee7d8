"""`fieldgate run`: the daemon's lifecycle under systemd (notify, watchdog, reload, stop).

SIGTERM/SIGINT: stop polling, flush the journal, publish offline status, exit 0.
SIGHUP or the signed ``reload_config`` command: re-read and validate the config file (off the
event loop, so polling and the siren go on); if it is valid, the running gateway is stopped
cleanly and a new one starts on the new config (journal, seq and pending records carry over,
since they live in the journal file). A reload that fails for any reason (an invalid or hostile
file, an unreadable one, a defect in the loader) keeps the running config and says why: in the
log, and for the command in its reply and audit record.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import signal
from functools import partial
from typing import Any

from gateway.app import Gateway
from gateway.commands import CommandFailed
from gateway.config import ConfigError, SiteConfig, load_site
from gateway.fleet.rollout import RolloutManager
from gateway.rules import RuleEngine
from gateway.shared import Progress
from gateway.systemd import LivenessSupervisor, LoopHandle

log = logging.getLogger("fieldgate")


async def serve(config_path: str, config: SiteConfig) -> int:
    """Runs until stopped; the exit code: 0, or RESTART_EXIT after a software update switched releases."""
    supervisor = LivenessSupervisor.from_env()
    watchdog = asyncio.create_task(supervisor.run(), name="watchdog")
    shutdown = asyncio.Event()
    reloads = Reloads(config_path, supervisor)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, shutdown.set)
    loop.add_signal_handler(signal.SIGHUP, reloads.signalled.set)
    previous: Gateway | None = None
    fleet = RolloutManager(config_path, config)
    exit_code = 0

    def exit_for_switch() -> None:  # a release was switched (gateway/fleet/release.py): systemd starts it
        from gateway.fleet.updates import RESTART_EXIT  # loaded with the update that switched

        nonlocal exit_code
        exit_code = RESTART_EXIT
        shutdown.set()

    fleet.exit_for_switch = exit_for_switch
    config = fleet.recover(config)  # a roll-out left on trial (crash, power cut) goes back first
    try:
        while True:
            handles: list[LoopHandle] = []
            progress = partial(_register, supervisor, handles)
            gateway = Gateway(config, progress_factory=progress, config_path=config_path,
                              loop_states=partial(_loop_states, supervisor), rules=carried_rules(previous, config))
            gateway.control.reload = reloads.command
            gateway.control.fleet = fleet
            gateway.inventory_source = fleet.inventory
            fleet.attach(gateway, reloads.restart_on)
            stop = asyncio.Event()
            run = asyncio.create_task(gateway.run(stop), name="gateway")
            announce = asyncio.create_task(_announce_ready(gateway, supervisor))
            new_config = await _wait_for_stop_or_valid_reload(reloads, shutdown, run)
            if new_config is None:
                supervisor.stopping("stopping: flushing journal, publishing offline status")
            gateway.reloading = new_config is not None
            stop.set()
            await run
            announce.cancel()
            for handle in handles:
                handle.retire()
            if new_config is None:
                return exit_code
            config, previous = new_config, gateway
            log.info("configuration reloaded from %s", config_path)
    finally:
        watchdog.cancel()


class Reloads:
    """Requests to re-read the config (SIGHUP, the reload_config command) and what became of them."""

    def __init__(self, config_path: str, supervisor: LivenessSupervisor) -> None:
        self.config_path = config_path
        self.notifier = supervisor.notifier
        self.signalled = asyncio.Event()  # SIGHUP
        self.accepted = asyncio.Event()  # a command's reload passed validation: apply self.config
        self.config: SiteConfig | None = None
        self._one_at_a_time = asyncio.Lock()

    async def attempt(self) -> SiteConfig | None:
        """The new config, or None (the reason logged) to keep the running one."""
        config, problems = await self._load()
        return config if not problems else None

    async def command(self) -> dict[str, Any]:
        """The reload_config command: its reply (and audit record) carries the outcome."""
        config, problems = await self._load()
        if config is None:
            raise CommandFailed(f"reload refused, keeping the running configuration: {'; '.join(problems[:3])}")
        self.config = config
        self.accepted.set()
        return {"reloading": True, "config": self.config_path}

    def restart_on(self, config: SiteConfig) -> None:
        """A roll-out applies ``config`` (or rolls back to it): restart the gateway on it now."""
        self.config = config
        self.accepted.set()

    def take(self) -> SiteConfig | None:
        config, self.config = self.config, None
        self.accepted.clear()
        return config

    async def _load(self) -> tuple[SiteConfig | None, list[str]]:
        async with self._one_at_a_time:
            with self.notifier.reload(f"reloading {self.config_path}"):
                config, problems = await asyncio.to_thread(load_for_reload, self.config_path)
        if config is None:
            log.error("reload refused, keeping the running configuration; %d problem(s) in %s:",
                      len(problems), self.config_path)
            for line in problems:
                log.error("  %s", line)
        return config, problems


def load_for_reload(config_path: str) -> tuple[SiteConfig | None, list[str]]:
    """(config, []) or (None, the reasons): whatever goes wrong, the running site must not go down with it."""
    try:
        return load_site(config_path), []
    except ConfigError as exc:
        return None, exc.lines
    except Exception as exc:  # a defect in the loader: still a refused reload, not a dead daemon
        log.debug("loading %s for a reload failed", config_path, exc_info=True)
        return None, [f"{config_path}: could not be loaded: {type(exc).__name__}: {str(exc)[:200]}"]


def carried_rules(previous: Gateway | None, config: SiteConfig) -> RuleEngine | None:
    """A reload that leaves the rules alone keeps their state: an active alarm stays the same alarm
    (same id, cleared once, upstream) instead of being raised again under a new id."""
    if previous is not None and previous.config.rules == config.rules:
        return previous.rules
    return None


def _loop_states(supervisor: LivenessSupervisor) -> list[dict[str, object]]:
    late = {o.name for o in supervisor.overdue()}
    return [{"name": name, "overdue": name in late} for name in supervisor.loop_names]


def _register(supervisor: LivenessSupervisor, handles: list[LoopHandle], name: str, deadline: float) -> Progress:
    handle = supervisor.register(name, deadline)
    handles.append(handle)
    return handle


async def _announce_ready(gateway: Gateway, supervisor: LivenessSupervisor) -> None:
    await gateway.ready.wait()
    config = gateway.config
    ready = f"polling {len(config.buses)} buses, {len(config.links)} links, {len(config.rules.rules)} rules"
    degraded = gateway.degraded.status_text()
    supervisor.ready(f"{degraded}; {ready}" if degraded else ready)
    release_start_up_memory()
    while True:
        # Degraded modes show at once (systemctl status), the rest every 30 s.
        for _ in range(30):
            await asyncio.sleep(1)
            if gateway.degraded.status_text() != degraded:
                break
        snap = gateway.snapshot()
        links = ", ".join(f"{link['name']} {'up' if link['connected'] else 'DOWN'}" for link in snap["links"])
        degraded = gateway.degraded.status_text()
        text = f"points {len(snap['points'])}, alarms {len(snap['alarms'])}, links: {links or 'none'}"
        supervisor.set_status(f"{degraded}; {text}" if degraded else text)


def release_start_up_memory() -> None:
    """What start-up used once (the YAML's nodes and marks, the config models' schema building) back to the
    system: the garbage collected, then glibc's free heap pages returned (issue 18, bench/RESULTS.md)."""
    gc.collect()
    try:
        trim = ctypes.CDLL(None).malloc_trim  # glibc; another C library keeps its pages, nothing else changes
    except (OSError, AttributeError):
        return
    trim(0)


async def _wait_for_stop_or_valid_reload(
    reloads: Reloads, shutdown: asyncio.Event, run: asyncio.Task[None],
) -> SiteConfig | None:
    """None to shut down; a new, valid config to restart on."""
    while True:
        waiters = [asyncio.create_task(event.wait()) for event in (shutdown, reloads.signalled, reloads.accepted)]
        done, pending = await asyncio.wait([*waiters, run], return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            if task is not run:
                task.cancel()
        if run in done:
            run.result()  # a crash of the gateway itself propagates (systemd restarts us)
            return None
        if shutdown.is_set():
            return None
        if reloads.accepted.is_set():
            return reloads.take()
        reloads.signalled.clear()
        new_config = await reloads.attempt()
        if new_config is not None:
            return new_config
