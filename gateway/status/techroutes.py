"""The technician's extra views: trend charts, alarm history, the camera view (read-only, no login), and
the logged-in actions that need more than the gateway's control object (test the detector, commission).

They read the gateway's HistoryService (gateway/history); a view without one (a test double, history
switched off) answers 404 with the reason. Point names in a request are only looked up, never used
in a path or in markup unescaped.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from gateway.camview import TAP, HeldFrame, age_s
from gateway.history.service import HistoryService
from gateway.i18n import speaking
from gateway.status.http import Request, Response

if TYPE_CHECKING:  # the camera view's drawing, probe and models: imported by a page that shows a camera
    from gateway.vision.config import VisionSettings

REPORT_NAME = re.compile(r"commission-[A-Za-z0-9_.-]{1,80}-\d{8}T\d{6}Z\.(html|pdf)")
SPANS = {"1h": 3600.0, "24h": 86400.0, "7d": 7 * 86400.0}
MAX_ALARM_ROWS = 200

Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class TechSources:
    """What these views read: the trend history and the running gateway (None where there is none)."""

    history: HistoryService | None = None
    gateway: Any = None
    control: Any = None  # the gateway's control object (gateway/control.py): commissioning


def sources_of(view: Any) -> TechSources:
    """The status view is the gateway's control object; its gateway holds the history."""
    gateway = getattr(view, "gateway", None)
    control = view if hasattr(view, "commission") else None
    return TechSources(history=getattr(gateway, "history", None), gateway=gateway, control=control)


def _arg(request: Request, name: str, default: str = "") -> str:
    values = request.query.get(name) or [default]
    return values[0][:200]


