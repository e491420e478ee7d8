"""HTTP/1.1 for the status server: h11 parses and serialises, this module adds what h11 leaves lenient.

:class:`RequestParser` is sans-IO (bytes in, :class:`Request` out), so it is tested and fuzzed
without sockets. h11 does the HTTP/1.1 grammar: the request line, header names and values,
Content-Length syntax (ASCII digits only), exactly one Host on HTTP/1.1, body framing, keep-alive
and the response serialisation. On top, before a byte reaches h11, every request head must have
CRLF line ends only (h11 accepts a bare LF), no obsolete line folding (h11 unfolds it), an
origin-form target (``/path``; h11 accepts ``http://host/``, ``*`` and ``//host/path``), a
bounded line length and field count, and one Host, Content-Length, Content-Type and Origin field
(also on HTTP/1.0). Transfer-Encoding is refused: no chunked bodies, no smuggling. Every refusal
is an :class:`HttpError` carrying the status to answer with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote

# h11 is imported where a connection first needs it: most sites' status page is opened now and then, and its
# parser's 11 modules are ~0.3 MB of an idle daemon's heap (issue 18). After the first request the imports in the
# functions below are a dictionary lookup.
if TYPE_CHECKING:
    import h11


@dataclass(frozen=True, slots=True)
class Limits:
    max_line: int = 8192  # request line or one header line
    max_header_bytes: int = 16 * 1024  # the whole request head
    max_headers: int = 64
    max_body: int = 16 * 1024  # logins and actions are tiny JSON or form bodies
    header_timeout_s: float = 10.0  # a slow-loris client loses its connection after this
    body_timeout_s: float = 10.0
    idle_timeout_s: float = 30.0  # keep-alive wait for the next request
    write_timeout_s: float = 10.0
    max_requests_per_connection: int = 1000


class HttpError(Exception):
    def __init__(self, status: HTTPStatus, detail: str = "") -> None:
        super().__init__(detail or status.phrase)
        self.status = status
        self.detail = detail or status.phrase


class ClientGone(Exception):
    """The client closed the connection or sent nothing before the idle timeout: close quietly."""


# RFC 9110 token characters (methods, header names).
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_TARGET = re.compile(rb"/(?!/)[\x21-\x7e]*")  # origin-form; "//host/path" would name another authority
_MAX_TARGET = 2048
_MAX_METHOD = 16
METHODS = frozenset({"GET", "HEAD", "POST"})
_NOT_ALLOWED = frozenset({"PUT", "DELETE", "PATCH", "OPTIONS"})
_SINGLE_FIELDS = frozenset({b"host", b"content-length", b"content-type", b"origin", b"authorization"})
_MAX_LEADING_EMPTY_LINES = 4  # RFC 9112 §2.2: a server may skip a few empty lines before a request


@dataclass(slots=True)
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    path: str = ""
    query: dict[str, list[str]] = field(default_factory=dict)
    body: bytes = b""
    client: str = ""  # the peer's IP address
    local: str = ""  # the address of this box the client connected to
    secure: bool = False  # arrived over TLS

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    @property
    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for t in self.header("connection").split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens

    def cookie(self, name: str) -> str | None:
        for part in self.header("cookie").split(";"):
            key, sep, value = part.strip().partition("=")
            if sep and key == name:
                return value
        return None


SECURITY_HEADERS: dict[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    # Scripts and styles come from this server only (no CDN, no inline script): the page works
    # offline and an injected string cannot run.
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'",
}


@dataclass(slots=True)
class Response:
    status: HTTPStatus
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def text(cls, status: HTTPStatus, text: str) -> Response:
        return cls(status, text.encode("utf-8"))

    def h11_event(self, keep_alive: bool) -> h11.Response:
        import h11

        fields = {"Date": formatdate(usegmt=True), "Server": "fieldgate", "Content-Type": self.content_type,
                  "Content-Length": str(len(self.body)), **SECURITY_HEADERS, **self.headers}
        if not keep_alive:
            fields["Connection"] = "close"
        return h11.Response(status_code=self.status.value, reason=self.status.phrase.encode("ascii"),
                            headers=list(fields.items()))


def error_bytes(response: Response) -> bytes:
    """A response that ends the connection, serialised on a fresh h11 state machine.

    Used when the request could not be read: the connection's own machine may be in an error
    state or may never have seen a request, and the connection closes after this anyway.
    """
    import h11

    machine = h11.Connection(h11.SERVER)
    return b"".join([machine.send(response.h11_event(keep_alive=False)) or b"",
                     machine.send(h11.Data(data=response.body)) or b"", machine.send(h11.EndOfMessage()) or b""])


class RequestParser:
    """One connection's requests, from raw bytes. Feed with :meth:`feed`, take with :meth:`next_request`."""

    def __init__(self, limits: Limits) -> None:
        import h11

        self.limits = limits
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
        self._buffer = bytearray()  # received, not yet given to h11 (h11 never sees an unchecked head)
        self._checked = 0  # how much of an incomplete head was already checked for line ends
        self._request: Request | None = None  # head parsed, body still arriving
        self._body_left = 0
        self._body = bytearray()
        self._skipped = 0  # empty lines skipped before the next request

    def feed(self, data: bytes) -> None:
        self._buffer += data

    @property
    def in_request(self) -> bool:
        """Bytes of a request that is not complete yet have arrived."""
        return self._request is not None or bool(self._buffer.strip(b"\r\n"))

    @property
    def reading_body(self) -> bool:
        return self._request is not None

    def next_request(self) -> Request | None:
        """The next complete request, or None when more bytes are needed. Raises HttpError."""
        if self._request is None:
            head = self._take_head()
            if head is None:
                return None
            self._request = self._parse_head(head)
        take = min(self._body_left, len(self._buffer))
        if take:
            self._body += self._buffer[:take]
            self._h11.receive_data(bytes(self._buffer[:take]))
            del self._buffer[:take]
            self._body_left -= take
        if self._body_left:
            return None
        import h11

        while True:  # drain h11's Data events; it has seen exactly Content-Length body bytes
            event = self._next_event()
            if isinstance(event, h11.EndOfMessage):
                break
        request, self._request = self._request, None
        request.body, self._body = bytes(self._body), bytearray()
        return request

    def respond(self, response: Response, head_only: bool, keep_alive: bool) -> tuple[bytes, bool]:
        """The bytes of ``response`` to the request just returned, and whether the connection stays open."""
        import h11

        parts = [self._h11.send(response.h11_event(keep_alive))]
        if not head_only and response.body:
            parts.append(self._h11.send(h11.Data(data=response.body)))
        parts.append(self._h11.send(h11.EndOfMessage()))
        stays_open = self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE
        if stays_open:
            self._h11.start_next_cycle()
        return b"".join(p or b"" for p in parts), stays_open

    # -- the request head --------------------------------------------------------------------

    def _take_head(self) -> bytes | None:
        while self._buffer.startswith(b"\r\n") and self._skipped <= _MAX_LEADING_EMPTY_LINES:
            del self._buffer[:2]
            self._skipped += 1
            self._checked = 0  # offsets moved
        if self._skipped > _MAX_LEADING_EMPTY_LINES:
            raise HttpError(HTTPStatus.BAD_REQUEST, "too many empty lines before the request")
        self._check_start(self._buffer)
        end = self._buffer.find(b"\r\n\r\n")
        region = self._buffer if end < 0 else self._buffer[:end + 4]
        # A bare CR at the very end may still be followed by its LF.
        _check_line_ends(region, max(0, self._checked - 1), partial=end < 0)
        self._checked = len(region)
        if end < 0:
            if len(self._buffer) > self.limits.max_header_bytes:
                raise HttpError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large")
            first_line = self._buffer.find(b"\r\n")
            if first_line < 0 and len(self._buffer) > self.limits.max_line:
                raise HttpError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request line too long")
            return None
        head = bytes(self._buffer[:end + 4])
        del self._buffer[:end + 4]
        self._checked = self._skipped = 0
        if len(head) > self.limits.max_header_bytes:
            raise HttpError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request head too large")
        return head

    @staticmethod
    def _check_start(buffer: bytearray) -> None:
        """Refuse at once what cannot become a request (a TLS hello, binary noise) instead of waiting."""
        method = bytes(buffer[:_MAX_METHOD + 1]).split(b" ", 1)[0].split(b"\r", 1)[0]
        if method and not _TOKEN.fullmatch(method):
            raise HttpError(HTTPStatus.BAD_REQUEST, "malformed request line")

    def _parse_head(self, head: bytes) -> Request:
        lines = head[:-4].split(b"\r\n")
        if any(len(line) > self.limits.max_line for line in lines):
            raise HttpError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "request or header line too long")
        if len(lines) - 1 > self.limits.max_headers:
            raise HttpError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "too many header fields")
        method, target, version = _parse_request_line(lines[0])
        seen: set[bytes] = set()
        for line in lines[1:]:
            if line[:1] in (b" ", b"\t"):
                raise HttpError(HTTPStatus.BAD_REQUEST, "obsolete header line folding")
            field_name = line.partition(b":")[0].strip().lower()
            if field_name in _SINGLE_FIELDS and field_name in seen:
                raise HttpError(HTTPStatus.BAD_REQUEST, f"repeated {field_name.decode('ascii')} header")
            seen.add(field_name)
        if b"host" not in seen:
            raise HttpError(HTTPStatus.BAD_REQUEST, "request without Host")
        import h11

        self._h11.receive_data(head)
        event = self._next_event()
        if not isinstance(event, h11.Request):
            raise HttpError(HTTPStatus.BAD_REQUEST, "malformed request")
        headers: dict[str, str] = {}
        for raw_name, raw_value in event.headers:
            name, value = raw_name.decode("ascii"), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if "transfer-encoding" in headers:
            raise HttpError(HTTPStatus.NOT_IMPLEMENTED, "Transfer-Encoding is not supported; send Content-Length")
        self._body_left = int(headers.get("content-length", "0"))  # h11 checked: ASCII digits
        if self._body_left > self.limits.max_body:
            raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body larger than {self.limits.max_body} bytes")
        if self._body_left and method != "POST":
            raise HttpError(HTTPStatus.BAD_REQUEST, f"{method} with a body")
        path, query = _split_target(target)
        return Request(method=method, target=target, version=version, headers=headers, path=path, query=query)

    def _next_event(self) -> object:
        import h11

        try:
            return self._h11.next_event()
        except h11.RemoteProtocolError as exc:
            raise HttpError(_status(exc.error_status_hint), str(exc)) from None


