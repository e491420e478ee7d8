"""The status page's content as plain text, for `fieldgate status` in a terminal."""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Mapping
from typing import Any

from gateway.i18n import _
from gateway.status.view import overdue_loops


def _dicts(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def fmt_value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def fmt_age(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or isinstance(seconds, bool):
        return "—"
    if seconds < 60:
        return _("{n} s").format(n=f"{seconds:.1f}")
    if seconds < 3600:
        return _("{n} min").format(n=f"{seconds / 60:.1f}")
    return _("{n} h").format(n=f"{seconds / 3600:.1f}")


def fmt_time(epoch: Any) -> str:
    if not isinstance(epoch, int | float) or isinstance(epoch, bool):
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(epoch))


def width(text: str) -> int:
    """Terminal columns: a CJK character takes two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(width(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  " + "  ".join(cell + " " * (w - width(cell)) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in [header, *rows]]


def quality_label(code: Any) -> str:
    labels = {"good": _("good"), "comm_fail": _("communication failed"), "stale": _("stale"),
              "bad_frame": _("bad frame"), "device_error": _("device error"), "out_of_range": _("out of range"),
              "uncertain": _("uncertain")}
    return labels.get(str(code), str(code)) if code is not None else "—"


def render_summary(snapshot: Mapping[str, Any]) -> str:
    gw = snapshot.get("gateway") if isinstance(snapshot.get("gateway"), Mapping) else {}
    assert isinstance(gw, Mapping)
    late = overdue_loops(snapshot)
    health = _("OVERDUE: {names}").format(names=", ".join(late)) if late else _("healthy")
    lines = [_("gateway {gateway} — up {age} — {health}").format(
        gateway=f"{gw.get('id', '?')} {gw.get('name') or ''}".rstrip(), age=fmt_age(gw.get("uptime_s")),
        health=health)]
    points = _dicts(snapshot.get("points"))
    lines.append(_("points ({count})").format(count=len(points)))
    if points:
        lines += _table([[str(p.get("point", "?")), fmt_value(p.get("value")), str(p.get("unit") or ""),
                          quality_label(p.get("q")), fmt_age(p.get("age_s"))] for p in points],
                        [_("point"), _("value"), _("unit"), _("quality"), _("age")])
    devices = _dicts(snapshot.get("devices"))
    online = sum(1 for d in devices if d.get("online"))
    lines.append(_("devices ({online}/{count} online)").format(online=online, count=len(devices)))
    if devices:
        lines += _table([[str(d.get("bus", "")), str(d.get("device", "?")), str(d.get("unit_id", "")),
                          _("online") if d.get("online") else _("OFFLINE"), fmt_value(d.get("polls")),
                          fmt_value(d.get("errors"))] for d in devices],
                        [_("bus"), _("device"), _("unit"), _("state"), _("polls"), _("errors")])
    links = _dicts(snapshot.get("links"))
    lines.append(_("links ({count})").format(count=len(links)))
    if links:
        lines += _table([[str(x.get("name", "?")), str(x.get("type", "")),
                          _("connected") if x.get("connected") else _("DISCONNECTED"),
                          fmt_value(x.get("sent_messages")), fmt_value(x.get("failed_sends")),
                          fmt_value(x.get("backlog"))] for x in links],
                        [_("link"), _("type"), _("state"), _("sent"), _("failed"), _("backlog")])
    journal = snapshot.get("journal") if isinstance(snapshot.get("journal"), Mapping) else {}
    assert isinstance(journal, Mapping)
    lines.append(_("journal: backlog {backlog}, oldest unsent {oldest}, committed {committed}, drops {drops}").format(
        backlog=fmt_value(journal.get("backlog")), oldest=fmt_age(journal.get("oldest_age_s")),
        committed=fmt_value(journal.get("committed")), drops=fmt_value(journal.get("drops"))))
    alarms = _dicts(snapshot.get("alarms"))
    lines.append(_("alarms ({count})").format(count=len(alarms)))
    if alarms:
        lines += _table([[str(a.get("alarm_id", "?")), str(a.get("rule", "")), str(a.get("severity", "")),
                          str(a.get("state", "")), fmt_time(a.get("since"))] for a in alarms[-20:]],
                        [_("alarm"), _("rule"), _("severity"), _("state"), _("since")])
    evidence = _dicts(snapshot.get("evidence"))
    if evidence:
        lines.append(_("broadcast evidence (latest {shown} of {count})").format(
            shown=min(5, len(evidence)), count=len(evidence)))
        lines += [f"  {dict(e)}"[:200] for e in evidence[-5:]]
    for camera in _dicts(snapshot.get("cameras")):
        state = str(camera.get("state", "?"))
        fault = f": {camera.get('fault')}" if camera.get("fault") else ""
        lines.append(f"camera {camera.get('name', '?')}: {'FAILED' if state == 'failed' else state}{fault}"[:300])
    snap = snapshot.get("snapshot")
    if isinstance(snap, Mapping) and snap.get("path"):
        lines.append(_("camera snapshot: {camera} {time} {path}").format(
            camera=snap.get("camera", ""), time=fmt_time(snap.get("ts")), path=snap.get("path")))
    return "\n".join(lines)
