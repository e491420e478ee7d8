"""Canonical JSON (RFC 8785, JCS) for the values a command carries.

The signature covers bytes, not objects, so gateway and platform must turn the same
object into the same bytes whatever their language. RFC 8785 fixes that: object keys
sorted by UTF-16 code units, no whitespace, strings escaped as ECMAScript
``JSON.stringify`` does, numbers in ECMAScript ``Number.prototype.toString`` form
(1.0 -> "1", 1e-7 -> "1e-7", 1e21 -> "1e+21"). Libraries exist for most platforms
(Java, Go, JS, .NET, Python ``jcs``); this is a dependency-free implementation of the
subset fieldgate needs, refusing what JCS cannot carry exactly.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

MAX_SAFE_INTEGER = 2**53 - 1  # larger integers do not survive a round trip through an IEEE double
MAX_DEPTH = 16


class CanonicalError(ValueError):
    """The value cannot be encoded canonically (NaN, a huge integer, a lone surrogate, too deep...)."""


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of ``value`` (dict, list, str, int, float, bool, None)."""
    out: list[str] = []
    _write(value, out, 0)
    try:
        return "".join(out).encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate in a str
        raise CanonicalError("string is not valid Unicode (lone surrogate)") from exc


def _write(value: Any, out: list[str], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise CanonicalError(f"nested deeper than {MAX_DEPTH} levels")
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        if abs(value) <= MAX_SAFE_INTEGER:
            out.append(str(value))
        else:
            # JCS numbers are doubles: a big integer is accepted only when its text is exactly
            # what a JCS signer prints for that double, so both sides sign the same text.
            try:
                text = number_text(float(value))
            except OverflowError:
                text = ""
            if text != str(value):
                raise CanonicalError(f"integer {value} cannot be carried exactly by a JSON number (double)")
            out.append(text)
    elif isinstance(value, float):
        out.append(number_text(value))
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out, depth + 1)
        out.append("]")
    elif isinstance(value, dict):
        keys = list(value)
        if not all(isinstance(k, str) for k in keys):
            raise CanonicalError("object keys must be strings")
        out.append("{")
        for i, key in enumerate(sorted(keys, key=lambda k: k.encode("utf-16-be", "surrogatepass"))):
            if i:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _write(value[key], out, depth + 1)
        out.append("}")
    else:
        raise CanonicalError(f"cannot encode a {type(value).__name__}")


def _string(text: str) -> str:
    # Python escapes exactly what JSON.stringify escapes (", \\, \b \f \n \r \t, other
    # controls as lowercase \u00xx) when ensure_ascii is off.
    return json.dumps(text, ensure_ascii=False)


def number_text(x: float) -> str:
    """ECMAScript Number::toString for a finite double (RFC 8785 section 3.2.2.3)."""
    if not math.isfinite(x):
        raise CanonicalError("NaN and infinities have no JSON form")
    if x == 0:
        return "0"  # also -0.0
    if x < 0:
        return "-" + number_text(-x)
    # repr gives the shortest digit string that round-trips, as ECMAScript requires.
    _sign, digit_tuple, exponent = Decimal(repr(x)).as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    digits = stripped
    k = len(digits)
    n = exponent + k  # x = 0.d1d2...dk * 10**n
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + digits
    e = n - 1
    mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
    return f"{mantissa}e{'+' if e > 0 else '-'}{abs(e)}"
