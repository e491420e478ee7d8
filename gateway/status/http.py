"""A small, strict HTTP/1.1 request reader and response writer for the status server.

Only what the status page needs: GET, HEAD and POST with a Content-Length body, persistent
connections, no chunked bodies, no upgrades. Every read is bounded in size and time, and every
malformed request becomes an :class:`HttpError` with a 4xx/5xx status, never an exception that
escapes the connection handler.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass(frozen=True, slots=True)
class Limits:
    max_line: int = 8192  # request line or one header line
    max_header_bytes: int = 16 * 1024  # the whole header section
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


# RFC 9110 token characters for methods and header names.
_TOKEN = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_TARGET = re.compile(r"^/[\x21-\x7e]*$")
METHODS = frozenset({"GET", "HEAD", "POST"})
_MAX_LEADING_EMPTY_LINES = 4


@dataclass(slots=True)
class Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    path: str = ""
    query: dict[str, list[str]] = field(default_factory=dict)
    body: bytes = b""
    client: str = ""

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


async def _read_line(reader: asyncio.StreamReader, limits: Limits) -> bytes:
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError:
        raise HttpError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "header line too long") from None
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            raise ClientGone from None
        raise HttpError(HTTPStatus.BAD_REQUEST, "connection closed inside the request header") from None
    if len(line) > limits.max_line:
        raise HttpError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "header line too long")
    return line.rstrip(b"\r\n") if line.endswith(b"\r\n") else line[:-1]


async def read_request(reader: asyncio.StreamReader, limits: Limits, first: bool) -> Request:
    """Read one request. ``first``: the first on this connection (idle timeout differs)."""
    wait = limits.header_timeout_s if first else limits.idle_timeout_s
    try:
        line = await asyncio.wait_for(_read_line(reader, limits), wait)
        for _ in range(_MAX_LEADING_EMPTY_LINES):  # RFC 9112 §2.2: ignore a few empty lines before a request
            if line or first:
                break
            line = await asyncio.wait_for(_read_line(reader, limits), limits.header_timeout_s)
        head = await asyncio.wait_for(_read_headers(reader, limits), limits.header_timeout_s)
    except TimeoutError:
        raise ClientGone from None
    request = _parse_request_line(line)
    request.headers = head
    _check_framing(request)
    length = _content_length(request, limits)
    if length:
        try:
            request.body = await asyncio.wait_for(reader.readexactly(length), limits.body_timeout_s)
        except (asyncio.IncompleteReadError, TimeoutError):
            raise HttpError(HTTPStatus.BAD_REQUEST, "body shorter than Content-Length") from None
    return request


def _parse_request_line(line: bytes) -> Request:
    parts = line.split(b" ")
    if len(parts) != 3:
        raise HttpError(HTTPStatus.BAD_REQUEST, "malformed request line")
    method_b, target_b, version_b = parts
    if not _TOKEN.match(method_b):
        raise HttpError(HTTPStatus.BAD_REQUEST, "malformed method")
    if version_b not in (b"HTTP/1.1", b"HTTP/1.0"):
        if version_b.startswith(b"HTTP/"):
            raise HttpError(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED)
        raise HttpError(HTTPStatus.BAD_REQUEST, "malformed HTTP version")
    method = method_b.decode("ascii")
    if method not in METHODS:
        raise HttpError(HTTPStatus.METHOD_NOT_ALLOWED if method in ("PUT", "DELETE", "PATCH", "OPTIONS")
                        else HTTPStatus.NOT_IMPLEMENTED, f"method {method} not supported")
    target = target_b.decode("ascii", "replace")
    if not _TARGET.match(target) or len(target) > 2048:
        raise HttpError(HTTPStatus.BAD_REQUEST, "request target must be an absolute path")
    try:
        parsed = urlsplit(target)  # ValueError: "//[x" (a bracketed host that is no IPv6 address)
        query = parse_qs(parsed.query, max_num_fields=20)  # ValueError: more fields than that
    except ValueError as exc:
        raise HttpError(HTTPStatus.BAD_REQUEST, f"bad request target: {exc}") from None
    path = unquote(parsed.path, errors="replace")
    if "\x00" in path or "\ufffd" in path:
        raise HttpError(HTTPStatus.BAD_REQUEST, "bad path encoding")
    return Request(method=method, target=target, version=version_b.decode("ascii"), headers={}, path=path,
                   query=query)


async def _read_headers(reader: asyncio.StreamReader, limits: Limits) -> dict[str, str]:
    headers: dict[str, str] = {}
    total = count = 0
    while True:
        line = await _read_line(reader, limits)
        if not line:
            return headers
        total += len(line) + 2
        count += 1
        if total > limits.max_header_bytes or count > limits.max_headers:
            raise HttpError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "too many or too large headers")
        if line[:1] in (b" ", b"\t"):
            raise HttpError(HTTPStatus.BAD_REQUEST, "obsolete header line folding")
        name_b, sep, value_b = line.partition(b":")
        if not sep or not _TOKEN.match(name_b):
            raise HttpError(HTTPStatus.BAD_REQUEST, "malformed header line")
        if any((c < 0x20 and c != 0x09) or c == 0x7F for c in value_b):
            raise HttpError(HTTPStatus.BAD_REQUEST, "control character in a header value")
        name = name_b.decode("ascii").lower()
        value = value_b.strip(b" \t").decode("latin-1")
        if name in headers:
            if name in ("content-length", "host", "authorization", "content-type"):
                raise HttpError(HTTPStatus.BAD_REQUEST, f"repeated {name} header")
            headers[name] = f"{headers[name]}, {value}"
        else:
            headers[name] = value


def _check_framing(request: Request) -> None:
    if "transfer-encoding" in request.headers:
        # Chunked bodies are not needed here; refusing them removes a whole class of smuggling bugs.
        raise HttpError(HTTPStatus.NOT_IMPLEMENTED, "Transfer-Encoding is not supported; send Content-Length")
    if request.version == "HTTP/1.1" and "host" not in request.headers:
        raise HttpError(HTTPStatus.BAD_REQUEST, "HTTP/1.1 request without Host")


def _content_length(request: Request, limits: Limits) -> int:
    raw = request.headers.get("content-length")
    if raw is None:
        return 0
    if not raw.isdigit() or len(raw) > 12:
        raise HttpError(HTTPStatus.BAD_REQUEST, "malformed Content-Length")
    length = int(raw)
    if length > limits.max_body:
        raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body larger than {limits.max_body} bytes")
    if length and request.method != "POST":
        raise HttpError(HTTPStatus.BAD_REQUEST, f"{request.method} with a body")
    return length


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

    def encode(self, head_only: bool, keep_alive: bool) -> bytes:
        lines = [f"HTTP/1.1 {self.status.value} {self.status.phrase}",
                 f"Date: {formatdate(usegmt=True)}",
                 "Server: fieldgate",
                 f"Content-Type: {self.content_type}",
                 f"Content-Length: {len(self.body)}",
                 f"Connection: {'keep-alive' if keep_alive else 'close'}"]
        lines += [f"{k}: {v}" for k, v in {**SECURITY_HEADERS, **self.headers}.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head if head_only else head + self.body
