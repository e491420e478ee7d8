"""The camera view as one SVG: the held frame as an image, ROI (green), exclusions (grey), expected-flame
zones (orange), the model's detections on that frame (red: fire, blue-grey: smoke) and, after a test,
the tested detections with what the pipeline would make of each. All text escaped; counts in data-."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from gateway.i18n import _
from gateway.vision.config import Polygon, VisionSettings

MAX_TESTED_DRAWN = 12
LABELLED = 3
ROLE_COLOUR = {"fire": "#ff1744", "smoke": "#90a4ae", "flame_out": "#ff9100"}


def _polygon(poly: Polygon, w: int, h: int, cls: str, stroke: str, fill: str, label: str) -> str:
    points = " ".join(f"{x * w:.1f},{y * h:.1f}" for x, y in poly.points)
    name = f"{label} {poly.name}".strip()
    return (f'<polygon class="{cls}" points="{points}" fill="{fill}" fill-opacity="0.18" stroke="{stroke}" '
            f'stroke-width="{max(1.5, w / 400):.1f}"><title>{escape(name)}</title></polygon>')


def _box(box: Sequence[Any], cls: str, dashed: bool, text: str) -> str:
    x1, y1, x2, y2, role = float(box[0]), float(box[1]), float(box[2]), float(box[3]), str(box[4])
    colour = ROLE_COLOUR.get(role, "#ffd600")
    dash = ' stroke-dasharray="8 5"' if dashed else ""
    return (f'<g class="{cls}" data-role={quoteattr(role)}><rect x="{x1:.1f}" y="{y1:.1f}" width="{x2 - x1:.1f}" '
            f'height="{y2 - y1:.1f}" fill="none" stroke="{colour}" stroke-width="3"{dash}/>'
            + (f'<text x="{x1 + 2:.1f}" y="{max(y1 - 4, 12):.1f}" font-size="14" fill="{colour}" stroke="#000" '
               f'stroke-width="0.4">{escape(text)}</text>' if text else f"<title>{escape(str(box[4]))}</title>")
            + "</g>")


def render_camera(camera: VisionSettings, size: tuple[int, int], image_url: str,
                  detections: Sequence[Sequence[Any]], probe: dict[str, Any] | None = None) -> str:
    w, h = size
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="camera-view" viewBox="0 0 {w} {h}" width="{w}" '
           f'height="{h}" data-camera={quoteattr(camera.name)} data-roi="{len(camera.roi)}" '
           f'data-exclusions="{len(camera.exclusions)}" data-expected-flames="{len(camera.expected_flames)}" '
           f'data-boxes="{len(detections)}" data-tested="{len(probe["detections"]) if probe else 0}">',
           f'<image href={quoteattr(image_url)} x="0" y="0" width="{w}" height="{h}"/>']
    out += [_polygon(p, w, h, "roi", "#00c853", "#00c853", _("region of interest")) for p in camera.roi]
    out += [_polygon(p, w, h, "exclusion", "#eceff1", "#263238", _("excluded")) for p in camera.exclusions]
    out += [_polygon(p, w, h, "expected-flame", "#ff9100", "#ff9100", _("expected flame"))
            for p in camera.expected_flames]
    out += [_box(d, "detection", False, f"{d[4]} {float(d[5]):.2f}") for d in detections]
    verdicts = {"counts": _("would count"), "outside_roi": _("outside the ROI"), "excluded": _("excluded"),
                "expected_flame": _("expected flame"), "below_threshold": _("below threshold")}
    tested = sorted((probe or {}).get("detections", []), key=lambda d: -float(d["score"]))[:MAX_TESTED_DRAWN]
    for rank, d in enumerate(tested):
        text = f"{d['role']} {float(d['score']):.2f} — {verdicts.get(d['verdict'], d['verdict'])}"
        # Overlapping candidates crowd the frame: the best few are labelled, the rest drawn only.
        out.append(_box([*d["box"], d["role"]], f"tested {d['verdict']}", True, text if rank < LABELLED else ""))
    out.append("</svg>")
    return "".join(out)
