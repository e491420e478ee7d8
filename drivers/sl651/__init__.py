"""SL 651-2014 (水文监测数据通信规约) in HEX/BCD encoding: codec, centre-side receiver, station-side link.

* ``elements`` — the element identifier table (Appendix C) and the value codecs it selects;
* ``frame`` — framing (7E7E … CRC), a length-field stream splitter and M3 reassembly;
* ``body`` — message bodies by function code and direction (Appendix B, 6.6.4);
* the receiver, ``fieldgate sl651-centre``, is a centre program: ``centre/sl651.py``;
* ``link`` / ``config`` — the ``sl651`` link: the gateway as a station's RTU to its centres.

Everything here that reads bytes from outside raises only :class:`Sl651Error` (fuzz/targets/sl651_*.py).
Field notes and sources: docs/sl651.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from drivers.sl651.errors import Sl651Error

if TYPE_CHECKING:
    from drivers.sl651.config import Sl651LinkConfig
    from gateway.contracts import ReportLink

__all__ = ["Sl651Error", "build_link"]


def build_link(config: Sl651LinkConfig) -> ReportLink:
    """The factory gateway/registry.py names: the box as an SL 651 station of one centre."""
    from drivers.sl651.link import Sl651Link

    return Sl651Link(config)