def _status(code: int) -> HTTPStatus:
    try:
        return HTTPStatus(code)
    except ValueError:
        return HTTPStatus.BAD_REQUEST


def _check_line_ends(region: bytearray, start: int, partial: bool) -> None:
    """Every LF must follow a CR and every CR precede an LF (RFC 9112 §2.2: no bare CR, and we allow no bare LF)."""
    index = region.find(b"\n", start)
    while index >= 0:
        if index == 0 or region[index - 1] != 0x0D:
            raise HttpError(HTTPStatus.BAD_REQUEST, "bare LF in the request head; lines end with CRLF")
        index = region.find(b"\n", index + 1)
    index = region.find(b"\r", start)
    while index >= 0:
        if index + 1 < len(region) and region[index + 1] != 0x0A:
            raise HttpError(HTTPStatus.BAD_REQUEST, "bare CR in the request head")
        if index + 1 == len(region) and not partial:
            raise HttpError(HTTPStatus.BAD_REQUEST, "bare CR in the request head")
        index = region.find(b"\r", index + 1)


def _parse_request_line(line: bytes) -> tuple[str, str, str]:
    parts = line.split(b" ")
    if len(parts) != 3:
        raise HttpError(HTTPStatus.BAD_REQUEST, "malformed request line")
    method_b, target_b, version_b = parts
    if not _TOKEN.fullmatch(method_b) or len(method_b) > _MAX_METHOD:
        raise HttpError(HTTPStatus.BAD_REQUEST, "malformed method")
    if version_b not in (b"HTTP/1.1", b"HTTP/1.0"):
        if re.fullmatch(rb"HTTP/[0-9](\.[0-9])?", version_b):
            raise HttpError(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED)
        raise HttpError(HTTPStatus.BAD_REQUEST, "malformed HTTP version")
    method = method_b.decode("ascii")
    if method not in METHODS:
        raise HttpError(HTTPStatus.METHOD_NOT_ALLOWED if method in _NOT_ALLOWED else HTTPStatus.NOT_IMPLEMENTED,
                        f"method {method} not supported")
    if not _TARGET.fullmatch(target_b) or len(target_b) > _MAX_TARGET:
        raise HttpError(HTTPStatus.BAD_REQUEST, "request target must be a path such as /api/status")
    return method, target_b.decode("ascii"), version_b.decode("ascii")


def _split_target(target: str) -> tuple[str, dict[str, list[str]]]:
    raw_path, _, raw_query = target.partition("?")
    raw_query = raw_query.partition("#")[0]
    try:
        query = parse_qs(raw_query, max_num_fields=20)  # ValueError: more fields than that
    except ValueError as exc:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"bad query: {exc}") from None
    path = unquote(raw_path.partition("#")[0], errors="replace")
    if "\x00" in path or "\ufffd" in path:
        raise HttpError(HTTPStatus.BAD_REQUEST, "bad path encoding")
    if path.startswith("//"):  # "/%2Fhost/x" decodes to a network-path reference
        raise HttpError(HTTPStatus.BAD_REQUEST, "path must not start with //")
    return path, query
