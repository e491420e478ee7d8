"""The command router: commands that come back through the links, to the command plane and back.

MQTT command messages are screened as the link reads them (only signed commands of our issuers are
kept under a flood), admitted and audited by the command plane, run on their own, and answered on
the link they came by; satellite messages are decoded (compact format) into ACKs for the satellite
runner or commands, whose replies queue for the satellite.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.commands import CommandKeyError, CommandPlane, CommandTarget, ReplayCache, Reply, load_issuer_keys
from gateway.config.site import SiteConfig
from gateway.datapath import Background
from gateway.journal import AsyncJournal
from gateway.shared import EventRecord, RecordClass, now
from gateway.state import PrimarySlot, SatelliteSlot

if TYPE_CHECKING:
    from gateway.compact import CompactMessage
    from gateway.satellite import SatelliteRunner

log = logging.getLogger("fieldgate")


# A command plane whose replay cache could not open is tried again after 5 s, then twice as long each time, at
# most every minute: space a technician frees brings commands back within seconds; a full disk costs one try a minute.
PLANE_RETRY_FIRST_S = 5.0
PLANE_RETRY_MAX_S = 60.0


class CommandRouter:
    def __init__(self, config: SiteConfig, config_path: str | None, journal: AsyncJournal,
                 primaries: Sequence[PrimarySlot], satellites: Sequence[SatelliteSlot],
                 background: Background) -> None:
        self.config = config
        self.config_path = config_path
        self.journal = journal
        self.primaries = primaries  # filled by the gateway after the links are built with this router's hooks
        self.satellites = satellites
        self.commands: CommandPlane | None = None
        self._background = background
        self._retry: asyncio.TimerHandle | None = None
        self._failures = 0

    def close(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self.commands is not None:
            self.commands.close()

    def _primary(self, name: str) -> PrimarySlot:
        return next(slot for slot in self.primaries if slot.link.name == name)

    def _satellite_runner(self, name: str) -> SatelliteRunner | None:
        return next((slot.runner for slot in self.satellites if slot.link.name == name), None)

    def screen_command(self, link_name: str, topic: str, payload: bytes) -> bool:
        """Is this a command signed by one of our issuers? Asked by the link as each message is read."""
        if self.commands is None:
            return False
        profile = self._primary(link_name).profile
        if profile.name != "fieldgate":
            inbound = profile.decode_command(topic, payload)
            if inbound is None:
                return False
            payload = json.dumps(inbound.params).encode()
        return self.commands.screen(payload)

    async def on_mqtt_command(self, link_name: str, topic: str, payload: bytes) -> None:
        if self.commands is None:
            log.warning("command on %s ignored: the command plane is not running (see the start-up log)", topic)
            return
        profile = self._primary(link_name).profile
        inbound = None
        if profile.name != "fieldgate":
            # Other platforms' RPCs carry our signed envelope as their params; unsigned ones are refused.
            inbound = profile.decode_command(topic, payload)
            if inbound is None:
                return
            payload = json.dumps(inbound.params).encode()
        # Returns once the command is claimed and audited (or refused): the link then acknowledges it to
        # the broker; the action runs on its own, so a long command never holds up the next one.
        admission = await self.commands.admit_json(payload, via=f"mqtt:{link_name}", topic=topic)
        if admission.run is not None:
            self._background.spawn(self._run_mqtt_command(link_name, admission.run, inbound))
        elif admission.reply is not None and admission.publish:
            # Not awaited: the link reads no PUBACK while a flood of commands waits to be taken
            # (back-pressure), so waiting here for our reply's PUBACK would wait forever. Refusals
            # that are answered at all are few (rate-limited in the plane).
            self._background.spawn(self._publish_reply(link_name, admission.reply, inbound))

    async def _run_mqtt_command(self, link_name: str, run: Callable[[], Awaitable[Reply]], inbound: Any) -> None:
        await self._publish_reply(link_name, await run(), inbound)

    async def _publish_reply(self, link_name: str, reply: Reply, inbound: Any) -> None:
        slot = self._primary(link_name)
        suffix, body = ("reply", reply.payload()) if inbound is None else slot.profile.encode_reply(inbound,
                                                                                                   reply.to_json())
        try:
            await slot.link.publish_reply(suffix, body)
        except Exception as exc:  # the outcome is journalled (audit) even if the reply is lost
            log.warning("reply to command %s not published: %s", reply.id, exc)

    async def _on_satellite_command(self, link_name: str, message: CompactMessage) -> None:
        if self.commands is None:
            log.warning("satellite %s: command ignored: the command plane is not running", link_name)
            return
        reply = await self.commands.handle_compact(message, via=link_name)
        runner = self._satellite_runner(link_name)
        queued = runner is not None and runner.queue_reply(reply, message)
        log.info("satellite %s: command %s → %s (reply %s)", link_name, reply.id, reply.status,
                 "queued for the satellite" if queued else "only in the journal's audit record")

    async def _journal_command(self, record: dict[str, Any]) -> None:
        event = EventRecord("command", str(record.get("id")), record, float(record.get("ts", now())))
        await self.journal.append_now(RecordClass.EVIDENCE, event)

    def start(self, target: CommandTarget) -> None:
        cfg = self.config.commands
        if not cfg.issuers:
            return
        base = Path(self.config_path).parent if self.config_path else Path.cwd()
        self._retry = None
        try:
            self.commands = CommandPlane(
                cfg, gateway_id=self.config.gateway.id, keys=load_issuer_keys(cfg, base), target=target,
                on_audit=self._journal_command,
                replay=ReplayCache(cfg.replay_cache_path(self.config.gateway.state_dir),
                                   max_entries=cfg.replay_cache_size, max_clock_skew=cfg.max_clock_skew),
                gateway_number=self.config.satellite.gateway_number)
        except (CommandKeyError, ValueError) as exc:
            # Polling, alarms and the siren must run even if the command keys are broken.
            log.error("command plane NOT started: %s; commands will be ignored until this is fixed", exc)
        except (OSError, sqlite3.Error) as exc:
            # The replay cache cannot open (a full or failing state disk): no command may run unclaimed, so the
            # plane stays off, and polling, alarms and the siren go on; it is tried again while the gateway runs,
            # as the journal is, so that space freed on the disk brings commands (a cancel too) back.
            self._failures += 1
            if self._failures == 1:
                log.error("command plane NOT started: %s; commands will be ignored until it opens (tried again "
                          "from %.0f s to every %.0f s)", exc, PLANE_RETRY_FIRST_S, PLANE_RETRY_MAX_S)
            delay = min(PLANE_RETRY_MAX_S, PLANE_RETRY_FIRST_S * 2 ** min(self._failures - 1, 8))
            self._retry = asyncio.get_running_loop().call_later(delay, self.start, target)
        else:
            if self._failures:
                log.warning("command plane started after %d failed attempts", self._failures)
            self._failures = 0

    def on_satellite_message(self, link_name: str, data: bytes) -> None:
        """An incoming satellite message (called from the link's reader, on the event loop)."""
        from gateway.compact import AliasTable, CompactDecodeError, MessageKind
        from gateway.compact import decode as decode_compact

        try:
            message = decode_compact(data, AliasTable(self.config.satellite.aliases))
        except CompactDecodeError as exc:
            log.warning("satellite %s: undecodable incoming message (%d bytes): %s", link_name, len(data), exc,
                        extra={"link": link_name})
            return
        runner = self._satellite_runner(link_name)
        if message.kind is MessageKind.ACK and runner is not None:
            self._background.spawn(runner.handle_incoming(message))
        elif message.kind is MessageKind.COMMAND:
            self._background.spawn(self._on_satellite_command(link_name, message))
        else:
            log.info("satellite %s: incoming %s message ignored", link_name, message.kind.name,
                     extra={"link": link_name})
