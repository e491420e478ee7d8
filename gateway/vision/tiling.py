"""Far-field tiling: overlapping model-sized tiles over a high-resolution frame, swept round-robin.

A distant smoke column is a few pixels when a 4K frame is squeezed into 320x320; cut into tiles it
keeps its pixels. The cost is honest: a full sweep takes one inference per tile, so each region is
looked at every ``len(tiles)`` inferences (the temporal stage counts only observed regions).
"""

from __future__ import annotations

import math

Box = tuple[float, float, float, float]


def _starts(length: int, tile: int, overlap: float) -> list[int]:
    if length <= tile:
        return [0]
    step = max(1, int(tile * (1.0 - overlap)))
    n = math.ceil((length - tile) / step) + 1
    # Spread the tiles evenly so the last one ends exactly at the edge.
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def make_tiles(frame_w: int, frame_h: int, tile_w: int, tile_h: int, overlap: float) -> list[Box]:
    """Tiles (x1, y1, x2, y2) covering the frame, neighbours overlapping by at least ``overlap``."""
    return [
        (float(x), float(y), float(min(frame_w, x + tile_w)), float(min(frame_h, y + tile_h)))
        for y in _starts(frame_h, tile_h, overlap)
        for x in _starts(frame_w, tile_w, overlap)
    ]


class TileSweep:
    """Round-robin over the tiles; every ``full_view_every`` sweeps also one whole-frame view."""

    def __init__(self, tile_w: int, tile_h: int, overlap: float, full_view_every: int = 0) -> None:
        self.tile_w, self.tile_h, self.overlap = tile_w, tile_h, overlap
        self.full_view_every = full_view_every
        self._size: tuple[int, int] | None = None
        self._views: list[Box] = []
        self._i = 0

    def next_view(self, frame_w: int, frame_h: int) -> Box:
        if self._size != (frame_w, frame_h):  # resolution changed (or first frame): re-plan
            self._size = (frame_w, frame_h)
            self._views = make_tiles(frame_w, frame_h, self.tile_w, self.tile_h, self.overlap)
            if self.full_view_every and len(self._views) > 1:
                self._views = self._views * self.full_view_every + [(0.0, 0.0, float(frame_w), float(frame_h))]
            self._i = 0
        view = self._views[self._i % len(self._views)]
        self._i += 1
        return view
