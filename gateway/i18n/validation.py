"""The common config errors in the reader's language: wrong type, out of range, not one of the choices.

Pydantic words its errors in English only. The loader asks here first, by error type, with the same
``ctx`` pydantic gives (``ge``, ``expected``...); the English catalog repeats pydantic's own wording, so
an English reader sees what pydantic would have said. Errors not listed here (a validator's own text)
are shown as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gateway.i18n import _

Wording = Callable[[Mapping[str, Any]], str]


def _ctx(name: str, ctx: Mapping[str, Any]) -> str:
    return str(ctx.get(name, "?"))


_WORDING: dict[str, Wording] = {
    "int_type": lambda c: _("Input should be a valid integer"),
    "int_parsing": lambda c: _("Input should be a valid integer, unable to parse string as an integer"),
    "int_from_float": lambda c: _("Input should be a valid integer, got a number with a fractional part"),
    "float_type": lambda c: _("Input should be a valid number"),
    "float_parsing": lambda c: _("Input should be a valid number, unable to parse string as a number"),
    "bool_type": lambda c: _("Input should be a valid boolean"),
    "bool_parsing": lambda c: _("Input should be a valid boolean, unable to interpret input"),
    "string_type": lambda c: _("Input should be a valid string"),
    "list_type": lambda c: _("Input should be a valid list"),
    "dict_type": lambda c: _("Input should be a valid dictionary"),
    "model_type": lambda c: _("Input should be a mapping (key: value)"),
    "model_attributes_type": lambda c: _("Input should be a mapping (key: value)"),
    "greater_than": lambda c: _("Input should be greater than {limit}").format(limit=_ctx("gt", c)),
    "greater_than_equal": lambda c: _("Input should be greater than or equal to {limit}").format(limit=_ctx("ge", c)),
    "less_than": lambda c: _("Input should be less than {limit}").format(limit=_ctx("lt", c)),
    "less_than_equal": lambda c: _("Input should be less than or equal to {limit}").format(limit=_ctx("le", c)),
    "literal_error": lambda c: _("Input should be {expected}").format(expected=_ctx("expected", c)),
    "enum": lambda c: _("Input should be {expected}").format(expected=_ctx("expected", c)),
    "string_too_short": lambda c: _("String should have at least {count} characters").format(
        count=_ctx("min_length", c)),
    "string_too_long": lambda c: _("String should have at most {count} characters").format(
        count=_ctx("max_length", c)),
    "too_short": lambda c: _("List should have at least {count} items").format(count=_ctx("min_length", c)),
    "too_long": lambda c: _("List should have at most {count} items").format(count=_ctx("max_length", c)),
    "string_pattern_mismatch": lambda c: _("String should match pattern '{pattern}'").format(
        pattern=_ctx("pattern", c)),
}


def pydantic_message(kind: str, ctx: Mapping[str, Any] | None) -> str | None:
    """The reader's wording of a pydantic error of type ``kind``, or None to keep pydantic's own."""
    wording = _WORDING.get(kind)
    return wording(ctx or {}) if wording is not None else None
