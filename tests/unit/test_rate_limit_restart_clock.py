"""The zone rate limits and the cancel waiver across clock steps *and* a restart (both clocks stepped).

Before (the residual the safety case listed): activations read back from the audit chain at a start were aged
by the wall clock alone, and only those of the last wall-clock hour were read at all. A forward step before a
restart (or a restart after NTP stepped forward) made them look old: ``min_interval`` and ``max_per_hour``
started again. And the cancel waiver compared wall times, so a step back between an activation and its cancel
made people wait ``min_interval`` before sounding the zone again. The tests marked "failed before" did.

A restart is a new subsystem over the same audit file: the same boot unless the test names another boot id.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.alerts.audit import AuditLog, verify_chain
from gateway.alerts.fallback import ResilientAudit
from gateway.alerts.model import Alert, Status
from gateway.alerts.restore import Lookback
from gateway.alerts.signing import OperatorSignature, sign
from gateway.alerts.subsystem import BroadcastSubsystem
from tests.clocks import HOUR, SteppedClock
from tests.unit.test_interlock_every_origin import OPERATORS, Output, config

pytestmark = pytest.mark.timeout(60)


class Site:
    """A broadcast subsystem on a stepped clock pair; ``restart`` builds a new one over the same audit file."""

    def __init__(self, tmp: Path, clock: SteppedClock, boot: str | None = None, **rate_limit: Any) -> None:
        self.config = config(tmp, rate_limit={"min_interval": 600, "max_per_hour": 4, **rate_limit})
        self.clock = clock
        self.pa = Output("pa")
        self.audit = AuditLog(self.config.audit_path)
        self.subsystem = self._build(boot)
        self.count = 0

    def _build(self, boot: str | None) -> BroadcastSubsystem:
        extra: dict[str, Any] = {} if boot is None else {"boot_id": boot}
        return BroadcastSubsystem(self.config, self.audit, {"pa": self.pa}, clock=self.clock.wall,
                                  monotonic=self.clock.monotonic, **extra)

    def restart(self, clock: SteppedClock | None = None, boot: str | None = None) -> None:
        asyncio.run(self.subsystem.close())
        self.audit.close()
        self.clock = clock or self.clock
        self.audit = AuditLog(self.config.audit_path)
        self.subsystem = self._build(boot)

    def alert(self) -> tuple[Alert, list[OperatorSignature]]:
        self.count += 1
        now = self.clock.wall()
        alert = Alert(identifier=f"a-{self.count}", sender="county", sent=dt.datetime.fromtimestamp(now, dt.UTC),
                      status=Status.ACTUAL, event="洪水预警", areas=("dam",), resources=("evacuate",))
        return alert, [sign(alert, name, OPERATORS[name], now) for name in ("zhang", "li")]

    def sound(self) -> str | None:
        """An Actual alert from two operators: None when it sounded, else why not."""
        alert, sigs = self.alert()
        results = asyncio.run(self.subsystem.handle(alert, origin="remote", signatures=sigs))
        if alert.identifier in self.pa.activations:
            return None
        return str(results[0].detail.get("reason"))

    def cancel(self) -> None:
        asyncio.run(self.subsystem.cancel(f"a-{self.count}", "operator"))

    def close(self) -> None:
        asyncio.run(self.subsystem.close())
        self.audit.close()


def now_clock() -> SteppedClock:
    """Starts at the real time: the audit log stamps ``ts`` with the real wall clock, as in the field."""
    return SteppedClock(start=time.time())


def test_a_forward_step_before_a_restart_does_not_restart_the_minimum_interval(tmp_path: Path) -> None:
    clock = now_clock()
    site = Site(tmp_path, clock)
    assert site.sound() is None
    clock.advance(60.0)
    clock.step = 2 * HOUR  # NTP steps the clock two hours forward, then the daemon restarts (same boot)
    site.restart()
    assert "last activation 60 s ago" in str(site.sound())  # failed before: it sounded
    clock.advance(541.0)
    assert site.sound() is None  # 601 s of real time
    site.close()


def test_a_forward_step_before_a_restart_does_not_restart_the_hourly_cap(tmp_path: Path) -> None:
    clock = now_clock()
    site = Site(tmp_path, clock, min_interval=10, max_per_hour=4)
    for _ in range(4):
        assert site.sound() is None
        clock.advance(20.0)
    clock.step = 30 * 24 * HOUR  # a month forward (a box that booted with a stale clock, then synchronised)
    site.restart()
    assert "4 activations in the last hour" in str(site.sound())  # failed before: it sounded
    site.restart()  # a second restart changes nothing (the refused decision is in the chain too)
    clock.advance(HOUR - 80.0 - 1.0)
    assert "4 activations in the last hour" in str(site.sound())
    clock.advance(2.0)  # the first one is a real hour old
    assert site.sound() is None
    assert verify_chain(Path(site.config.audit_path)).ok
    site.close()


def test_a_step_back_before_a_restart_holds_the_zone_for_the_interval_only(tmp_path: Path) -> None:
    clock = now_clock()
    clock.step = HOUR  # sounded while the clock was an hour ahead
    site = Site(tmp_path, clock)
    assert site.sound() is None
    clock.advance(100.0)
    clock.step = 0.0
    site.restart()
    assert "last activation 100 s ago" in str(site.sound())  # measured on the monotonic clock, not "0 s"
    clock.advance(501.0)
    assert site.sound() is None
    site.close()


def test_after_a_reboot_the_wall_clock_ages_the_chain(tmp_path: Path) -> None:
    """Another boot: no monotonic stamp compares; the wall age decides, as before, and a stamp ahead of the clock
    counts as made at the start."""
    site = Site(tmp_path, now_clock(), boot="boot-a")
    assert site.sound() is None
    rebooted = SteppedClock(start=site.clock.wall() + 200.0)  # down 200 s; the new boot's monotonic clock restarts
    site.restart(rebooted, boot="boot-b")
    assert "last activation 200 s ago" in str(site.sound())
    rebooted.advance(401.0)
    assert site.sound() is None
    ahead = SteppedClock(start=rebooted.wall() - HOUR)  # the next boot's clock is an hour behind the chain
    site.restart(ahead, boot="boot-c")
    # (asked of the limiter: an alert sent an hour before this young chain began is refused on that ground)
    limiter = site.subsystem.interlock.limiter
    assert "last activation 0 s ago" in str(limiter.problem(["dam"], ahead.wall(), by_people=True))
    ahead.advance(601.0)
    assert limiter.problem(["dam"], ahead.wall(), by_people=True) is None
    site.close()


def test_after_a_reboot_a_forward_step_shows_in_the_records_written_after_it(tmp_path: Path) -> None:
    """Within the previous boot, a record written after the step carries both clocks: the activations before it
    are put on its wall clock. A step with no record after it, then a reboot, is the residual (next test)."""
    clock = now_clock()
    site = Site(tmp_path, clock, boot="boot-a")
    assert site.sound() is None
    clock.advance(30.0)
    clock.step = 2 * HOUR
    assert "last activation 30 s ago" in str(site.sound())  # refused, and its record carries both clocks
    rebooted = SteppedClock(start=clock.wall() + 60.0)
    site.restart(rebooted, boot="boot-b")
    assert "last activation 90 s ago" in str(site.sound())
    site.close()


def test_the_residual_a_forward_step_then_a_reboot_with_no_record_between(tmp_path: Path) -> None:
    """What stays open (docs/durability.md, Clock steps): nothing in the chain can tell a step made after the
    previous boot's last record from real time; the limits are looser by the step until real time catches up."""
    site = Site(tmp_path, now_clock(), boot="boot-a")
    assert site.sound() is None
    rebooted = SteppedClock(start=site.clock.wall() + 60.0 + 2 * HOUR)  # 60 s down, and 2 h ahead
    site.restart(rebooted, boot="boot-b")
    assert site.sound() is None
    site.close()


