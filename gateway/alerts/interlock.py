"""The safety interlock: every alert passes here before any output moves.

Lessons from the Hawaii false alarm (13 Jan 2018): status is data carried by every alert, not a
mode; Test never drives outdoor sirens; Exercise only inside a scheduled window and announced as
such; a manual Actual alert needs two people; automatic triggers come only from pre-approved
rules on trusted data; rate limits per zone; a bounded activation length.
"""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.alerts.audit import History
from gateway.alerts.config import BroadcastConfig
from gateway.alerts.contract import Activation, Cadence
from gateway.alerts.model import Alert, MsgType, Origin, Status
from gateway.alerts.restore import (
    LOOKBACK_RECORDS,
    ChainTime,
    HistoryStart,
    Horizon,
    Lookback,
    activation_zones,
    original,
    stamp_of,
)
from gateway.alerts.signing import MAX_FUTURE_SKEW_S, Keyring, OperatorSignature, SignatureRefused
from gateway.bootclock import Stamp, this_boot
from gateway.contracts import BusSettings
from gateway.i18n import N_
from gateway.registry import relay_board_problems, relay_board_units
from gateway.rules.config import FAULT_RULE_TYPES, RulesConfig
from gateway.rules.engine import AlarmClass, AlarmTransition
from gateway.shared import ConfigPath, PlacedConfigError

_SEEN_IDS = 10_000  # replay protection memory, bounded


def check_site_plan(rules: RulesConfig, broadcast: BroadcastConfig) -> None:
    """Cross-section check for the site config: plan entries name existing process rules."""
    by_id = rules.by_id()
    problems: list[tuple[ConfigPath, str]] = []
    for index, entry in enumerate(broadcast.automatic):
        rule = by_id.get(entry.rule)
        where: ConfigPath = ("broadcast", "automatic", index, "rule")
        if rule is None:
            problems.append((where, f"unknown rule '{entry.rule}'"))
        elif rule.type in FAULT_RULE_TYPES:
            problems.append((where, f"rule '{entry.rule}' is a {rule.type} fault rule; "
                             "a fault alarm never drives a broadcast"))
    if problems:
        raise PlacedConfigError(problems)


def check_bus_boards(broadcast: BroadcastConfig, buses: Sequence[Any]) -> None:
    """Cross-section check for the site config: relay boards against the buses that own the lines.

    A ``board: {transport: bus}`` relay needs its coil (and auto-off register) configured as
    points of that bus's unit; a board with its own master must not open a bus's port.
    """
    problems = relay_board_problems(broadcast.outputs, buses)
    if problems:
        raise PlacedConfigError([(("broadcast", "outputs", *path), message) for path, message in problems])


def check_write_points(write_points: Sequence[str], broadcast: BroadcastConfig, buses: Sequence[Any]) -> None:
    """Cross-section check: ``commands.write_points`` never names a point of a broadcast relay board.

    A siren coil, an amplifier coil or a board's auto-off register written by ``write_point``
    would switch a public-alarm output with no interlock decision, no audit record and no
    maximum activation. Every point of such a unit is refused, not only the configured coils:
    boards have "all relays" and mode registers too.
    """
    owners = point_owners(broadcast, buses)
    problems: list[tuple[ConfigPath, str]] = []
    for index, point in enumerate(write_points):
        outputs = owners.get(point)
        if outputs:
            problems.append((("commands", "write_points", index),
                             f"'{point}' is on the relay board of broadcast output(s) {', '.join(outputs)}; "
                             "a public-alarm output is switched only through the interlock (trigger_broadcast "
                             "with the operators' signatures, or a rule in broadcast.automatic)"))
    if problems:
        raise PlacedConfigError(problems)


def point_owners(broadcast: BroadcastConfig, buses: Sequence[BusSettings]) -> dict[str, list[str]]:
    """Point id -> the broadcast outputs whose relay board is the unit the point belongs to."""
    units = relay_board_units(broadcast.outputs, buses)
    owners: dict[str, list[str]] = {}
    for bus in buses:
        for device in bus.devices:
            outputs = units.get((bus.name, device.unit_id)) if device.unit_id is not None else None
            if outputs:
                for point in device.points:
                    owners[point.id] = sorted(set(outputs))
    return owners


