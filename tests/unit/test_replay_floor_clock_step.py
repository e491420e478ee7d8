"""Commands issued before a new replay cache began are refused (its floor); a clock step must not move that moment.

Before: the floor was a bare wall-clock time, ``time.time() + max_clock_skew`` when the cache began (first start,
wiped state, a damaged file set aside), compared with each command's signed ``iat``. A box whose clock was ahead
then (a bad RTC, a GPS glitch, a wrong manual ``date``) and was set back to the true time by NTP refused every
signed command issued at the true time as ``issued_before_cache`` — ``cancel_broadcast`` included — until the
true time passed the bogus floor, hours or days; the platform's reissue did not help. A box behind then let a
command older than the cache through. The tests marked "failed before" did.

The clocks are tests/clocks.py's: ``step`` is how far the box's wall clock is off the true time (``clock.start +
clock.elapsed``); a reboot is a new SteppedClock (its monotonic clock starts again) and another boot id; a restart
is a new ReplayCache and CommandPlane on the same file (Harness.restart), ``clean=False`` when the process died
without closing it (SIGKILL, a power cut).
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest

from gateway.commands import Reply
from tests.clocks import HOUR, SteppedClock, T
from tests.unit.test_commands import Harness, envelope

AHEAD = 2 * HOUR
SKEW = 60.0  # the harness's max_clock_skew


def begins_ahead(tmp_path: Path) -> tuple[Harness, SteppedClock]:
    """The replay cache begins at true time T on a box two hours ahead; two minutes later NTP sets it back."""
    clock = SteppedClock()
    clock.step = AHEAD
    h = Harness(tmp_path, clock=clock, boot="boot-a", aged=False)  # no cache yet: it begins now
    clock.advance(120.0)
    clock.step = 0.0
    return h, clock


def cancel(h: Harness, issued: float, command_id: int | None = None) -> Reply:
    """The platform's cancel_broadcast, signed at ``issued`` (true time)."""
    return h.send(envelope("cancel_broadcast", {"alert_id": "county.flood-7"}, iat=issued, ttl=3600,
                           command_id=command_id).to_bytes())


def refused_as_before_cache(reply: Reply) -> bool:
    return reply.status.value == "rejected" and reply.reason.value == "issued_before_cache"


def utc(moment: float) -> str:
    return f"{dt.datetime.fromtimestamp(moment, dt.UTC):%Y-%m-%d %H:%M:%S} UTC"


def test_a_clock_set_back_after_the_cache_began_does_not_refuse_a_command_issued_now(tmp_path: Path) -> None:
    h, clock = begins_ahead(tmp_path)
    reply = cancel(h, clock.wall())
    assert reply.ok, reply  # failed before: issued_before_cache until the true time passed T + 2 h + 60 s
    assert h.target.calls == [("cancel_broadcast", "county.flood-7")]
    assert h.send(envelope("ping", iat=clock.wall()).to_bytes()).ok  # every command goes through the floor
    h.close()


def test_a_clock_set_back_before_a_restart_in_the_same_boot(tmp_path: Path) -> None:
    for clean in (True, False):
        h, clock = begins_ahead(tmp_path / str(clean))
        drafted = clock.wall()
        clock.advance(30.0)
        h.restart(clean=clean)  # the same boot: the floor is put on today's clock by its monotonic stamp
        assert cancel(h, drafted).ok  # failed before (both ways)
        assert refused_as_before_cache(cancel(h, T - 5))  # issued before the cache began: may have run
        h.close()


def test_a_clock_set_back_then_a_reboot_after_a_clean_stop(tmp_path: Path) -> None:
    """The stop writes the floor as corrected on the clock of that boot: after the reboot it is right."""
    h, clock = begins_ahead(tmp_path)
    drafted = clock.wall()  # before the reboot, after the cache began
    h.restart(SteppedClock(start=clock.wall() + 90.0), boot="boot-b")
    assert cancel(h, drafted).ok  # failed before
    assert refused_as_before_cache(cancel(h, T - 5))
    h.close()