def test_a_step_back_between_an_activation_and_its_cancel_keeps_the_waiver(tmp_path: Path) -> None:
    clock = now_clock()
    clock.step = HOUR
    site = Site(tmp_path, clock)
    assert site.sound() is None
    clock.advance(10.0)
    clock.step = 0.0  # stepped back an hour, then the operators cancel
    site.cancel()
    clock.advance(5.0)
    assert site.sound() is None  # failed before: "last activation ... (< 600 s)"
    clock.advance(5.0)
    assert "last activation 5 s ago" in str(site.sound())  # not cancelled in between: the interval holds
    site.close()


def test_a_small_step_back_between_an_activation_and_its_cancel_keeps_the_waiver_across_a_restart(
        tmp_path: Path) -> None:
    """A step back larger than the time between activation and cancel, smaller than the time since: the wall
    ages then put the cancel *before* the activation, and so would any comparison of ages; the chain's order
    does not."""
    clock = now_clock()
    site = Site(tmp_path, clock)
    assert site.sound() is None
    clock.advance(5.0)
    clock.step = -100.0
    clock.advance(5.0)
    site.cancel()
    clock.advance(190.0)
    site.restart()
    assert site.subsystem.interlock.limiter.problem(["dam"], clock.wall(), by_people=True) is None  # failed before
    site.restart(boot="another")  # after a reboot too: the chain's order says the cancel came last
    assert site.sound() is None
    site.close()