@dataclass(frozen=True)
class Decision:
    accepted: bool
    reason: str
    activations: dict[str, Activation] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # output -> why it stays silent
    signers: tuple[str, ...] = ()
    claimed: bool = False  # the alert's identifier is used up (a replay of it is refused)


# How far back on the wall clock the interlock's memory reaches after a restart or reload for the used alert ids:
# a signed request can be replayed only while its signatures are fresh (two_person_window <= 1 h, plus the future
# skew a signature may have). The rate limits read further, by the chain's order (Interlock.lookback).
HISTORY_S = 3600.0 + MAX_FUTURE_SKEW_S


def required_signatures(alert: Alert) -> int:
    """Operator signatures an alert from outside the rule engine needs, whatever way it came in.

    Actual needs two people (the Hawaii lesson); a Cancel needs one, whatever the status it
    cancels, because a cancel that cannot be given quickly is itself a hazard; Exercise and
    Test need one.
    """
    if alert.msg_type is MsgType.CANCEL:
        return 1
    return 2 if alert.status is Status.ACTUAL else 1


class ZoneRateLimiter:
    """Activations per zone, each stamped with the wall clock (the audit chain's, shared with the next start) and
    the monotonic time it was counted at. An activation's age is the smaller of its wall and monotonic ages (the
    monotonic one alone when the wall clock was stepped back past it): a step either way never frees the minimum
    interval or the hourly cap early, only real elapsed time does; a step back holds a zone for no longer than the
    limits themselves (the chaos soak's clock steps of an hour, issue 14; docs/durability.md, Clock steps).

    Activations rebuilt from the audit chain at a start (``restored``) keep their own monotonic stamp when they
    were made in this boot, so a restart changes nothing, whatever the clock did before it; those of another boot
    are counted as made ``now - at`` ago, ``at`` as gateway/alerts/restore.py estimates it (what that leaves open:
    a forward step after the previous boot's last audit record). A cancel waives the minimum interval for people
    when it came *after* the zone's last activation, by the order of events (the chain's order on a restore),
    never by comparing clocks: a step back between the two would put the cancel first on the wall clock, and a
    step back larger than the time between them does the same to any pair of ages.
    """

    def __init__(self, min_interval: float, max_per_hour: int,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.min_interval = min_interval
        self.max_per_hour = max_per_hour
        self.monotonic = monotonic
        # zone -> (wall, monotonic, order) of its last activations
        self._times: dict[str, collections.deque[tuple[float, float, int]]] = {}
        self._stopped: dict[str, int] = {}  # zone -> the order of the cancel that last stopped its outputs
        self._order = itertools.count()  # events in the order they happened (live, or replayed from the chain)

    def problem(self, zones: Iterable[str], now: float, *, by_people: bool = False) -> str | None:
        """Why ``zones`` may not sound now, or None.

        The minimum interval is waived for an alert from people (operators' signatures) once the
        zone's last activation was cancelled: otherwise a cancel given by mistake, or by a stolen
        platform key, would keep the operators from sounding the zone again for ``min_interval``.
        The hourly cap always holds.
        """
        for zone in zones:
            times = self._times.get(zone)
            if not times:
                continue
            waived = by_people and self._stopped.get(zone, -1) > times[-1][2]
            age = self._age(times[-1], now)
            if age < self.min_interval and not waived:
                return f"zone {zone}: last activation {age:.0f} s ago (< {self.min_interval:.0f} s)"
            if sum(1 for t in times if self._age(t, now) < 3600) >= self.max_per_hour:
                return f"zone {zone}: {self.max_per_hour} activations in the last hour"
        return None

    def _age(self, activation: tuple[float, float, int], now: float) -> float:
        wall, counted, _ = activation
        real = max(0.0, self.monotonic() - counted)
        wall_age = now - wall
        return real if wall_age < 0 else min(wall_age, real)  # a step either way never ages it early

    def commit(self, zones: Iterable[str], now: float) -> None:
        self._count(zones, now, self.monotonic())

    def restored(self, zones: Iterable[str], at: float, now: float, monotonic: float | None = None) -> None:
        """An activation read back from the audit chain, in the chain's order: ``monotonic`` is its own stamp when
        it was made in this boot; without one it was made ``now - at`` ago (none of this boot's clock)."""
        self._count(zones, at, monotonic if monotonic is not None else self.monotonic() - max(0.0, now - at))

    def _count(self, zones: Iterable[str], at: float, counted: float) -> None:
        order = next(self._order)
        for zone in zones:
            self._times.setdefault(zone, collections.deque(maxlen=self.max_per_hour)).append((at, counted, order))

    def stopped(self, zones: Iterable[str]) -> None:
        """A cancel stopped these zones' outputs (now, or at this point of the chain on a restore)."""
        order = next(self._order)
        for zone in zones:
            self._stopped[zone] = order


class Interlock:
    def __init__(self, config: BroadcastConfig, monotonic: Callable[[], float] = time.monotonic,
                 boot: str | None = None) -> None:
        self.config = config
        self.keyring = Keyring(config.operators)
        self.limiter = ZoneRateLimiter(config.rate_limit.min_interval, config.rate_limit.max_per_hour, monotonic)
        self.boot = boot or this_boot()  # stamped on the audit records the next start rebuilds the limits from
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._plan = {entry.rule: entry for entry in config.automatic}
        # Alerts from people sent before it are refused: the history before it is unknown (see restore). None: the
        # audit chain reaches back past the horizon, nothing is unknown.
        self.history_start: HistoryStart | None = None

    def stamp(self, now: float) -> dict[str, Any]:
        """The clocks an audit record is taken on, for the next start (gateway/alerts/restore.py)."""
        return {"at": round(now, 3), "mono": round(self.limiter.monotonic(), 3), "boot": self.boot}

    def lookback(self, now: float) -> Lookback:
        """How far back the audit chain is read at start (``now``) for the rate limits and the used alert ids: at
        least until a record made before ``HISTORY_S`` ago, on the clocks it was made on (restore.Horizon)."""
        return Lookback(self.config.zones, self.limiter.max_per_hour, self.boot, self.limiter.monotonic(),
                        self._horizon(now, self.limiter.monotonic()))

    def _horizon(self, now: float, monotonic_now: float) -> Horizon:
        return Horizon(now - HISTORY_S, monotonic_now - HISTORY_S, self.boot)

    def restore(self, history: History, now: float) -> None:
        """Rebuild the rate limits and the used alert ids from the audit chain (restart, reload).

        Without this a restart forgot both, and the same two-signed request sounded again seconds
        later. Where the chain does not reach back far enough (new, lost or unreadable), alerts from
        people that were sent before what the chain knows are refused: they may have been played.
        ``now`` is the wall clock at the start; how old each record is: gateway/alerts/restore.py.

        Where that history begins is kept on both clocks (the chain's oldest record's stamp, or this start's
        when the chain is empty) and taken on the wall clock at each decision, moved by the clock's steps
        since (restore.HistoryStart): a clock that was ahead when the stamp was taken, then set back by NTP,
        would otherwise refuse every alert from people, a new one too, until the true time passed the stamp.
        Across a reboot no monotonic time compares: the stamp stays as written, but the history never begins
        after this start, so an alert drafted after the start is never refused on this ground.
        """
        records = [original(record) for record in history.records]
        chain_time = ChainTime(records, self.boot)
        monotonic_now = self.limiter.monotonic()
        for record in records:
            stamp = stamp_of(record)
            estimated = chain_time.at(stamp)
            data = record.get("data")
            if not isinstance(data, dict):
                continue
            if stamp.boot == self.boot and stamp.mono is not None and stamp.mono <= monotonic_now:
                self._replay(record, data, stamp.at, now, stamp.mono)  # this boot: its own monotonic stamp
            else:
                self._replay(record, data, estimated, now, None)
        # Complete when a record made before the horizon was read, judged on its clocks (not ``history.complete``,
        # the wall stamps' verdict: a forward step since made a young chain look complete). A read cut off at
        # LOOKBACK_RECORDS without such a record (the record that passed the wall horizon is then not kept) has
        # only the wall verdict, as before.
        complete = self._horizon(now, monotonic_now).reached(records) or (
            len(records) >= LOOKBACK_RECORDS and history.complete)
        start = Stamp(now, monotonic_now, self.boot)
        self.history_start = None if complete else HistoryStart(stamp_of(records[0]) if records else None, start)

    def _replay(self, record: dict[str, Any], data: dict[str, Any], at: float, now: float,
                monotonic: float | None) -> None:
        """One audit record's part in the interlock's memory (see restore)."""
        if record.get("kind") == "stopped":
            self.limiter.stopped([z for z in data.get("zones", []) if isinstance(z, str)])
            return
        alert = data.get("alert")
        if record.get("kind") != "decision" or not isinstance(alert, dict):
            return
        identifier = alert.get("identifier")
        if data.get("claimed") and isinstance(identifier, str):
            self._remember(identifier)
        zones = activation_zones(record)
        if zones:
            self.limiter.restored(zones, at, now, monotonic)

    def decide(
        self,
        alert: Alert,
        origin: Origin,
        now: float,
        signatures: Iterable[OperatorSignature] = (),
        alarm: AlarmTransition | None = None,
    ) -> Decision:
        signers: tuple[str, ...] = ()
        try:
            self._common(alert, now)
            if origin == "rule":
                self._automatic(alert, alarm)
            else:
                # Every other way in (the inbox, a platform command, anything added later) is a person's
                # decision and carries operators' signatures over this alert: a platform key proves only
                # that the platform sent the request, never that two operators decided it.
                if alert.source == "rule":
                    raise _Refused(N_("an alert claiming source 'rule' arrived from outside the rule engine"))
                self._after_history_begins(alert, now)
                signers = tuple(self.keyring.require(alert, signatures, required_signatures(alert),
                                                     self.config.two_person_window, now))
            if alert.msg_type is not MsgType.CANCEL:
                self._status_window(alert, now)
                limited = self.limiter.problem(alert.areas, now, by_people=origin != "rule")
                if limited:
                    raise _Refused(f"rate limit: {limited}")
        except (_Refused, SignatureRefused) as exc:
            return Decision(False, str(exc), signers=signers)
        self._remember(alert.identifier)
        if alert.msg_type is MsgType.CANCEL:
            return Decision(True, N_("cancel"), signers=signers, claimed=True)
        activations, skipped = self.plan_outputs(alert)
        if not activations:
            return Decision(False, "no output may sound for this alert: " + "; ".join(
                f"{k}: {v}" for k, v in skipped.items()), skipped=skipped, signers=signers, claimed=True)
        self.limiter.commit(alert.areas, now)
        return Decision(True, N_("accepted"), activations, skipped, signers, claimed=True)

    def _common(self, alert: Alert, now: float) -> None:
        if alert.status in (Status.DRAFT, Status.SYSTEM):
            raise _Refused(f"status {alert.status.value} is never broadcast")
        if alert.identifier in self._seen:
            raise _Refused(f"duplicate identifier {alert.identifier} (replay)")
        if alert.expires is not None and alert.expires.timestamp() <= now:
            raise _Refused(N_("alert has expired"))
        if alert.sent.timestamp() > now + self.config.max_clock_skew:
            raise _Refused(N_("alert 'sent' lies in the future beyond the allowed clock skew"))
        unknown = [zone for zone in alert.areas if zone not in self.config.zones]
        if unknown:
            raise _Refused(f"unknown zone(s): {', '.join(unknown)}")
        missing = [clip for clip in alert.resources if clip not in self.config.clips]
        if missing:
            raise _Refused(f"unknown clip(s): {', '.join(missing)}")

    def _after_history_begins(self, alert: Alert, now: float) -> None:
        """Refuse an alert from people drafted before the broadcast history begins: it may have been played
        before (state wiped, chain replaced) and its identifier cannot be checked. The moment is taken on the
        clock as it reads now (see restore); the reason says when that is, and whether the clock was set back
        since it was noted (then only an alert drafted before this start can be refused on this ground)."""
        start = self.history_start
        if start is None:
            return
        begins = start.at(self.boot, now, self.limiter.monotonic())
        if alert.sent.timestamp() >= int(begins):
            return
        set_back = start.noted - begins
        clock = (f"; the gateway's clock has been set back, by {set_back:.0f} s at least, since that moment was "
                 f"noted as {_utc(start.noted)}") if set_back >= 1.0 else ""
        raise _Refused(f"alert sent before this gateway's broadcast history begins (sent {_utc(alert.sent.timestamp())}"
                       f"; the history begins {_utc(begins)} on the gateway's clock now{clock}); it may have been "
                       "played already: issue a new alert, drafted and signed now")

    def _automatic(self, alert: Alert, alarm: AlarmTransition | None) -> None:
        if alarm is None or alert.rule_id is None or alert.rule_id not in self._plan:
            raise _Refused(N_("automatic trigger from a rule that is not in the site plan"))
        if alarm.alarm_class is not AlarmClass.PROCESS:
            raise _Refused(N_("a fault alarm (stale / comm-fail / read-back) never triggers a broadcast"))
        if not alarm.trusted:
            raise _Refused(N_("the alarm rests on a reading whose quality is not good"))
        entry = self._plan[alert.rule_id]
        if not set(alert.areas) <= set(entry.zones):
            raise _Refused(N_("automatic alert reaches beyond the zones the site plan allows"))

    def _status_window(self, alert: Alert, now: float) -> None:
        if alert.status is not Status.EXERCISE:
            return
        moment = dt.datetime.fromtimestamp(now, dt.UTC)
        if not any(w.start <= moment < w.end for w in self.config.exercise_windows):
            raise _Refused(N_("Exercise alerts sound only inside a scheduled exercise window"))

    def _remember(self, identifier: str) -> None:
        self._seen[identifier] = None
        while len(self._seen) > _SEEN_IDS:
            self._seen.popitem(last=False)

    def plan_outputs(self, alert: Alert) -> tuple[dict[str, Activation], dict[str, str]]:
        """Which outputs sound, with which clips and pattern, for this alert's status."""
        config = self.config
        clips = self.status_clips(alert.status, [config.clips[c].file for c in alert.resources])
        activations: dict[str, Activation] = {}
        skipped: dict[str, str] = {}
        zones_of: dict[str, list[str]] = {}
        for zone in alert.areas:
            for output in config.zones[zone].outputs:
                zones_of.setdefault(output, []).append(zone)
        for output, zones in zones_of.items():
            spec = config.outputs[output]
            cadence = None
            if spec.is_siren:
                if alert.status is Status.TEST and spec.outdoor:
                    skipped[output] = N_("Test never drives an outdoor siren")
                    continue
                cadence = self._cadence(alert.status)
                if cadence is None:
                    skipped[output] = f"no siren pattern for status {alert.status.value}"
                    continue
            elif not clips and not alert.tts:
                skipped[output] = N_("no clip for a speaker")
                continue
            activations[output] = Activation(
                alert_id=alert.identifier,
                status=alert.status.value,
                zones=tuple(zones),
                clips=tuple(Path(c) for c in clips) if not spec.is_siren else (),
                tts_text=alert.tts if not spec.is_siren else None,
                cadence=cadence,
                max_activation_s=config.max_activation,
            )
        return activations, skipped

    def status_clips(self, status: Status, files: list[str]) -> list[str]:
        """Exercise and Test messages are always announced as such, first."""
        announce = self.config.announce
        if announce is not None and status in (Status.EXERCISE, Status.TEST):
            prefix = announce.exercise if status is Status.EXERCISE else announce.test
            return [self.config.clips[prefix].file, *files]
        return files

    def _cadence(self, status: Status) -> Cadence | None:
        sp = self.config.status_patterns
        if sp is None:
            return None
        name = {Status.ACTUAL: sp.actual, Status.EXERCISE: sp.exercise, Status.TEST: sp.test}.get(status)
        if name is None:
            return None
        pattern = self.config.patterns[name]
        return Cadence(name, tuple(pattern.steps), pattern.repeat)


class _Refused(Exception):
    pass


def _utc(moment: float) -> str:
    return f"{dt.datetime.fromtimestamp(moment, dt.UTC):%Y-%m-%d %H:%M:%S} UTC"
