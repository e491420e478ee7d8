"""The status page's words, in the request's language: the HTML's fixed text and the script's labels.

Every string here is a catalog message (gateway/i18n/locale). The page itself is static; the server
fills the HTML template with ``page_words()`` (escaped) and hands the script its labels as JSON in a
``data-`` attribute of ``<body>`` (no inline script: the CSP forbids it).
"""

from __future__ import annotations

from gateway.i18n import _


def page_words() -> dict[str, str]:
    """The HTML template's placeholders."""
    return {
        "title": _("fieldgate status"),
        "loading": _("loading"),
        "points": _("Points"),
        "point": _("point"),
        "value": _("value"),
        "unit": _("unit"),
        "quality": _("quality"),
        "age": _("age"),
        "devices": _("Devices"),
        "bus": _("bus"),
        "device": _("device"),
        "unit_id": _("unit id"),
        "state": _("state"),
        "polls": _("polls"),
        "errors": _("errors"),
        "links": _("Links"),
        "link": _("link"),
        "type": _("type"),
        "sent": _("sent"),
        "failed": _("failed"),
        "backlog": _("backlog"),
        "journal": _("Journal"),
        "loops": _("Loops"),
        "alarms": _("Active alarms"),
        "alarm": _("alarm"),
        "rule": _("rule"),
        "severity": _("severity"),
        "since": _("since"),
        "evidence": _("Broadcast evidence"),
        "camera": _("Camera"),
        "no_snapshot": _("no snapshot"),
        "snapshot_alt": _("latest camera snapshot"),
        "technician": _("Technician"),
        "user": _("user"),
        "password": _("password"),
        "log_in": _("Log in"),
        "log_out": _("Log out"),
        "probe": _("Probe a device"),
        "address": _("address"),
        "read": _("Read"),
        "selftest": _("Broadcast outputs self-test"),
        "trends": _("Trends"),
        "last_hour": _("last hour"),
        "last_day": _("last 24 h"),
        "no_trend": _("Choose a point to see its trend."),
        "alarm_history": _("Alarm history"),
        "time": _("time"),
        "event": _("event"),
        "by": _("by"),
        "camera_view": _("Camera view: aim and masks"),
        "refresh_frame": _("Refresh frame"),
        "test_detector": _("Test the detector on this frame"),
        "logins_off": _("Logins are off on this box: set status.users_file in the site file (docs/status.md)."),
    }


def script_words() -> dict[str, str]:
    """Labels the page's script writes (it never builds text of its own)."""
    return {
        "healthy": _("healthy"),
        "overdue": _("OVERDUE: {names}"),
        "up": _("up {age}"),
        "updated": _("updated {time}"),
        "not_answering": _("gateway not answering: {reason}"),
        "online": _("online"),
        "offline": _("offline"),
        "connected": _("connected"),
        "disconnected": _("disconnected"),
        "loop_ok": _("{name} — ok"),
        "loop_overdue": _("{name} — overdue"),
        "no_loops": _("No loops supervised (the gateway is not running under `fieldgate run`)."),
        "j_backlog": _("backlog"),
        "j_oldest": _("oldest unsent"),
        "j_committed": _("committed"),
        "j_drops": _("drops"),
        "logged_in_as": _("logged in as {user}"),
        "confirm_selftest": _("Run the broadcast outputs self-test now?"),
        "q_good": _("good"),
        "q_comm_fail": _("communication failed"),
        "q_stale": _("stale"),
        "q_bad_frame": _("bad frame"),
        "q_device_error": _("device error"),
        "q_out_of_range": _("out of range"),
        "q_uncertain": _("uncertain"),
        "st_active": _("active"),
        "st_acknowledged": _("acknowledged"),
        "no_trend_here": _("No trend for this point (history is off, or the point is unknown)."),
        "tr_raised": _("raised"),
        "tr_acknowledged": _("acknowledged"),
        "tr_cleared": _("cleared"),
        "by_rules": _("rules"),
        "frame_age": _("frame taken {age} ago"),
        "no_frame": _("No frame from this camera yet."),
        "tested": _("{count} of {total} detections would count (before temporal confirmation)."),
        "sec": _("{n} s"),
        "min": _("{n} min"),
        "hour": _("{n} h"),
    }
