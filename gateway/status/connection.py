"""Reading requests from and writing answers to one status-server connection, with deadlines.

Each phase of a request has its own deadline: waiting for its first byte (``header_timeout_s`` on
a new connection, ``idle_timeout_s`` between keep-alive requests), the rest of its head
(``header_timeout_s``) and its body (``body_timeout_s``). A client that sends a byte now and
then cannot hold the connection longer than that.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus

from gateway.status.http import ClientGone, HttpError, Limits, Request, RequestParser

READ_CHUNK = 64 * 1024


async def read_request(reader: asyncio.StreamReader, parser: RequestParser, limits: Limits, first: bool) -> Request:
    """The next request on this connection. Raises HttpError (answer it), ClientGone (close quietly)."""
    loop = asyncio.get_running_loop()
    phase, deadline = "", 0.0
    while True:
        request = parser.next_request()
        if request is not None:
            return request
        now_phase = "body" if parser.reading_body else "head" if parser.in_request else "idle"
        if now_phase != phase:
            phase = now_phase
            wait = {"body": limits.body_timeout_s, "head": limits.header_timeout_s,
                    "idle": limits.header_timeout_s if first else limits.idle_timeout_s}[phase]
            deadline = loop.time() + wait
        try:
            data = await asyncio.wait_for(reader.read(READ_CHUNK), max(0.0, deadline - loop.time()))
        except TimeoutError:
            if phase == "body":
                raise HttpError(HTTPStatus.BAD_REQUEST, "body shorter than Content-Length") from None
            raise ClientGone from None  # silent or slow-loris: nothing worth answering
        if not data:
            if parser.in_request:
                raise HttpError(HTTPStatus.BAD_REQUEST, "connection closed inside the request")
            raise ClientGone
        parser.feed(data)


async def write(writer: asyncio.StreamWriter, data: bytes, limits: Limits) -> None:
    writer.write(data)
    await asyncio.wait_for(writer.drain(), limits.write_timeout_s)


def address(sockaddr: object) -> str:
    """The IP from a socket address tuple (peername, sockname); "?" when there is none."""
    return str(sockaddr[0]) if isinstance(sockaddr, tuple) and sockaddr else "?"
