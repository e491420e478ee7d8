"""The interlock decides for every origin, and its memory survives a restart or a reload.

Before: origin ``remote`` (a platform command) skipped the operators' signatures, so one stolen
platform key sounded an Actual alert; the rate limits and the used alert ids lived in memory, so
a restart let the same two-signed request sound again seconds later.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.alerts.audit import AuditLog
from gateway.alerts.config import BroadcastConfig
from gateway.alerts.contract import Activation, OutputResult, ReportsInResults
from gateway.alerts.interlock import Interlock, required_signatures
from gateway.alerts.model import Alert, MsgType, Status
from gateway.alerts.signing import OperatorSignature, public_key_text, sign
from gateway.alerts.subsystem import BroadcastSubsystem

pytestmark = pytest.mark.timeout(60)

OPERATORS = {name: Ed25519PrivateKey.generate() for name in ("zhang", "li")}


class Output(ReportsInResults):
    kind = "speaker"
    outdoor = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.activations: list[str] = []

    async def prepare(self, activation: Activation) -> OutputResult:
        return OutputResult(self.name, "prepare", True)

    async def activate(self, activation: Activation) -> OutputResult:
        self.activations.append(activation.alert_id)
        return OutputResult(self.name, "activate", True)

    async def deactivate(self) -> OutputResult:
        return OutputResult(self.name, "deactivate", True)

    async def selftest(self) -> OutputResult:
        return OutputResult(self.name, "selftest", True)

    def status(self) -> dict[str, Any]:
        return {}

    async def close(self) -> None:
        return None


def config(tmp: Path, **extra: Any) -> BroadcastConfig:
    data: dict[str, Any] = {
        "audit_path": str(tmp / "audit.log"),
        "outputs": {"pa": {"type": "alsa_audio"}},
        "zones": {"dam": {"outputs": ["pa"]}},
        "clips": {c: {"file": f"/clips/{c}.wav"} for c in ("evacuate", "ex", "test", "clear")},
        "announce": {"exercise": "ex", "test": "test"},
        "all_clear_clip": "clear",
        "operators": {name: public_key_text(key) for name, key in OPERATORS.items()},
        "rate_limit": {"min_interval": 600, "max_per_hour": 4},
    }
    data.update(extra)
    return BroadcastConfig.model_validate(data)


def actual(identifier: str, **kw: Any) -> Alert:
    fields: dict[str, Any] = {"identifier": identifier, "sender": "county", "sent": dt.datetime.now(dt.UTC),
                              "status": Status.ACTUAL, "event": "洪水预警", "areas": ("dam",),
                              "resources": ("evacuate",)}
    return Alert(**{**fields, **kw})


def signatures(alert: Alert, *names: str) -> list[OperatorSignature]:
    now = dt.datetime.now(dt.UTC).timestamp()
    return [sign(alert, name, OPERATORS[name], now) for name in names]


@pytest.mark.parametrize("origin", ["remote", "manual"])
@pytest.mark.parametrize("names", [(), ("zhang",)])
def test_actual_needs_two_operators_whatever_the_origin(tmp_path: Path, origin: Any, names: tuple[str, ...]) -> None:
    lock = Interlock(config(tmp_path))
    alert = actual("a-1")
    decision = lock.decide(alert, origin, dt.datetime.now(dt.UTC).timestamp(), signatures(alert, *names))
    assert not decision.accepted and "2 distinct operator signature(s) required" in decision.reason
    assert not decision.activations


def test_two_operators_sound_a_remote_actual(tmp_path: Path) -> None:
    lock = Interlock(config(tmp_path))
    alert = actual("a-2")
    decision = lock.decide(alert, "remote", dt.datetime.now(dt.UTC).timestamp(), signatures(alert, "zhang", "li"))
    assert decision.accepted and decision.signers == ("zhang", "li") and decision.claimed


def test_an_alert_claiming_to_come_from_a_rule_is_refused_from_outside(tmp_path: Path) -> None:
    lock = Interlock(config(tmp_path))
    alert = actual("a-3", source="rule", rule_id="level.danger")
    decision = lock.decide(alert, "remote", dt.datetime.now(dt.UTC).timestamp(), signatures(alert, "zhang", "li"))
    assert not decision.accepted and "source 'rule'" in decision.reason


def test_a_cancel_needs_one_operator() -> None:
    alert = actual("x")
    cancel = Alert(identifier="c-1", sender="county", sent=alert.sent, status=Status.ACTUAL,
                   msg_type=MsgType.CANCEL, event="解除", references=("x",))
    assert required_signatures(cancel) == 1
    assert required_signatures(alert) == 2
    assert required_signatures(actual("y", status=Status.EXERCISE)) == 1


def run_subsystem(tmp_path: Path, alert: Alert, sigs: list[OperatorSignature]) -> tuple[list[OutputResult], Output]:
    """A fresh subsystem over the same audit file: what a restart or a reload builds."""

    async def scenario() -> tuple[list[OutputResult], Output]:
        cfg = config(tmp_path)
        audit = AuditLog(cfg.audit_path)
        pa = Output("pa")
        subsystem = BroadcastSubsystem(cfg, audit, {"pa": pa})
        try:
            return await subsystem.handle(alert, origin="remote", signatures=sigs), pa
        finally:
            await subsystem.close()
            audit.close()

    return asyncio.run(scenario())


def test_a_restart_does_not_let_the_same_signed_request_sound_again(tmp_path: Path) -> None:
    alert = actual("a-4")
    sigs = signatures(alert, "zhang", "li")
    _, pa = run_subsystem(tmp_path, alert, sigs)
    assert pa.activations == ["a-4"]
    again, pa = run_subsystem(tmp_path, alert, sigs)  # restarted: the same request, seconds later
    assert pa.activations == [] and "duplicate identifier" in again[0].detail["reason"]


def test_a_restart_keeps_the_zone_rate_limit(tmp_path: Path) -> None:
    first = actual("a-5")
    run_subsystem(tmp_path, first, signatures(first, "zhang", "li"))
    second = actual("a-6")
    results, pa = run_subsystem(tmp_path, second, signatures(second, "zhang", "li"))
    assert pa.activations == [] and "rate limit" in results[0].detail["reason"]


def test_a_lost_audit_chain_refuses_alerts_sent_before_it_began(tmp_path: Path) -> None:
    alert = actual("a-7", sent=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30))
    sigs = signatures(alert, "zhang", "li")
    (tmp_path / "audit.log").unlink(missing_ok=True)  # no history: it may have been played before
    results, pa = run_subsystem(tmp_path, alert, sigs)
    assert pa.activations == [] and "history begins" in results[0].detail["reason"]
    fresh = actual("a-8")
    results, pa = run_subsystem(tmp_path, fresh, signatures(fresh, "zhang", "li"))
    assert pa.activations == ["a-8"]


def test_after_a_cancel_people_may_sound_the_zone_again_at_once(tmp_path: Path) -> None:
    """A cancel given by mistake (or by a stolen platform key) must not lock the operators out of the zone
    for min_interval; the rules still wait, and the waiver survives a restart."""

    async def scenario() -> tuple[list[OutputResult], list[OutputResult], list[str]]:
        cfg = config(tmp_path)
        audit = AuditLog(cfg.audit_path)
        pa = Output("pa")
        subsystem = BroadcastSubsystem(cfg, audit, {"pa": pa})
        first = actual("a-10")
        await subsystem.handle(first, origin="remote", signatures=signatures(first, "zhang", "li"))
        await subsystem.cancel("a-10", "remote")
        await subsystem.close()
        audit.close()
        audit = AuditLog(cfg.audit_path)  # restarted
        subsystem = BroadcastSubsystem(cfg, audit, {"pa": pa})
        automatic = subsystem.interlock.limiter.problem(("dam",), dt.datetime.now(dt.UTC).timestamp())
        again = actual("a-11")
        results = await subsystem.handle(again, origin="remote", signatures=signatures(again, "zhang", "li"))
        third = actual("a-12")
        limited = await subsystem.handle(third, origin="remote", signatures=signatures(third, "zhang", "li"))
        await subsystem.close()
        audit.close()
        assert automatic is not None and "last activation" in automatic  # a rule would still wait
        return results, limited, pa.activations

    results, limited, activations = asyncio.run(scenario())
    assert activations == ["a-10", "a-10.all-clear", "a-11"] and all(r.ok for r in results)
    assert "rate limit" in limited[0].detail["reason"]  # not cancelled in between: the interval holds
