"""Adaptive replay: the backlog's share of the in-flight window follows the PUBACK round trip (AIMD)."""

from __future__ import annotations

from gateway.links_pacing import AdaptivePacer


def test_share_grows_to_the_window_less_the_reserved_slots_while_pubacks_are_quick() -> None:
    pacer = AdaptivePacer(batch=500)
    for _ in range(200):
        pacer.sent(True)
        pacer.acknowledged(True, 0.01, window=16)
    assert pacer.budget(16) == (16 - AdaptivePacer.RESERVED) * 500


def test_late_pubacks_halve_the_share_and_in_flight_backlog_counts() -> None:
    pacer = AdaptivePacer(batch=100)
    for _ in range(200):
        pacer.acknowledged(False, 0.01, window=16)
    pacer.acknowledged(False, 2.0, window=16)  # bytes queue ahead of live data: back off
    assert pacer.share == 7.0
    pacer.sent(True)
    pacer.sent(True)
    assert pacer.budget(16) == 5 * 100
    assert AdaptivePacer(batch=100).budget(2) == 100  # a tiny window still lets the backlog move


def test_live_data_waiting_in_the_journal_halves_the_share() -> None:
    pacer = AdaptivePacer(batch=100)
    for _ in range(200):
        pacer.acknowledged(False, 0.01, window=16)
    pacer.live_waited(0.1)
    assert pacer.share == 14.0
    pacer.live_waited(2.0)  # the backlog is taking the time live data needs
    assert pacer.share == 7.0
