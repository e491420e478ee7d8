"""What the two satellite link drivers (drivers/beidou, drivers/iridium) raise from ``send()``.

A lost serial port is ``drivers.ports.stream.PortLost``; ``send()`` reports it as ``LinkNotReady``.
"""

from __future__ import annotations


class SatLinkError(Exception):
    """Base of the satellite link errors."""


class LinkNotReady(SatLinkError):
    """The modem is not (yet) usable: port closed, probe failed, no card."""


class MessageTooLarge(SatLinkError, ValueError):
    """The payload exceeds what the modem/card carries in one message; split or pack it first."""


class SendRefused(SatLinkError):
    """The modem refused the message (after honouring any wait it asked for)."""


class SendTimeout(SatLinkError):
    """The modem did not answer in time; the message may or may not have left."""
