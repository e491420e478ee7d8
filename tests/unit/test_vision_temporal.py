"""Temporal confirmation driven by scripted detection and motion sequences (no video, no model)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from gateway.vision.config import ConfirmConfig, ExpectedFlameZone, Polygon
from gateway.vision.events import Box, DetectionEvent
from gateway.vision.temporal import Confirmer, Observation

SIZE = (320, 240)
FIRE = (100.0, 100.0, 130.0, 150.0)
CFG = ConfirmConfig(fire_n=4, fire_m=6, cooldown=5.0, update_every=1.5, smoke_n=6, smoke_m=8, smoke_min_age=3.0)


def feed(
    c: Confirmer,
    script: Sequence[Sequence[Observation]],
    motion: float | Sequence[float] = 0.1,
    brightness: float | Sequence[float] = 100.0,
    t0: float = 1000.0,
    dt: float = 0.5,
) -> list[tuple[int, DetectionEvent]]:
    out = []
    for k, obs in enumerate(script):
        m = motion if isinstance(motion, float) else motion[k]
        b = brightness if isinstance(brightness, float) else brightness[k]
        def measure(_box: Box, m: float = m) -> float:
            return m

        for ev in c.update(t0 + k * dt, SIZE, obs, measure, b):
            out.append((k, ev))
    return out


def fire(box: Box = FIRE, score: float = 0.8) -> list[Observation]:
    return [Observation(box, "fire", score)]


def kinds(events: list[tuple[int, DetectionEvent]]) -> list[tuple[int, str, str]]:
    return [(k, e.kind, e.role) for k, e in events]


def test_flickering_fire_confirms_on_the_nth_hit_then_ends_after_cooldown() -> None:
    c = Confirmer("cam", CFG)
    script = [fire()] * 8 + [[]] * 20
    ev = kinds(feed(c, script))
    # 4 hits needed; leaky counter 6 max -> drains after 6 misses (k=13), ends 5 s (10 steps) later.
    assert ev[0] == (3, "new", "fire")
    assert (6, "update", "fire") in ev  # 1.5 s after confirmation
    assert ev[-1][1:] == ("end", "fire") and ev[-1][0] == 13 + 10
    assert c.tracks == []


def test_single_frame_and_sparse_hits_never_confirm() -> None:
    c = Confirmer("cam", CFG)
    script = [fire(), [], [], fire(), [], [], fire(), [], [], fire(), [], []]
    assert feed(c, script) == []


def test_steady_lamp_fails_flicker_check() -> None:
    c = Confirmer("cam", CFG)
    assert feed(c, [fire()] * 30, motion=0.005) == []


def test_moving_object_fails_drift_check() -> None:
    c = Confirmer("cam", CFG)
    script = [fire((100.0 + 6 * k, 100.0, 130.0 + 6 * k, 150.0)) for k in range(12)]
    assert feed(c, script) == []
    # The same boxes standing still confirm: the drift was the only thing missing.
    assert kinds(feed(Confirmer("cam", CFG), [fire()] * 12))[0] == (3, "new", "fire")


def test_redetection_during_cooldown_resumes_the_same_event() -> None:
    c = Confirmer("cam", CFG)
    script = [fire()] * 6 + [[]] * 9 + [fire()] * 3 + [[]] * 30
    events = feed(c, script)
    news = [e for _, e in events if e.kind == "new"]
    ends = [e for _, e in events if e.kind == "end"]
    assert len(news) == 1 and len(ends) == 1 and ends[0].event_id == news[0].event_id


def test_roi_and_exclusion_polygons() -> None:
    left_half = Polygon(points=[(0, 0), (0.5, 0), (0.5, 1), (0, 1)])
    assert feed(Confirmer("cam", CFG, roi=[Polygon(points=[(0.6, 0), (1, 0), (1, 1)])]), [fire()] * 10) == []
    assert feed(Confirmer("cam", CFG, exclusions=[left_half]), [fire()] * 10) == []
    assert kinds(feed(Confirmer("cam", CFG, roi=[left_half]), [fire()] * 10))[0] == (3, "new", "fire")


def test_brightness_jump_wipes_unconfirmed_evidence() -> None:
    c = Confirmer("cam", CFG)
    bright = [100.0, 100.0, 100.0, 180.0, 180.0, 180.0, 180.0, 180.0]
    ev = kinds(feed(c, [fire()] * 8, brightness=bright))
    assert c.resets == 1
    # 3 hits, then the jump at k=3 resets; 4 fresh hits (k=4..7) are needed again.
    assert ev == [(7, "new", "fire")]


def test_smoke_needs_age_motion_and_growth() -> None:
    def plume(k: int, grow: float) -> list[Observation]:
        s = 20 + grow * k
        return [Observation((150.0, 120.0 - s, 150.0 + s, 120.0), "smoke", 0.6)]

    growing = kinds(feed(Confirmer("cam", CFG), [plume(k, 3.0) for k in range(14)], motion=0.02))
    assert growing and growing[0][1:] == ("new", "smoke") and growing[0][0] >= 6  # 3 s min age at 0.5 s
    static = feed(Confirmer("cam", CFG), [plume(k, 0.0) for k in range(14)], motion=0.02)
    assert static == []  # a grey patch that neither grows nor drifts: sky, a wall, fog bank
    frozen = feed(Confirmer("cam", CFG), [plume(k, 3.0) for k in range(14)], motion=0.0)
    assert frozen == []


def test_expected_flame_zone_alarms_when_the_flare_goes_out() -> None:
    zone = ExpectedFlameZone(name="flare", points=[(0.25, 0.3), (0.5, 0.3), (0.5, 0.7), (0.25, 0.7)],
                             out_after=2.0)
    c = Confirmer("cam", CFG, expected_flames=[zone])
    script = [fire()] * 10 + [[]] * 8 + [fire()] * 2
    ev = kinds(feed(c, script))
    # Burning flare: no fire alarm. Out from k=10 (last seen k=9): alarm 2 s later at k=13; relit -> end.
    assert ev == [(13, "new", "flame_out"), (18, "end", "flame_out")]


def test_far_field_tracks_are_not_charged_for_regions_out_of_view() -> None:
    c = Confirmer("cam", CFG)
    other_tile: Box = (200.0, 0.0, 320.0, 240.0)
    seen = 0
    for k in range(40):
        in_view = k % 4 == 0
        view: Box = (0.0, 0.0, 160.0, 240.0) if in_view else other_tile
        evs = c.update(1000.0 + k * 0.5, SIZE, fire() if in_view else [], lambda _b: 0.1, 100.0, view)
        seen += sum(e.kind == "new" for e in evs)
    assert seen == 1


def test_track_count_is_bounded() -> None:
    c = Confirmer("cam", ConfirmConfig(max_tracks=5))
    many = [Observation((10.0 * i, 0.0, 10.0 * i + 5, 5.0), "fire", 0.5) for i in range(30)]
    feed(c, [many] * 3)
    assert len(c.tracks) == 5


@pytest.mark.parametrize("bad", [{"fire_n": 7, "fire_m": 6}, {"smoke_n": 20}])
def test_n_of_m_validated(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="N of M"):
        ConfirmConfig.model_validate(bad)
