"""Broadcast evidence and alarm transitions as a sentence for the operator, in the reader's language.

The records themselves stay as they are (English reasons, machine keys): they are evidence, hashed into
the audit chain and sent upstream. Only what a person reads is put into words here. A reason the interlock
gives as fixed text (marked ``N_`` there) is translated; one with values in it is shown as it is.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from gateway.i18n import _


def _when(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%SZ ", time.gmtime(value))


def reason(text: Any) -> str:
    return _(str(text)) if text else ""


def transition_word(kind: Any) -> str:
    words = {"raised": _("raised"), "acknowledged": _("acknowledged"), "cleared": _("cleared")}
    return words.get(str(kind), str(kind))


def describe_evidence(record: Mapping[str, Any]) -> str:
    """One line for the page's evidence list."""
    kind = str(record.get("type", ""))
    when = _when(record.get("ts"))
    if kind == "broadcast_decision":
        alert = record.get("alert") if isinstance(record.get("alert"), Mapping) else {}
        assert isinstance(alert, Mapping)
        verdict = _("accepted") if record.get("accepted") else _("refused")
        text = _("decision on '{event}' ({status}) from {origin}: {verdict}").format(
            event=alert.get("event", "?"), status=alert.get("status", "?"), origin=record.get("origin", "?"),
            verdict=verdict)
        why = [] if record.get("accepted") else [reason(record.get("reason"))]
        skipped = record.get("skipped")
        if isinstance(skipped, Mapping):
            why += [f"{name}: {reason(text)}" for name, text in skipped.items()]
        return when + text + (" — " + "; ".join(w for w in why if w) if any(why) else "")
    if kind == "broadcast_output":
        outcome = _("ok") if record.get("ok") else _("FAILED ({fault})").format(fault=record.get("fault", "?"))
        return when + _("output {output} {action}: {outcome}").format(
            output=record.get("output", "?"), action=record.get("action", "?"), outcome=outcome)
    if kind in ("broadcast_cancel", "broadcast_stopped"):
        return when + _("cancel of {alert} by {by}").format(alert=record.get("alert_id", "?"),
                                                          by=record.get("by", "?"))
    if kind == "broadcast_commission":
        return when + _("commissioning report {report}: {verdict}").format(
            report=record.get("report", "?"), verdict=_("passed") if record.get("passed") else _("not passed"))
    return when + kind.removeprefix("broadcast_")
