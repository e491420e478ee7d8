"""``html.escape`` without importing ``html``: that package's import builds the HTML5 entity tables
(~0.4 MB of Python heap) that a daemon which only escapes never reads (issue 18, bench/RESULTS.md).
Same output as ``html.escape`` (tests/unit/test_htmlescape.py compares them)."""

from __future__ import annotations

# One pass over the text, so the "&" of an entity already written is never escaped again.
_QUOTED = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"})
_UNQUOTED = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def escape(text: str, quote: bool = True) -> str:
    """& < > as entities, and with ``quote`` also " and '."""
    return text.translate(_QUOTED if quote else _UNQUOTED)
