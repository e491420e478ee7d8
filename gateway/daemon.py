"""`fieldgate run`: the daemon's lifecycle under systemd (notify, watchdog, reload, stop).

SIGTERM/SIGINT: stop polling, flush the journal, publish offline status, exit 0.
SIGHUP: re-read and validate the config file; if it is valid, the running gateway is
stopped cleanly and a new one starts on the new config (journal, seq and pending records
carry over, since they live in the journal file); if it is not, every error is logged and
the old config keeps running.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from functools import partial

from gateway.app import Gateway
from gateway.config import ConfigError, SiteConfig, load_site
from gateway.rules import RuleEngine
from gateway.shared import Progress
from gateway.systemd import LivenessSupervisor, LoopHandle

log = logging.getLogger("fieldgate")


async def serve(config_path: str, config: SiteConfig) -> None:
    supervisor = LivenessSupervisor.from_env()
    watchdog = asyncio.create_task(supervisor.run(), name="watchdog")
    shutdown = asyncio.Event()
    reload_requested = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, shutdown.set)
    loop.add_signal_handler(signal.SIGHUP, reload_requested.set)
    previous: Gateway | None = None
    try:
        while True:
            handles: list[LoopHandle] = []
            progress = partial(_register, supervisor, handles)
            gateway = Gateway(config, progress_factory=progress, config_path=config_path,
                              loop_states=partial(_loop_states, supervisor), rules=carried_rules(previous, config))
            stop = asyncio.Event()
            run = asyncio.create_task(gateway.run(stop), name="gateway")
            announce = asyncio.create_task(_announce_ready(gateway, supervisor))
            new_config = await _wait_for_stop_or_valid_reload(config_path, shutdown, reload_requested, supervisor, run)
            if new_config is None:
                supervisor.stopping("stopping: flushing journal, publishing offline status")
            gateway.reloading = new_config is not None
            stop.set()
            await run
            announce.cancel()
            for handle in handles:
                handle.retire()
            if new_config is None:
                return
            config, previous = new_config, gateway
            log.info("configuration reloaded from %s", config_path)
    finally:
        watchdog.cancel()


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
    supervisor.ready(f"polling {len(config.buses)} buses, {len(config.links)} links, {len(config.rules.rules)} rules")
    while True:
        await asyncio.sleep(30)
        snap = gateway.snapshot()
        links = ", ".join(f"{link['name']} {'up' if link['connected'] else 'DOWN'}" for link in snap["links"])
        supervisor.set_status(f"points {len(snap['points'])}, alarms {len(snap['alarms'])}, links: {links or 'none'}")


async def _wait_for_stop_or_valid_reload(
    config_path: str, shutdown: asyncio.Event, reload_requested: asyncio.Event,
    supervisor: LivenessSupervisor, run: asyncio.Task[None],
) -> SiteConfig | None:
    """None to shut down; a new, valid config to restart on."""
    while True:
        waiters = [asyncio.create_task(shutdown.wait()), asyncio.create_task(reload_requested.wait())]
        done, pending = await asyncio.wait([*waiters, run], return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            if task is not run:
                task.cancel()
        if run in done:
            run.result()  # a crash of the gateway itself propagates (systemd restarts us)
            return None
        if shutdown.is_set():
            return None
        reload_requested.clear()
        with supervisor.notifier.reload(f"reloading {config_path}"):
            try:
                return load_site(config_path)
            except ConfigError as exc:
                log.error("reload refused, keeping the running configuration; %d problem(s) in %s:",
                          len(exc.lines), config_path)
                for line in exc.lines:
                    log.error("  %s", line)
