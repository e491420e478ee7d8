"""Temporal confirmation: one alarm from many frames, never from one.

Per camera, detections are tied into tracks by IoU. A fire track is confirmed when it was seen in
N of its last M observations *and* the picture inside it keeps changing (flames flicker; a lamp,
its glare or a lit sign do not) *and* it does not travel like a moving object. A smoke track needs a
longer window, a minimum age, some motion inside, and growth or drift. Evidence leaks away one step
per miss; a confirmed track ends only after a quiet cool-down, during which a re-detection in the
same region resumes the same event instead of raising a new one. ROI polygons gate detections in,
exclusion polygons gate them out. Expected-flame zones invert the logic: flame there is normal, its
absence for ``out_after`` is the alarm. A large jump in global brightness (auto-exposure, lightning,
floodlights switching) wipes unconfirmed evidence, because every box measure jumps with it.

Only observed regions count: in far-field mode one tile is inspected per inference, so a track is
charged a miss only when its region was in view.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.vision.config import ConfirmConfig, ExpectedFlameZone, Polygon
from gateway.vision.events import Box, DetectionEvent
from gateway.vision.geometry import (
    area,
    box_in_polygon,
    centre,
    contains_point,
    expand,
    intersection_over_first,
    iou,
    polygon_box,
)

# measure(box) -> relative change of the picture inside ``box`` since the previous frame (0 = frozen)
Measure = Callable[[Box], float]


@dataclass(frozen=True, slots=True)
class Observation:
    box: Box  # frame pixels
    role: str  # "fire" | "smoke"
    score: float


@dataclass(slots=True)
class Track:
    id: int
    role: str
    box: Box
    t_first: float
    window: int
    hits: collections.deque[int] = field(init=False)
    motion: collections.deque[float] = field(init=False)
    centres: collections.deque[tuple[float, float]] = field(init=False)
    areas: collections.deque[float] = field(init=False)
    counter: float = 0.0
    score: float = 0.0
    confirmed: bool = False
    event_id: str = ""
    last_update_t: float = 0.0
    quiet_since: float | None = None

    def __post_init__(self) -> None:
        self.hits = collections.deque(maxlen=self.window)
        self.motion = collections.deque(maxlen=self.window)
        self.centres = collections.deque(maxlen=self.window)
        self.areas = collections.deque(maxlen=self.window)


@dataclass(slots=True)
class ZoneState:
    zone: ExpectedFlameZone
    last_seen: float | None = None
    event_id: str = ""  # non-empty while a flame_out alarm is open


class Confirmer:
    def __init__(
        self,
        camera: str,
        cfg: ConfirmConfig,
        roi: Sequence[Polygon] = (),
        exclusions: Sequence[Polygon] = (),
        expected_flames: Sequence[ExpectedFlameZone] = (),
    ) -> None:
        self.camera = camera
        self.cfg = cfg
        self.roi = list(roi)
        self.exclusions = list(exclusions)
        self.zones = [ZoneState(z) for z in expected_flames]
        self.tracks: list[Track] = []
        self.resets = 0
        self._ids = itertools.count(1)
        self._brightness: float | None = None
        self._t0: float | None = None

    # -- the one entry point -------------------------------------------------------------------------
    def update(
        self,
        t: float,
        frame_size: tuple[int, int],
        observations: Sequence[Observation],
        measure: Measure,
        brightness: float,
        view: Box | None = None,
    ) -> list[DetectionEvent]:
        """Feed one inference result; returns the events it causes (usually none)."""
        w, h = frame_size
        view = view or (0.0, 0.0, float(w), float(h))
        if self._t0 is None:
            self._t0 = t
        if self._brightness_jumped(brightness):
            self._reset_evidence()
            return []
        events: list[DetectionEvent] = []
        fire_in_zones: list[Observation] = []
        kept: list[Observation] = []
        for ob in observations:
            if self.roi and not any(box_in_polygon(ob.box, p.points, w, h) for p in self.roi):
                continue
            if any(box_in_polygon(ob.box, p.points, w, h) for p in self.exclusions):
                continue
            if ob.role == "fire" and any(box_in_polygon(ob.box, z.zone.points, w, h) for z in self.zones):
                fire_in_zones.append(ob)
                continue
            kept.append(ob)
        events += self._zones(t, frame_size, fire_in_zones, view)
        events += self._tracks(t, frame_size, _drop_contained(kept), measure, view)
        return events

    # -- brightness ----------------------------------------------------------------------------------
    def _brightness_jumped(self, b: float) -> bool:
        prev = self._brightness
        self._brightness = b if prev is None else 0.5 * prev + 0.5 * b
        if prev is None:
            return False
        jumped = abs(b - prev) / max(prev, 8.0) > self.cfg.brightness_jump
        if jumped:
            self._brightness = b
        return jumped

    def _reset_evidence(self) -> None:
        self.resets += 1
        self.tracks = [tr for tr in self.tracks if tr.confirmed]
        for tr in self.tracks:  # confirmed events stay open; their fresh evidence restarts
            tr.motion.clear()

    # -- tracks --------------------------------------------------------------------------------------
    def _tracks(
        self, t: float, size: tuple[int, int], obs: list[Observation], measure: Measure, view: Box
    ) -> list[DetectionEvent]:
        cfg = self.cfg
        matched: dict[int, Observation] = {}
        free = list(range(len(obs)))
        pairs = sorted(
            ((iou(tr.box, obs[j].box), i, j) for i, tr in enumerate(self.tracks) for j in free
             if tr.role == obs[j].role),
            reverse=True,
        )
        used_tracks: set[int] = set()
        used_obs: set[int] = set()
        for overlap, i, j in pairs:
            if overlap < cfg.iou_match:
                break
            if i in used_tracks or j in used_obs:
                continue
            used_tracks.add(i)
            used_obs.add(j)
            matched[i] = obs[j]
        events: list[DetectionEvent] = []
        survivors: list[Track] = []
        for i, tr in enumerate(self.tracks):
            ob = matched.get(i)
            if ob is not None:
                self._hit(tr, ob, measure)
            elif contains_point(view, centre(tr.box)):
                tr.hits.append(0)
                tr.counter -= cfg.leak
            events += self._advance(tr, t, size)
            if tr.counter > 0 or (tr.confirmed and tr.quiet_since is not None):
                survivors.append(tr)
        for j, ob in enumerate(obs):
            if j in used_obs:
                continue
            window = cfg.fire_m if ob.role == "fire" else cfg.smoke_m
            tr = Track(next(self._ids), ob.role, ob.box, t, window)
            self._hit(tr, ob, measure)
            events += self._advance(tr, t, size)
            survivors.append(tr)
        if len(survivors) > cfg.max_tracks:  # bounded: shed the weakest unconfirmed evidence first
            survivors.sort(key=lambda tr: (tr.confirmed, tr.counter), reverse=True)
            survivors = survivors[: cfg.max_tracks]
        self.tracks = survivors
        return events

    def _hit(self, tr: Track, ob: Observation, measure: Measure) -> None:
        tr.hits.append(1)
        tr.counter = min(self.cfg.counter_max, max(tr.counter, 0.0) + 1.0)
        tr.box = ob.box if not tr.centres else tuple(  # type: ignore[assignment]
            0.5 * a + 0.5 * b for a, b in zip(tr.box, ob.box, strict=True))
        tr.score = ob.score
        tr.motion.append(measure(ob.box))
        tr.centres.append(centre(ob.box))
        tr.areas.append(area(ob.box))

    def _advance(self, tr: Track, t: float, size: tuple[int, int]) -> list[DetectionEvent]:
        if not tr.confirmed:
            if self._confirms(tr, t):
                tr.confirmed = True
                tr.last_update_t = t
                joined = self._neighbour_event(tr, size)
                if joined:  # a tongue or fragment of a fire already alarmed: same event, no new alarm
                    tr.event_id = joined
                    return []
                tr.event_id = f"{self.camera}-{tr.role}-{int(tr.t_first)}-{tr.id}"
                return [self._event(tr, "new", t, size)]
            return []
        if tr.hits and tr.hits[-1] == 1:
            tr.quiet_since = None
            if t - tr.last_update_t >= self.cfg.update_every:
                tr.last_update_t = t
                return [self._event(tr, "update", t, size)]
            return []
        if tr.counter <= 0:
            if tr.quiet_since is None:
                tr.quiet_since = t
            if t - tr.quiet_since >= self.cfg.cooldown:
                tr.quiet_since = None  # drops the track in _tracks
                shared = any(o is not tr and o.event_id == tr.event_id and o.counter > 0 for o in self.tracks)
                return [] if shared else [self._event(tr, "end", t, size)]
        return []

    def _confirms(self, tr: Track, t: float) -> bool:
        cfg = self.cfg
        if tr.role == "fire":
            return (
                sum(tr.hits) >= cfg.fire_n
                and _mean(tr.motion) >= cfg.flicker_min
                and self._drift(tr) <= cfg.max_drift
            )
        if sum(tr.hits) < cfg.smoke_n or t - tr.t_first < cfg.smoke_min_age:
            return False
        k = max(1, len(tr.areas) // 3)
        areas = list(tr.areas)
        growth = _mean(areas[-k:]) / max(_mean(areas[:k]), 1e-6)
        return _mean(tr.motion) >= cfg.smoke_motion_min and (growth >= cfg.smoke_growth or self._drift(tr) >= 0.15)

    def _neighbour_event(self, tr: Track, size: tuple[int, int]) -> str:
        """Event id of a confirmed same-role track touching ``tr`` (boxes grown by half), or ''."""
        grown = expand(tr.box, 0.5, *size)
        for other in self.tracks:
            if other is not tr and other.confirmed and other.role == tr.role and iou(grown, other.box) > 0:
                return other.event_id
        return ""

    @staticmethod
    def _drift(tr: Track) -> float:
        """Centre travel over the window, in units of the box's mean side."""
        if len(tr.centres) < 2:
            return 0.0
        (x0, y0), (x1, y1) = tr.centres[0], tr.centres[-1]
        side = max((tr.box[2] - tr.box[0] + tr.box[3] - tr.box[1]) / 2, 1.0)
        return float(((x1 - x0) ** 2 + (y1 - y0) ** 2) ** 0.5 / side)

    def _event(self, tr: Track, kind: str, t: float, size: tuple[int, int]) -> DetectionEvent:
        return DetectionEvent(
            camera=self.camera, event_id=tr.event_id, kind=kind, role=tr.role, t=t,  # type: ignore[arg-type]
            t_first=tr.t_first, score=tr.score, box=tr.box, frame_size=size,
            attrs={"hits": int(sum(tr.hits)), "window": tr.window, "motion": round(_mean(tr.motion), 4)},
        )

    # -- expected-flame zones ------------------------------------------------------------------------
    def _zones(
        self, t: float, size: tuple[int, int], fire: list[Observation], view: Box
    ) -> list[DetectionEvent]:
        events: list[DetectionEvent] = []
        w, h = size
        for z in self.zones:
            zbox = polygon_box(z.zone.points, w, h)
            if not contains_point(view, centre(zbox)):
                continue
            burning = [ob for ob in fire if box_in_polygon(ob.box, z.zone.points, w, h)]
            if burning:
                z.last_seen = t
                if z.event_id:
                    events.append(self._zone_event(z, "end", t, size, zbox, max(o.score for o in burning)))
                    z.event_id = ""
                continue
            since = z.last_seen if z.last_seen is not None else (self._t0 if z.zone.burning_at_start else None)
            if since is not None and not z.event_id and t - since >= z.zone.out_after:
                z.event_id = f"{self.camera}-flame_out-{z.zone.name or 'zone'}-{int(t)}"
                events.append(self._zone_event(z, "new", t, size, zbox, 1.0))
        return events

    def _zone_event(
        self, z: ZoneState, kind: str, t: float, size: tuple[int, int], box: Box, score: float
    ) -> DetectionEvent:
        return DetectionEvent(
            camera=self.camera, event_id=z.event_id, kind=kind, role="flame_out", t=t,  # type: ignore[arg-type]
            t_first=z.last_seen if z.last_seen is not None else t, score=score, box=box, frame_size=size,
            attrs={"zone": z.zone.name},
        )


def _mean(values: Sequence[float] | collections.deque[float]) -> float:
    return float(sum(values) / len(values)) if values else 0.0


def _drop_contained(obs: list[Observation], frac: float = 0.7) -> list[Observation]:
    """Drop a detection mostly inside a higher-scoring one of the same role (one flame, one track)."""
    ordered = sorted(obs, key=lambda o: o.score, reverse=True)
    kept: list[Observation] = []
    for ob in ordered:
        if not any(k.role == ob.role and intersection_over_first(ob.box, k.box) >= frac for k in kept):
            kept.append(ob)
    return kept
