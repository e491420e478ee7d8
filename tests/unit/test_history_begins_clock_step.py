"""Alerts from people sent before the broadcast history begins are refused; a clock step must not move that moment.

Before: the moment the history begins (``known_since``) was a bare wall-clock time — ``time.time()`` at the start
on an empty chain, or the wall stamp of the chain's oldest record — compared with each alert's ``sent``. A box
that started with its clock ahead (a bad RTC, a GPS glitch, a wrong manual ``date``) and was then stepped back to
the true time by NTP refused every operator alert, a new one included, until the true time passed the bogus
moment: hours or days without a siren. The tests marked "failed before" did (and the one with the clock behind
at the start let an alert older than the history through).

The box's clock is the real one while it is wrong here, because the audit log stamps ``ts`` with the real wall
clock, as in the field: ``SteppedClock(start=now - 2 h)`` stepped +2 h is a box two hours ahead of a true time
two hours before the real one. A restart is a new subsystem over the same audit file (Site, the same boot unless
a boot id is named).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path

import pytest

from gateway.alerts.model import Alert, Status
from gateway.alerts.signing import sign
from tests.clocks import HOUR, SteppedClock
from tests.unit.test_interlock_every_origin import OPERATORS
from tests.unit.test_rate_limit_restart_clock import Site

pytestmark = pytest.mark.timeout(60)

AHEAD = 2 * HOUR


def ahead_clock() -> SteppedClock:
    """A box whose clock is two hours ahead of the true time (its wall clock reads the real time)."""
    clock = SteppedClock(start=time.time() - AHEAD)
    clock.step = AHEAD
    return clock


def behind_clock() -> SteppedClock:
    """A box whose clock is two hours behind the true time (its wall clock reads the real time)."""
    clock = SteppedClock(start=time.time() + AHEAD)
    clock.step = -AHEAD
    return clock


def sound_sent_at(site: Site, identifier: str, sent: float) -> str | None:
    """An Actual alert the two operators drafted and signed at ``sent`` (true time): None when it sounded."""
    alert = Alert(identifier=identifier, sender="county", sent=dt.datetime.fromtimestamp(sent, dt.UTC),
                  status=Status.ACTUAL, event="洪水预警", areas=("dam",), resources=("evacuate",))
    signatures = [sign(alert, name, OPERATORS[name], sent) for name in ("zhang", "li")]
    before = len(site.pa.activations)
    results = asyncio.run(site.subsystem.handle(alert, origin="remote", signatures=signatures))
    return None if site.pa.activations[before:] == [identifier] else str(results[0].detail.get("reason"))


def utc(moment: float) -> str:
    return f"{dt.datetime.fromtimestamp(moment, dt.UTC):%Y-%m-%d %H:%M:%S} UTC"


def test_a_clock_set_back_after_the_start_does_not_lock_the_operators_out(tmp_path: Path) -> None:
    clock = ahead_clock()
    site = Site(tmp_path, clock)  # a new state directory: the history begins at this start, two hours "ahead"
    site.cancel()  # its first audit records (a cancel: stopped, output), stamped two hours ahead
    clock.advance(60.0)
    clock.step = 0.0  # NTP steps the clock back to the true time
    assert site.sound() is None  # failed before: "alert sent before this gateway's broadcast history begins"
    site.close()


def test_a_clock_set_back_before_a_restart_does_not_lock_the_operators_out(tmp_path: Path) -> None:
    clock = ahead_clock()
    site = Site(tmp_path, clock)
    site.cancel()  # the chain's first record: the cancel, stamped with both clocks
    clock.advance(60.0)
    clock.step = 0.0
    drafted = clock.wall()
    clock.advance(30.0)
    site.restart()  # the same boot: the chain's first record is put on today's clock by its monotonic stamp
    assert sound_sent_at(site, "drafted-before-the-restart", drafted) is None  # failed before
    clock.advance(10.0)
    site.restart()
    assert "history begins" in str(sound_sent_at(site, "drafted-before-the-history", drafted - 70.0))
    site.close()


def test_a_clock_behind_before_a_restart_still_refuses_an_alert_older_than_the_history(tmp_path: Path) -> None:
    clock = behind_clock()
    site = Site(tmp_path, clock)  # state wiped, two hours behind
    true_start = clock.start
    site.cancel()  # the chain's first record, two hours "early" on its wall stamp
    clock.advance(60.0)
    clock.step = 0.0
    site.restart()
    assert "history begins" in str(sound_sent_at(site, "drafted-before", true_start - 300.0))  # failed before
    assert site.sound() is None
    site.close()


def test_a_clock_set_back_across_a_reboot_locks_out_no_alert_sent_after_the_start(tmp_path: Path) -> None:
    """Another boot: nothing monotonic compares, so the first record's stamp stays as written, but the history
    cannot begin after this start (every record read back was written before it). An alert drafted before the
    start is refused, and the reason says when the box believes its history begins and that its clock was set
    back; a new alert sounds."""
    clock = ahead_clock()
    site = Site(tmp_path, clock, boot="boot-a")
    site.cancel()
    written = clock.wall()
    rebooted = SteppedClock(start=clock.wall() - AHEAD + 60.0)  # a minute later, on the true time
    site.restart(rebooted, boot="boot-b")
    start = rebooted.wall()
    rebooted.advance(30.0)
    reason = str(sound_sent_at(site, "drafted-before", start - 20.0))
    assert "history begins" in reason and utc(start) in reason
    assert "set back" in reason and utc(written)[:16] in reason and "issue a new alert" in reason
    assert site.sound() is None  # failed before: refused until the true time passed the stamp two hours on
    site.close()


def test_a_clock_behind_at_the_start_still_refuses_an_alert_older_than_the_history(tmp_path: Path) -> None:
    """The other direction is stricter and right: the box started two hours behind, so its bare wall clock put
    the history's beginning two hours early; an alert drafted before the (true) start may have been played."""
    clock = behind_clock()
    site = Site(tmp_path, clock)  # state wiped: the history begins now
    true_start = clock.start
    clock.advance(60.0)
    clock.step = 0.0  # NTP steps the clock forward to the true time
    reason = sound_sent_at(site, "drafted-before", true_start - 300.0)
    assert "history begins" in str(reason)  # failed before: it sounded
    assert site.sound() is None  # drafted now: it sounds
    site.close()


