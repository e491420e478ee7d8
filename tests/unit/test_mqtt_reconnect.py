"""The MQTT link's reconnect pacing: quick probes after a loss, then jittered back-off (drivers/mqtt/reconnect.py)."""

from __future__ import annotations

import random

from drivers.mqtt.reconnect import ReconnectPacer


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_quick_probes_for_the_fast_window_then_back_off() -> None:
    clock = Clock()
    pacer = ReconnectPacer(1.0, 60.0, 120.0, clock=clock, rng=random.Random(1))
    waits = []
    while clock.t < 1000.0 + 119:
        wait = pacer.next_delay("refused")
        assert 0.5 <= wait <= 1.0  # a broker back after 20 s is found within a second
        clock.t += wait
        waits.append(wait)
    later = []
    for _ in range(12):
        clock.t += 1
        later.append(pacer.next_delay("refused"))
    assert later[0] <= 1.0 and max(later) > 30 and max(later) <= 60  # doubling, jittered, capped
    assert len(set(later)) == len(later)  # jittered: no two gateways in lockstep


def test_refused_login_backs_off_at_once() -> None:
    pacer = ReconnectPacer(1.0, 60.0, 120.0, clock=Clock(), rng=random.Random(2))
    waits = [pacer.next_delay("login") for _ in range(8)]
    assert waits[-1] > 16


def test_a_flapping_broker_does_not_restart_the_quick_probes() -> None:
    clock = Clock()
    pacer = ReconnectPacer(1.0, 60.0, 5.0, clock=clock, rng=random.Random(3))
    for _ in range(10):  # connects, drops a second later, over and over
        pacer.connected()
        clock.t += 1.0
        wait = pacer.next_delay("lost")
        clock.t += wait
    assert wait > 1.0  # out of the quick window: backing off
    pacer.connected()
    clock.t += ReconnectPacer.STABLE + 1
    assert pacer.next_delay("lost") <= 1.0  # a session that lasted: a new episode, quick probes again
