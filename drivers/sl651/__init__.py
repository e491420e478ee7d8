"""SL 651-2014 (水文监测数据通信规约) in HEX/BCD encoding: codec, centre-side receiver, station-side link.

* ``elements`` — the element identifier table (Appendix C) and the value codecs it selects;
* ``frame`` — framing (7E7E … CRC), a length-field stream splitter and M3 reassembly;
* ``body`` — message bodies by function code and direction (Appendix B, 6.6.4);
* ``centre`` — ``fieldgate sl651-centre``: an asyncio TCP receiver that lands stations on MQTT;
* ``link`` / ``config`` — the ``sl651`` link: the gateway as a station's RTU to its centres.

Everything here that reads bytes from outside raises only :class:`Sl651Error` (fuzz/targets/sl651_*.py).
Field notes and sources: docs/sl651.md.
"""

from drivers.sl651.errors import Sl651Error

__all__ = ["Sl651Error"]