def test_a_clock_set_back_keeps_refusing_an_alert_older_than_the_history(tmp_path: Path) -> None:
    """The replay protection is not weakened: state wiped (a new chain) on a box two hours ahead, then stepped
    back; an alert drafted before the start may have been played before the wipe, and is refused, also after a
    restart in the same boot and after a reboot."""
    clock = ahead_clock()
    site = Site(tmp_path, clock)
    true_start = clock.start
    clock.advance(60.0)
    clock.step = 0.0
    reason = str(sound_sent_at(site, "drafted-before", true_start - 300.0))
    assert "history begins" in reason and utc(true_start) in reason and "set back, by 7200 s at least" in reason
    site.cancel()
    site.restart()
    assert "history begins" in str(sound_sent_at(site, "drafted-before-2", true_start - 290.0))
    rebooted = SteppedClock(start=clock.wall() + 60.0)
    site.restart(rebooted, boot="another")
    assert "history begins" in str(sound_sent_at(site, "drafted-before-3", true_start - 280.0))
    site.close()


def test_an_alert_already_in_the_history_stays_refused_across_a_clock_step(tmp_path: Path) -> None:
    clock = ahead_clock()
    site = Site(tmp_path, clock)
    site.cancel()
    clock.advance(60.0)
    clock.step = 0.0
    sent = clock.wall()
    assert sound_sent_at(site, "a-played", sent) is None
    assert "duplicate identifier" in str(sound_sent_at(site, "a-played", sent))
    site.restart()
    assert "duplicate identifier" in str(sound_sent_at(site, "a-played", sent))
    clock.step = AHEAD  # and the clock steps ahead again
    site.restart()
    assert "duplicate identifier" in str(sound_sent_at(site, "a-played", sent))
    site.close()
