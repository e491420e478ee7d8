"""bench/soak.py's serial stall check (issue 14): a pause is time the gateway did not ask the healthy unit,
including one that runs to the end of the faults."""

from __future__ import annotations

from bench.soak import Timeline, _unpolled


def samples(counts: list[int]) -> list[tuple[float, int]]:
    return [(float(t), n) for t, n in enumerate(counts)]  # sampled each second, as the soak does


def test_a_count_standing_still_is_a_pause_and_one_to_the_end_counts_too() -> None:
    timeline = Timeline()
    polls = samples([0, 3, 6, 6, 6, 6, 9, 12, 12, 12, 12, 12])
    assert _unpolled(timeline, polls, until=11.0) == [(2.0, 6.0), (7.0, 11.0)]


def test_a_pause_while_the_daemon_was_down_is_not_counted() -> None:
    timeline = Timeline()
    timeline.down.append((2.5, 5.5))
    assert _unpolled(timeline, samples([0, 3, 6, 6, 6, 6, 9]), until=6.0) == []
