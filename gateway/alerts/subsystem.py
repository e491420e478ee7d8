"""BroadcastSubsystem: interlock → concurrent dispatch to outputs → audit log + evidence upstream."""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from gateway.alerts.config import AutomaticTrigger, BroadcastConfig
from gateway.alerts.contract import Activation, BroadcastOutput, OutputResult
from gateway.alerts.fallback import AuditTrail
from gateway.alerts.interlock import HISTORY_S, Decision, Interlock
from gateway.alerts.model import Alert, MsgType, Origin, Status
from gateway.alerts.signing import OperatorSignature
from gateway.rules.engine import AlarmTransition, TransitionKind

EvidenceSink = Callable[[dict[str, Any]], Awaitable[None]]
_ACTIVE_MAX = 64  # alerts remembered for Cancel; the oldest drops first
_FAULTS_THAT_ALARM = frozenset({"readback_mismatch", "amplifier_readback_mismatch", "board_unreachable",
                                "amplifier_unreachable"})
log = logging.getLogger("fieldgate.alerts")
_PENDING_REPORTS_MAX = 256  # mid-activation reports waiting for the audit log; outputs send <= 2 per activation


class BroadcastSubsystem:
    def __init__(
        self,
        config: BroadcastConfig,
        audit: AuditTrail,
        outputs: Mapping[str, BroadcastOutput],
        on_evidence: EvidenceSink | None = None,
        on_fault_alarm: EvidenceSink | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        boot_id: str | None = None,
    ) -> None:
        missing = set(config.outputs) - set(outputs)
        if missing:
            raise ValueError(f"no output object for configured output(s): {', '.join(sorted(missing))}")
        self.config = config
        self.audit = audit
        self.outputs = dict(outputs)
        # The rate limits age on both clocks (ZoneRateLimiter); ``boot_id`` None: the kernel's (bootclock.this_boot).
        self.interlock = Interlock(config, monotonic, boot_id)
        now = clock()
        self.interlock.restore(audit.history(now - HISTORY_S, self.interlock.lookback(now)), now)
        self._on_evidence = on_evidence
        self._on_fault_alarm = on_fault_alarm
        self._clock = clock
        self._active: collections.OrderedDict[str, tuple[Alert, tuple[str, ...]]] = collections.OrderedDict()
        self._plan = {entry.rule: entry for entry in config.automatic}
        self._lock = asyncio.Lock()  # one decision at a time: rate limits and Cancel stay coherent
        self._reports: set[asyncio.Task[None]] = set()
        for output in self.outputs.values():
            # Outputs that work on after activate() (the siren's cadence) report faults and recoveries here.
            output.set_fault_listener(self._on_output_report)

    # ---- sources ----

    async def on_alarm(self, transition: AlarmTransition) -> list[OutputResult]:
        """Automatic path (rule engine). Only RAISED alarms of rules in the site plan sound."""
        entry = self._plan.get(transition.rule_id)
        if transition.kind is not TransitionKind.RAISED or entry is None:
            return []
        alert = self._automatic_alert(entry, transition)
        return await self.handle(alert, origin="rule", alarm=transition)

    async def handle(
        self,
        alert: Alert,
        *,
        origin: Origin,
        signatures: Iterable[OperatorSignature] = (),
        alarm: AlarmTransition | None = None,
    ) -> list[OutputResult]:
        """The one way to the outputs: the interlock decides, for every origin (docs/safety-case.md).

        ``origin`` is where the alert came in, named by the caller, never taken from the alert's
        own (sender-controlled) ``source`` field.
        """
        async with self._lock:
            now = self._clock()
            decision = self.interlock.decide(alert, origin, now, list(signatures), alarm)
            # A new activation is never taken without its record; a Cancel never waits for one.
            await self._evidence("decision", self._decision_record(alert, origin, decision, self.interlock.stamp(now)),
                                 required=alert.msg_type is not MsgType.CANCEL)
            if not decision.accepted:
                return [OutputResult("interlock", "decide", False, "refused", {"reason": decision.reason})]
            if alert.msg_type is MsgType.CANCEL:
                results: list[OutputResult] = []
                for identifier in alert.referenced_ids:
                    results += await self._cancel_locked(identifier, alert.sender)
                return results
            if alert.msg_type is MsgType.UPDATE:
                for identifier in alert.referenced_ids:
                    await self._deactivate(identifier, list(self._active.get(identifier, (alert, ()))[1]))
            results = await self._dispatch(alert.identifier, decision.activations)
            self._active[alert.identifier] = (alert, tuple(decision.activations))
            while len(self._active) > _ACTIVE_MAX:
                self._active.popitem(last=False)
            return results

    async def cancel(self, alert_id: str, sender: str = "local") -> list[OutputResult]:
        """One action: stop every output (of that alert, or all if unknown) and play the all-clear."""
        async with self._lock:
            await self._evidence("cancel", {"alert_id": alert_id, "by": sender}, required=False)
            return await self._cancel_locked(alert_id, sender)

    async def selftest(self) -> list[OutputResult]:
        results = await asyncio.gather(*(self._guard(name, "selftest", out.selftest())
                                         for name, out in self.outputs.items()))
        for result in results:
            await self._result(None, result)
        return list(results)

    def busy(self) -> str | None:
        """Why the outputs must not be disturbed now (a configuration roll-out waits for None)."""
        if self._lock.locked():
            return "a broadcast decision is being taken"
        if self._active:
            return f"broadcast active: {', '.join(list(self._active)[:3])}"
        return None

    def status(self) -> dict[str, Any]:
        return {"outputs": {name: out.status() for name, out in self.outputs.items()},
                "active": list(self._active)}

    async def note(self, kind: str, data: dict[str, Any]) -> None:
        """Audit and send upstream a record of another part of the broadcast path (e.g. the inbox)."""
        await self._evidence(kind, data)

    async def close(self) -> None:
        """Every output off, all at once: one that raises or hangs must not leave another (a siren) on."""
        await asyncio.gather(*(self._close_one(name, out) for name, out in self.outputs.items()))
        if self._reports:
            await asyncio.gather(*self._reports, return_exceptions=True)

    async def _close_one(self, name: str, output: BroadcastOutput) -> None:
        limit = 2 * self.config.output_timeout  # a deactivation and the close itself
        try:
            async with asyncio.timeout(limit):
                await output.close()
        except TimeoutError:
            log.error("broadcast output %s did not close within %.0f s; check that it is off", name, limit)
        except Exception:
            log.exception("broadcast output %s failed to close; check that it is off", name)

    def _on_output_report(self, result: OutputResult) -> None:
        """Called on the loop by an output, mid-activation: audit it, and alarm upstream if it is a fault."""
        if len(self._reports) >= _PENDING_REPORTS_MAX:
            return  # the audit log is stalled; the output still holds the fault in its status()
        alert_id = result.detail.get("alert_id")
        task = asyncio.get_running_loop().create_task(
            self._result(str(alert_id) if alert_id is not None else None, result))
        self._reports.add(task)
        task.add_done_callback(self._reports.discard)

    # ---- internals ----

    def _automatic_alert(self, entry: AutomaticTrigger, transition: AlarmTransition) -> Alert:
        sent = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
        values = [p.get("value") for p in transition.points.values()]
        tts = None
        if entry.tts:
            value = values[0] if values else ""
            tts = entry.tts.format(value=f"{value:.2f}" if isinstance(value, float) else value,
                                   time=sent.astimezone().strftime("%H:%M"))
        return Alert(
            identifier=f"{self.config.sender}.{transition.alarm_id}"[:128],
            sender=self.config.sender,
            sent=sent,
            status=Status(entry.status),
            event=entry.event,
            category=entry.category,
            urgency=entry.urgency,
            severity=entry.severity,
            certainty="Observed",
            areas=tuple(entry.zones),
            expires=sent + dt.timedelta(seconds=entry.expires),
            resources=tuple(entry.clips),
            tts=tts,
            source="rule",
            rule_id=transition.rule_id,
            alarm_id=transition.alarm_id,
        )

    async def _dispatch(self, alert_id: str, activations: Mapping[str, Activation]) -> list[OutputResult]:
        """Every output in its own task: a hung or failing output never holds up another."""
        runs = [self._run_output(name, activation) for name, activation in activations.items()]
        nested = await asyncio.gather(*runs)
        results = [result for group in nested for result in group]
        for result in results:
            await self._result(alert_id, result)
        return results

    async def _run_output(self, name: str, activation: Activation) -> list[OutputResult]:
        output = self.outputs[name]
        prepared = await self._guard(name, "prepare", output.prepare(activation))
        # A failed prepare (e.g. TTS) does not stop the fixed part: the output decides what it can play.
        activated = await self._guard(name, "activate", output.activate(activation))
        return [prepared, activated]

    async def _guard(self, name: str, action: str, call: Awaitable[OutputResult]) -> OutputResult:
        try:
            async with asyncio.timeout(self.config.output_timeout):
                return await call
        except TimeoutError:
            return OutputResult(name, action, False, "timeout")
        except Exception as exc:  # an output bug must not take the others down
            return OutputResult(name, action, False, "exception", {"error": repr(exc)[:300]})

    async def _deactivate(self, alert_id: str | None, names: list[str]) -> list[OutputResult]:
        results = await asyncio.gather(*(self._guard(n, "deactivate", self.outputs[n].deactivate())
                                         for n in names))
        for result in results:
            await self._result(alert_id, result)
        return list(results)

    async def _cancel_locked(self, alert_id: str, sender: str) -> list[OutputResult]:
        known = self._active.pop(alert_id, None)
        # "Cancel stops all outputs": an unknown id (e.g. after a restart) stops everything.
        names = list(known[1]) if known else list(self.outputs)
        zones = list(known[0].areas) if known else list(self.config.zones)
        now = self._clock()
        # Recorded (and rebuilt at start) so that people may sound these zones again at once.
        await self._evidence("stopped", {"alert_id": alert_id, "by": sender, "zones": zones,
                                         **self.interlock.stamp(now)}, required=False)
        self.interlock.limiter.stopped(zones)
        results = await self._deactivate(alert_id, names)
        results += await self._all_clear(alert_id, known[0] if known else None)
        return results

    async def _all_clear(self, alert_id: str, alert: Alert | None) -> list[OutputResult]:
        if self.config.all_clear_clip is None:
            return []
        status = alert.status if alert else Status.ACTUAL
        files = self.interlock.status_clips(status, [self.config.clips[self.config.all_clear_clip].file])
        zones = alert.areas if alert else tuple(self.config.zones)
        speakers: dict[str, list[str]] = {}
        for zone in zones:
            for name in self.config.zones[zone].outputs:
                if self.config.output_kind(name) == "speaker":
                    speakers.setdefault(name, []).append(zone)
        activations = {
            name: Activation(alert_id=f"{alert_id}.all-clear", status=status.value, zones=tuple(z),
                             clips=tuple(Path(f) for f in files), max_activation_s=self.config.max_activation)
            for name, z in speakers.items()
        }
        return await self._dispatch(f"{alert_id}.all-clear", activations)

    async def _result(self, alert_id: str | None, result: OutputResult) -> None:
        record = {"alert_id": alert_id, **result.to_json()}
        await self._evidence("output", record, required=False)  # what was done is done: record it if we can
        if self._on_fault_alarm is None:
            return
        if not result.ok and result.fault in _FAULTS_THAT_ALARM:
            # Missing proof that a relay switched: a fault alarm upstream, never silence.
            await self._on_fault_alarm({"type": "broadcast_fault", "ts": round(self._clock(), 3), **record})
        elif result.ok and result.detail.get("recovered"):
            await self._on_fault_alarm({"type": "broadcast_fault_cleared", "ts": round(self._clock(), 3), **record})

    @staticmethod
    def _decision_record(alert: Alert, origin: str, decision: Decision, stamp: dict[str, Any]) -> dict[str, Any]:
        # "claimed" and the stamp (at, mono, boot) let the next start rebuild the interlock's memory from the chain.
        return {
            "alert": alert.summary(),
            "origin": origin,
            "accepted": decision.accepted,
            "reason": decision.reason,
            "outputs": sorted(decision.activations),
            "skipped": decision.skipped,
            "signers": list(decision.signers),
            "claimed": decision.claimed,
            **stamp,
        }

    def _stamped(self, data: dict[str, Any]) -> dict[str, Any]:
        """The audit copy of a record with the clocks it is written on, unless it carries its own (decisions,
        ``stopped``): whichever record is the chain's oldest, the next start can put it on its own clock when
        the wall clock was stepped since (where the history begins, gateway/alerts/restore.py HistoryStart)."""
        if data.keys() & {"at", "mono", "boot"}:
            return data
        return {**data, **self.interlock.stamp(self._clock())}

    async def _evidence(self, kind: str, data: dict[str, Any], *, required: bool = True) -> None:
        """Audit, then send upstream. ``required``: an audit failure raises, and the caller does not act.

        Stopping outputs and recording what an output already did are never ``required``: a siren must
        go off on Cancel even when no audit log can be written; the system log and the platform keep
        the record then.
        """
        try:
            entry = await self.audit.record(kind, self._stamped(data))
            proof: dict[str, Any] = {"audit_seq": entry["seq"], "audit_hash": entry["hash"], "ts": entry["ts"]}
        except OSError as exc:
            if required:
                log.critical("broadcast %s NOT acted on: no audit log can be written (%s)", kind, exc)
                raise
            log.critical("broadcast %s acted on without an audit record (%s): %s", kind, exc, data)
            proof = {"audit_error": str(exc)[:200], "ts": round(self._clock(), 3)}
        if self._on_evidence is not None:
            await self._on_evidence({"type": f"broadcast_{kind}", **proof, **data})
