"""The status page's content as plain text, for `fieldgate status` in a terminal."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

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
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def fmt_time(epoch: Any) -> str:
    if not isinstance(epoch, int | float) or isinstance(epoch, bool):
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(epoch))


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
            for row in [header, *rows]]


def render_summary(snapshot: Mapping[str, Any]) -> str:
    gw = snapshot.get("gateway") if isinstance(snapshot.get("gateway"), Mapping) else {}
    assert isinstance(gw, Mapping)
    late = overdue_loops(snapshot)
    health = "OVERDUE: " + ", ".join(late) if late else "healthy"
    lines = [f"gateway {gw.get('id', '?')} {gw.get('name') or ''}".rstrip()
             + f" — up {fmt_age(gw.get('uptime_s'))} — {health}"]
    points = _dicts(snapshot.get("points"))
    lines.append(f"points ({len(points)})")
    if points:
        lines += _table([[str(p.get("point", "?")), fmt_value(p.get("value")), str(p.get("unit") or ""),
                          str(p.get("q", "—")), fmt_age(p.get("age_s"))] for p in points],
                        ["point", "value", "unit", "quality", "age"])
    devices = _dicts(snapshot.get("devices"))
    online = sum(1 for d in devices if d.get("online"))
    lines.append(f"devices ({online}/{len(devices)} online)")
    if devices:
        lines += _table([[str(d.get("bus", "")), str(d.get("device", "?")), str(d.get("unit_id", "")),
                          "online" if d.get("online") else "OFFLINE", fmt_value(d.get("polls")),
                          fmt_value(d.get("errors"))] for d in devices],
                        ["bus", "device", "unit", "state", "polls", "errors"])
    links = _dicts(snapshot.get("links"))
    lines.append(f"links ({len(links)})")
    if links:
        lines += _table([[str(x.get("name", "?")), str(x.get("type", "")),
                          "connected" if x.get("connected") else "DISCONNECTED", fmt_value(x.get("sent_messages")),
                          fmt_value(x.get("failed_sends")), fmt_value(x.get("backlog"))] for x in links],
                        ["link", "type", "state", "sent", "failed", "backlog"])
    journal = snapshot.get("journal") if isinstance(snapshot.get("journal"), Mapping) else {}
    assert isinstance(journal, Mapping)
    lines.append(f"journal: backlog {fmt_value(journal.get('backlog'))}, oldest unsent "
                 f"{fmt_age(journal.get('oldest_age_s'))}, committed {fmt_value(journal.get('committed'))}, "
                 f"drops {fmt_value(journal.get('drops'))}")
    alarms = _dicts(snapshot.get("alarms"))
    lines.append(f"alarms ({len(alarms)})")
    if alarms:
        lines += _table([[str(a.get("alarm_id", "?")), str(a.get("rule", "")), str(a.get("severity", "")),
                          str(a.get("state", "")), fmt_time(a.get("since"))] for a in alarms[-20:]],
                        ["alarm", "rule", "severity", "state", "since"])
    evidence = _dicts(snapshot.get("evidence"))
    if evidence:
        lines.append(f"broadcast evidence (latest {min(5, len(evidence))} of {len(evidence)})")
        lines += [f"  {dict(e)}"[:200] for e in evidence[-5:]]
    for camera in _dicts(snapshot.get("cameras")):
        state = str(camera.get("state", "?"))
        fault = f": {camera.get('fault')}" if camera.get("fault") else ""
        lines.append(f"camera {camera.get('name', '?')}: {'FAILED' if state == 'failed' else state}{fault}"[:300])
    snap = snapshot.get("snapshot")
    if isinstance(snap, Mapping) and snap.get("path"):
        lines.append(f"camera snapshot: {snap.get('camera', '')} {fmt_time(snap.get('ts'))} {snap.get('path')}")
    return "\n".join(lines)
