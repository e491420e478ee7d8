"""The config loader's error: what the loader and the device templates raise (its own module, so the
templates need not import the loader that calls them)."""

from __future__ import annotations


class ConfigError(Exception):
    """The config is not usable. ``lines`` are ready to print, one problem each."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        super().__init__("\n".join(lines))