def test_a_clock_set_back_then_a_power_cut_after_a_command(tmp_path: Path) -> None:
    """Any command claimed after the step writes the floor again, corrected: a power cut then loses nothing."""
    h, clock = begins_ahead(tmp_path)
    assert cancel(h, clock.wall()).ok  # failed before
    drafted = clock.wall() + 1
    h.restart(SteppedClock(start=clock.wall() + 90.0), boot="boot-b", clean=False)
    assert cancel(h, drafted).ok
    assert refused_as_before_cache(cancel(h, T - 5))
    h.close()


def test_a_clock_set_back_then_a_power_cut_before_any_command(tmp_path: Path) -> None:
    """What cannot be known: the floor was written only while the clock was ahead, and across a reboot no
    monotonic time compares. It is taken as written but never later than this start + max_clock_skew (the lost
    cache was lost before this one existed): a command issued from then on passes; one issued before is refused
    and the reason says where the floor lies on the clock now and that the clock was set back since it was noted."""
    h, clock = begins_ahead(tmp_path)
    drafted = clock.wall()
    rebooted = SteppedClock(start=clock.wall() + 90.0)
    h.restart(rebooted, boot="boot-b", clean=False)
    start = rebooted.wall()
    rebooted.advance(SKEW + 1)
    assert cancel(h, rebooted.wall()).ok  # failed before: refused for two more hours
    reply = cancel(h, drafted)
    assert refused_as_before_cache(reply)
    assert utc(start + SKEW) in reply.detail and utc(drafted) in reply.detail
    assert "set back" in reply.detail and utc(T + AHEAD + SKEW) in reply.detail
    h.close()


@pytest.mark.parametrize("clean", [True, False])
def test_a_clock_ahead_after_a_reboot_does_not_lower_a_floor_written_before_it(tmp_path: Path, clean: bool) -> None:
    """The floor of an earlier boot is taken as written, not as a reading of this boot's clock: a clock ahead at the
    reboot and set back since must not move it back with the step (that would let older commands in)."""
    h = Harness(tmp_path, clock=SteppedClock(), boot="boot-a", aged=False)  # begins at T on the true time
    rebooted = SteppedClock(start=T + 100.0)
    rebooted.step = AHEAD
    h.restart(rebooted, boot="boot-b", clean=clean)
    rebooted.advance(60.0)
    rebooted.step = 0.0
    assert refused_as_before_cache(cancel(h, T - 30))
    h.restart()
    assert refused_as_before_cache(cancel(h, T - 30))
    assert cancel(h, rebooted.wall()).ok
    h.close()


def test_a_clock_behind_when_the_cache_began_still_refuses_older_commands(tmp_path: Path) -> None:
    """The other direction: the floor was written two hours early; a command issued before the (true) moment the
    cache began may have run under the lost cache."""
    clock = SteppedClock()
    clock.step = -AHEAD
    h = Harness(tmp_path, clock=clock, boot="boot-a", aged=False)
    clock.advance(120.0)
    clock.step = 0.0
    assert refused_as_before_cache(cancel(h, T - 300))  # failed before: it ran
    h.restart()
    assert refused_as_before_cache(cancel(h, T - 290))  # failed before
    assert cancel(h, clock.wall()).ok
    h.close()


def test_a_command_issued_before_a_wiped_cache_stays_refused_across_the_step(tmp_path: Path) -> None:
    h, clock = begins_ahead(tmp_path)
    assert refused_as_before_cache(cancel(h, T - 30))
    h.restart()
    assert refused_as_before_cache(cancel(h, T - 30))
    h.restart(clean=False)
    assert refused_as_before_cache(cancel(h, T - 30))
    h.restart(SteppedClock(start=clock.wall() + 90.0), boot="boot-b")
    assert refused_as_before_cache(cancel(h, T - 30))
    h.restart(SteppedClock(start=clock.wall() + 200.0), boot="boot-c", clean=False)
    assert refused_as_before_cache(cancel(h, T - 30))
    h.close()


