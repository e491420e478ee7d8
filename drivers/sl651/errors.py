"""The one error class the SL 651 decoders raise, and the one the encoders raise."""

from __future__ import annotations


class Sl651Error(ValueError):
    """Bytes that are not a usable SL 651 frame or body (CRC, length, BCD digit, layout)."""


class Sl651EncodeError(ValueError):
    """A value that cannot be put into a frame (too many digits for its identifier, serial out of range)."""
