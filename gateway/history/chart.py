"""A point's trend as one SVG, drawn on the server: no chart library, no CDN, no script.

Mean as a line, min..max as a band, the rules' thresholds as dashed lines, alarm periods as shaded
spans, time along the bottom in the box's local time. Every text is escaped; the numbers the chart
was drawn from are in ``data-`` attributes so a test (or a curious technician) can read them back.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

from gateway.history.service import Period, Threshold
from gateway.htmlescape import escape as html_escape
from gateway.i18n import _

WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 14, 30
SEVERITY_COLOUR = {"minor": "#f9a825", "moderate": "#ef6c00", "severe": "#c62828", "extreme": "#8e0000"}


# xml.sax.saxutils has the same two, but importing it imports urllib.request and http.client (~0.7 MB);
# gateway.htmlescape is html.escape without the html package's entity tables.
def escape(text: str) -> str:
    """Text content: & < > as entities."""
    return html_escape(text, quote=False)


def quoteattr(text: str) -> str:
    """An attribute value with its double quotes; & < > " ' as entities."""
    return f'"{html_escape(text)}"'


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    span = high - low
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step) + 1)]


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def render_trend(point: str, unit: str, start: float, end: float, step: int, buckets: Sequence[dict[str, Any]],
                 thresholds: Sequence[Threshold], periods: Sequence[Period]) -> str:
    values = [v for b in buckets for v in (b.get("low"), b.get("high")) if v is not None]
    levels = [t.level for t in thresholds]
    low, high = min(values + levels, default=0.0), max(values + levels, default=1.0)
    if high - low < 1e-9:
        low, high = low - 1.0, high + 1.0
    pad = (high - low) * 0.08
    low, high = low - pad, high + pad
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: float) -> float:
        return LEFT + (t - start) / (end - start) * plot_w

    def y(v: float) -> float:
        return TOP + (high - v) / (high - low) * plot_h

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="trend-chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
           f'width="{WIDTH}" height="{HEIGHT}" role="img" data-point={quoteattr(point)} '
           f'data-buckets="{len(buckets)}" data-step="{step}" data-thresholds="{len(thresholds)}" '
           f'data-alarm-periods="{len(periods)}">',
           f"<title>{escape(point)} ({escape(unit)})</title>",
           f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fafbfc" stroke="#d0d4da"/>']
    for period in periods:
        x1, x2 = x(max(period.start, start)), x(min(period.end if period.end is not None else end, end))
        out.append(f'<rect class="alarm-period" x="{x1:.1f}" y="{TOP}" width="{max(x2 - x1, 1.5):.1f}" '
                   f'height="{plot_h}" fill="{SEVERITY_COLOUR.get(period.severity, "#c62828")}" fill-opacity="0.15">'
                   f"<title>{escape(_('alarm {rule}').format(rule=period.rule))}</title></rect>")
    for tick in _ticks(low, high):
        out.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(tick):.1f}" y2="{y(tick):.1f}" stroke="#eceef1"/>'
                   f'<text x="{LEFT - 4}" y="{y(tick) + 4:.1f}" text-anchor="end" font-size="11" fill="#555">'
                   f"{escape(_fmt(tick))}</text>")
    hours = (end - start) / 3600
    every = 600 if hours <= 1.5 else 3600 * max(1, round(hours / 8))
    for t in range(int(math.ceil(start / every) * every), int(end) + 1, every):
        label = time.strftime("%H:%M", time.localtime(t))
        out.append(f'<text x="{x(t):.1f}" y="{HEIGHT - 10}" text-anchor="middle" font-size="11" fill="#555">'
                   f"{label}</text>")
    band = [(b["t"], b["low"], b["high"]) for b in buckets if b.get("low") is not None]
    if band:
        upper = " ".join(f"{x(t + step / 2):.1f},{y(h):.1f}" for t, _l, h in band)
        lower = " ".join(f"{x(t + step / 2):.1f},{y(lo):.1f}" for t, lo, _h in reversed(band))
        out.append(f'<polygon class="trend-band" points="{upper} {lower}" fill="#1565c0" fill-opacity="0.15"/>')
    for segment in _segments(buckets, step):
        coords = " ".join(f"{x(t + step / 2):.1f},{y(v):.1f}" for t, v in segment)
        out.append(f'<polyline class="trend" points="{coords}" fill="none" stroke="#1565c0" stroke-width="2" '
                   f'data-values="{" ".join(_fmt(v) for _t, v in segment)}"/>')
        if len(segment) == 1:  # a lone minute: a line of one point is invisible
            lone_t, lone_v = segment[0]
            out.append(f'<circle cx="{x(lone_t + step / 2):.1f}" cy="{y(lone_v):.1f}" r="3" fill="#1565c0"/>')
    for threshold in thresholds:
        colour = SEVERITY_COLOUR.get(threshold.severity, "#c62828")
        label = (_("above {level} ({rule})") if threshold.side == "above" else _("below {level} ({rule})")).format(
            level=_fmt(threshold.level), rule=threshold.rule)
        out.append(f'<line class="threshold" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(threshold.level):.1f}" '
                   f'y2="{y(threshold.level):.1f}" stroke="{colour}" stroke-dasharray="6 4" stroke-width="1.5" '
                   f'data-level="{_fmt(threshold.level)}"/>'
                   f'<text x="{WIDTH - RIGHT - 4}" y="{y(threshold.level) - 4:.1f}" text-anchor="end" font-size="11" '
                   f'fill="{colour}">{escape(label)}</text>')
    if not buckets:
        out.append(f'<text class="no-data" x="{LEFT + plot_w / 2}" y="{TOP + plot_h / 2}" text-anchor="middle" '
                   f'font-size="14" fill="#888">{escape(_("no data in this span yet"))}</text>')
    out.append(f'<text x="{LEFT}" y="{TOP - 3}" font-size="11" fill="#555">{escape(unit)}</text></svg>')
    return "".join(out)


def _segments(buckets: Sequence[dict[str, Any]], step: int) -> list[list[tuple[float, float]]]:
    """Mean values joined into lines; a gap longer than the report heartbeat (or 3 steps) breaks the line."""
    gap = max(3 * step, 900)
    segments: list[list[tuple[float, float]]] = []
    previous: float | None = None
    for b in buckets:
        if b.get("mean") is None:
            continue
        t = float(b["t"])
        if previous is None or t - previous > gap:
            segments.append([])
        segments[-1].append((t, float(b["mean"])))
        previous = t
    return segments