class TechRoutes:
    def __init__(self, sources: TechSources, language: Callable[[Request], str],
                 json_response: Callable[[HTTPStatus, Any], Response]) -> None:
        self.sources = sources
        self.language = language
        self.json = json_response

        self.actions: dict[str, Callable[[dict[str, Any], str, str], Awaitable[dict[str, Any]]]] = {
            "detect": self.detect, "commission": self.commission}

    def get_routes(self) -> dict[str, Handler]:
        return {"/trend.svg": self.trend, "/api/trend-points": self.trend_points,
                "/api/alarm-history": self.alarm_history, "/api/cameras": self.cameras,
                "/camera.svg": self.camera_svg, "/camera.jpg": self.camera_jpg,
                "/commission-report": self.commission_report}

    def _history(self) -> HistoryService:
        if self.sources.history is None:
            raise LookupError("no trend history on this gateway (history.enabled is false, or it could not open)")
        return self.sources.history

    async def trend(self, request: Request) -> Response:
        try:
            history = self._history()
        except LookupError as exc:
            return Response.text(HTTPStatus.NOT_FOUND, f"{exc}\n")
        point, span_name = _arg(request, "point"), _arg(request, "span", "1h")
        span = SPANS.get(span_name)
        if span is None:
            return Response.text(HTTPStatus.BAD_REQUEST, f"span must be one of {', '.join(SPANS)}\n")
        if point not in self._known_points(history):
            return Response.text(HTTPStatus.NOT_FOUND, "no such point\n")
        now = time.time()
        step, buckets = await asyncio.to_thread(history.series, point, span, now)
        periods = await asyncio.to_thread(history.alarm_periods, point, now - span)
        from gateway.history.chart import render_trend  # on the first chart asked for (issue 18, idle memory)

        with speaking(self.language(request)):
            svg = render_trend(point, history.units.get(point, ""), now - span, now, step, buckets,
                               history.thresholds.get(point, []), periods)
        return Response(HTTPStatus.OK, svg.encode("utf-8"), "image/svg+xml; charset=utf-8")

    def _known_points(self, history: HistoryService) -> set[str]:
        known = set(history.units) | set(history.thresholds)
        gateway = self.sources.gateway
        latest = getattr(gateway, "latest", None)
        if isinstance(latest, dict):
            known |= set(latest)
        config = getattr(gateway, "config", None)
        for bus in getattr(config, "buses", []):
            for device in bus.devices:
                known |= {p.id for p in device.points}
        return known

    async def trend_points(self, _request: Request) -> Response:
        try:
            history = self._history()
        except LookupError as exc:
            return self.json(HTTPStatus.NOT_FOUND, {"error": str(exc)})
        points = sorted(self._known_points(history))
        # The first point a rule watches is what a technician is sent to look at (the water level, not a relay).
        default = next((p for p in points if p in history.thresholds), points[0] if points else None)
        return self.json(HTTPStatus.OK, {"points": points, "default": default, "spans": list(SPANS)})

    async def alarm_history(self, _request: Request) -> Response:
        try:
            history = self._history()
        except LookupError as exc:
            return self.json(HTTPStatus.NOT_FOUND, {"error": str(exc)})
        rows = await asyncio.to_thread(history.alarm_rows, 0.0, MAX_ALARM_ROWS)
        return self.json(HTTPStatus.OK, {"alarms": [row.to_json() for row in reversed(rows)]})

    # -- the camera view -------------------------------------------------------------------------

    def _camera_configs(self) -> dict[str, VisionSettings]:
        config = getattr(self.sources.gateway, "config", None)
        return {c.name: c for c in getattr(config, "cameras", [])}

    async def cameras(self, _request: Request) -> Response:
        listed = []
        for name in sorted(self._camera_configs()):
            held = TAP.latest(name)
            listed.append({"name": name, "frame": held is not None, "t": held.t if held else None,
                           "age_s": age_s(held) if held else None, "size": list(held.size) if held else None,
                           "boxes": len(held.detections) if held else 0, "tested": name in TAP.probes})
        return self.json(HTTPStatus.OK, {"cameras": listed})

    def _held(self, request: Request) -> tuple[VisionSettings, HeldFrame]:
        name = _arg(request, "camera")
        camera = self._camera_configs().get(name)
        if camera is None:
            raise LookupError("no such camera")
        held = TAP.latest(name)
        if held is None:
            raise LookupError("no frame from this camera yet (is it running? the vision extra installed?)")
        return camera, held

    async def camera_svg(self, request: Request) -> Response:
        try:
            camera, held = self._held(request)
        except LookupError as exc:
            return Response.text(HTTPStatus.NOT_FOUND, f"{exc}\n")
        probe = TAP.probes.get(camera.name)
        if probe is not None and probe.get("t") != held.t:
            probe = None  # a test of an older frame is not drawn on this one
        url = f"/camera.jpg?camera={quote(camera.name)}&t={held.t:.3f}"
        from gateway.camview.overlay import render_camera

        with speaking(self.language(request)):
            svg = render_camera(camera, held.size, url, held.detections, probe)
        return Response(HTTPStatus.OK, svg.encode("utf-8"), "image/svg+xml; charset=utf-8")

    async def camera_jpg(self, request: Request) -> Response:
        try:
            camera, held = self._held(request)
        except LookupError as exc:
            return Response.text(HTTPStatus.NOT_FOUND, f"{exc}\n")
        return Response(HTTPStatus.OK, await asyncio.to_thread(_jpeg, camera, held), "image/jpeg")

    async def detect(self, args: dict[str, Any], user: str, _language: str) -> dict[str, Any]:
        camera = self._camera_configs().get(str(args.get("camera")))
        if camera is None:
            raise LookupError(f"no camera named '{args.get('camera')}'")
        held = TAP.latest(camera.name)
        if held is None:
            raise LookupError(f"no frame from camera '{camera.name}' yet")
        with tempfile.TemporaryDirectory(prefix="fieldgate-probe-") as tmp:
            jpeg = Path(tmp) / "frame.jpg"
            jpeg.write_bytes(await asyncio.to_thread(_jpeg, camera, held, 1_000_000))
            from gateway.camview.probe import run_probe

            result = await run_probe(camera, jpeg, held.size)
        result.update({"camera": camera.name, "t": held.t, "by": user})
        TAP.probes[camera.name] = result
        return result

    # -- commissioning ---------------------------------------------------------------------------

    async def commission(self, args: dict[str, Any], user: str, language: str) -> dict[str, Any]:
        from gateway.alerts.model import Alert
        from gateway.alerts.signing import OperatorSignature
        control = self.sources.control
        if control is None:
            raise LookupError("commissioning needs the running gateway")
        request = None
        body = args.get("request")
        if body is not None:
            try:
                request = (Alert.model_validate(body.get("alert")),
                           [OperatorSignature.model_validate(s) for s in body.get("signatures", [])])
            except (ValueError, AttributeError) as exc:
                raise ValueError(f"bad Test request: {exc}") from None
        outcome: dict[str, Any] = await control.commission(
            by=f"{user} (status page)", wait_s=float(args.get("wait_s", 20.0)), request=request, language=language)
        outcome["html"], outcome["pdf"] = Path(outcome["html"]).name, Path(outcome["pdf"]).name
        return outcome

    async def commission_report(self, request: Request) -> Response:
        """A report this gateway wrote (the name only, checked; never a path from the request)."""
        name = _arg(request, "name")
        control = self.sources.control
        if control is None or not REPORT_NAME.fullmatch(name):
            return Response.text(HTTPStatus.NOT_FOUND, "no such report\n")
        path = control.commission_reports() / name
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError:
            return Response.text(HTTPStatus.NOT_FOUND, "no such report\n")
        kind = "application/pdf" if name.endswith(".pdf") else "text/html; charset=utf-8"
        return Response(HTTPStatus.OK, data, kind, {"Content-Disposition": f'attachment; filename="{name}"'})


def _jpeg(camera: VisionSettings, held: HeldFrame, max_width: int = 1280) -> bytes:
    from gateway.registry import build_camera  # the camera driver (OpenCV): only where there are cameras

    return build_camera(camera).encode_jpeg(held.image, (), 85, max_width)