def test_a_command_already_claimed_stays_refused_across_steps_restarts_and_reboots(tmp_path: Path) -> None:
    h, clock = begins_ahead(tmp_path)
    issued = clock.wall()
    payload = envelope("cancel_broadcast", {"alert_id": "county.flood-7"}, iat=issued, ttl=3600,
                       command_id=4242, nonce=b"once").to_bytes()
    assert h.send(payload).ok  # failed before
    h.target.calls.clear()
    replayed = envelope("ping", iat=issued, ttl=3600, command_id=4243, nonce=b"once").to_bytes()
    # Within the command's validity, so that the verifier lets it by. Ahead, the floor moves ahead with the clock
    # and the command, issued at the true time, is refused on that ground first.
    for step in (HOUR / 2, 0.0, -SKEW / 2, 0.0):
        clock.step = step
        reason = "issued_before_cache" if step > 0 else "replayed"
        assert h.send(payload).reason.value == reason
        assert h.send(replayed).reason.value == reason  # the same nonce under a new id
        h.restart()
        assert h.send(payload).reason.value == reason
    h.restart(SteppedClock(start=clock.wall() + 90.0), boot="boot-b", clean=False)
    assert h.send(payload).reason.value == "replayed"
    assert h.target.calls == []
    h.close()


def test_the_refusal_says_where_the_floor_lies_now_and_that_the_clock_was_set_back(tmp_path: Path) -> None:
    h, _ = begins_ahead(tmp_path)
    reply = cancel(h, T - 30)
    assert utc(T + SKEW) in reply.detail  # the floor on the gateway's clock now (the true time)
    assert utc(T - 30) in reply.detail  # when the command was issued
    assert f"set back, by {AHEAD:.0f} s at least, since the floor was noted as {utc(T + AHEAD + SKEW)}" in reply.detail
    assert "new or was lost" in reply.detail and "reissue" in reply.detail
    h.close()
    steady = Harness(tmp_path / "steady", clock=SteppedClock(), aged=False)
    reply = cancel(steady, T - 30)
    assert refused_as_before_cache(reply) and "set back" not in reply.detail and utc(T + SKEW) in reply.detail
    steady.close()


@pytest.mark.parametrize("ahead", [0.0, AHEAD])
def test_a_cache_of_an_earlier_version_keeps_working(tmp_path: Path, ahead: float) -> None:
    """A file with the bare wall floor (no clocks): migrated on open, its entries kept; a floor that lies after this
    start (written while the clock was ahead) is taken as this start + max_clock_skew."""
    path = tmp_path / "state" / "commands" / "replay.sqlite"
    path.parent.mkdir(parents=True)
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE seen (kid TEXT NOT NULL, kind TEXT NOT NULL, value TEXT NOT NULL, expires REAL NOT NULL,
                           PRIMARY KEY (kid, kind, value)) WITHOUT ROWID;
        CREATE INDEX seen_expires ON seen (expires);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value REAL NOT NULL);
    """)
    floor = T - HOUR + ahead
    old.execute("INSERT INTO meta VALUES ('floor', ?)", (floor,))
    old.execute("INSERT INTO seen VALUES ('county-ops-1', 'id', '4242', ?)", (T + HOUR,))
    old.commit()
    old.close()
    clock = SteppedClock()
    h = Harness(tmp_path, clock=clock, boot="boot-b")
    assert h.send(envelope("ping", iat=T + SKEW, command_id=4242).to_bytes()).reason.value == "replayed"
    assert refused_as_before_cache(cancel(h, min(floor, T + SKEW) - 5))
    assert cancel(h, T + SKEW if ahead else floor + 5).ok  # failed before with the clock ahead
    h.restart()
    assert h.send(envelope("ping", iat=T + SKEW, command_id=4242).to_bytes()).reason.value == "replayed"
    h.close()
    db = sqlite3.connect(path)
    # The file has the new table; this boot's floor is written in it when it is the earlier one (and in meta.floor,
    # where an earlier version still reads it), otherwise the old floor stays as it was.
    assert db.execute("SELECT COUNT(*) FROM floor_clocks").fetchone() == (1 if ahead else 0,)
    assert db.execute("SELECT value FROM meta WHERE key = 'floor'").fetchone() == (T + SKEW if ahead else floor,)
    db.close()