def test_old_audit_records_without_clock_stamps_still_verify_and_restore(tmp_path: Path) -> None:
    clock = now_clock()
    site = Site(tmp_path, clock)
    site.close()
    old = AuditLog(site.config.audit_path)  # records as the previous release wrote them: no mono, no boot
    alert = {"identifier": "old-1", "msgType": "Alert", "areas": ["dam"]}
    old.append("decision", {"alert": alert, "origin": "remote", "accepted": True, "outputs": ["pa"],
                            "claimed": True, "at": round(clock.wall() - 100.0, 3)})
    old.close()
    site = Site(tmp_path, clock)
    assert "last activation 100 s ago" in str(site.sound())
    clock.advance(501.0)
    assert site.sound() is None  # the next one sounds, and its record carries the stamps
    site.close()
    check = verify_chain(Path(site.config.audit_path))
    assert check.ok and check.records >= 4
    records = [line for line in Path(site.config.audit_path).read_text().splitlines() if '"kind":"decision"' in line]
    assert '"mono"' not in records[0] and '"mono"' in records[-1] and '"boot"' in records[-1]


def test_the_read_at_start_goes_back_by_order_until_the_limits_have_what_they_need(tmp_path: Path) -> None:
    """A forward step makes every record look older than the wall-clock horizon: the read goes on by the chain's
    order until each zone has max_per_hour activations, and stops at a record of this boot an hour old."""
    path = tmp_path / "audit.log"
    audit = AuditLog(path)
    mono = 10_000.0
    for index in range(6):
        zones = ["dam"] if index % 2 else ["bridge"]
        audit.append("decision", {"alert": {"identifier": f"a-{index}", "msgType": "Alert", "areas": zones},
                                  "accepted": True, "outputs": ["pa"], "claimed": True, "at": 1000.0 + index,
                                  "mono": mono + index, "boot": "b"})
        audit.append("output", {"alert_id": f"a-{index}", "ok": True})
    later = time.time() + 10 * HOUR  # the wall horizon lies after every record
    assert audit.history(later).records == []  # the wall-clock read alone: nothing
    wanted = Lookback(["dam", "bridge"], 2, "b", monotonic_now=mono + 100.0)
    found = audit.history(later, wanted).records
    assert [r["data"]["alert"]["identifier"] for r in found if r["kind"] == "decision"] == ["a-2", "a-3", "a-4", "a-5"]
    an_hour_on = Lookback(["dam", "bridge", "never-sounded"], 2, "b", monotonic_now=mono + 4.0 + HOUR)
    found = audit.history(later, an_hour_on).records  # a-4 is an hour old on this boot's monotonic clock
    assert [r["data"]["alert"]["identifier"] for r in found if r["kind"] == "decision"] == ["a-4", "a-5"]
    history = audit.history(later, Lookback(["never-sounded"], 2, "b", monotonic_now=mono))
    assert len(history.records) == 12 and history.complete  # to the chain's first record, which is past the horizon
    assert audit.history(0.0).complete is False  # the chain begins after the horizon (as before)
    audit.close()


def test_activations_audited_to_the_temporary_log_count_after_the_merge(tmp_path: Path) -> None:
    """Decisions audited while the real log failed join the chain as ``fallback_record``s (gateway/alerts/
    fallback.py); the next start counts them where they stand (failed before: the zone sounded again)."""
    blocker = tmp_path / "audit"
    blocker.write_text("a file where the audit directory should be\n")
    real, spare = blocker / "broadcast.log", tmp_path / "spare" / "broadcast.log"
    clock = now_clock()
    site = Site(tmp_path, clock)
    site.close()

    def build(audit: ResilientAudit) -> BroadcastSubsystem:
        return BroadcastSubsystem(site.config, audit, {"pa": site.pa}, clock=clock.wall, monotonic=clock.monotonic)

    degraded = ResilientAudit(real, spare)
    assert degraded.degraded
    site.subsystem = build(degraded)
    assert site.sound() is None
    asyncio.run(site.subsystem.close())
    degraded.close()
    blocker.unlink()
    clock.advance(60.0)
    merged = ResilientAudit(real, spare)  # the real log opens at the restart: the temporary records join it
    site.subsystem = build(merged)
    assert "last activation 60 s ago" in str(site.sound())
    asyncio.run(site.subsystem.close())
    merged.close()
    assert verify_chain(real).ok
