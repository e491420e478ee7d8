"""Fuzz harness: raw bytes as what a client sends to the status server, read by its HTTP/1.1 parser.

``gateway.status.http.RequestParser`` (h11 plus the strictness h11 leaves out) is fed the bytes
whole and in small pieces, and every complete request is answered, as a connection would.
Its documented error is ``HttpError`` (the status to answer with); anything else escaping is a
crash. No socket, no file, no clock: the parser is sans-IO.
"""

from __future__ import annotations

import contextlib
import sys
from http import HTTPStatus
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # run from anywhere: the harness lives outside the installed package
    sys.path.insert(0, str(ROOT))

from gateway.status.http import HttpError, Limits, RequestParser, Response  # noqa: E402

NAME = "http_request"

# Small limits so the fuzzer reaches the size checks with short inputs.
LIMITS = Limits(max_line=256, max_header_bytes=1024, max_headers=8, max_body=64)

_HOST = b"Host: 127.0.0.1:8443\r\n"


def seeds() -> list[bytes]:
    """Good requests and the hostile ones of issue #12 (there are no public HTTP vectors in shared/vectors)."""
    good = [
        b"GET / HTTP/1.1\r\n" + _HOST + b"\r\n",
        b"HEAD /api/status?x=1 HTTP/1.1\r\n" + _HOST + b"Connection: close\r\n\r\n",
        b"POST /login HTTP/1.1\r\n" + _HOST + b"Origin: https://127.0.0.1:8443\r\n"
        b"Content-Type: application/json\r\nContent-Length: 17\r\n\r\n{\"user\":\"tech\"}\r\n",
        b"GET /healthz HTTP/1.1\r\n" + _HOST + b"\r\nGET /metrics HTTP/1.1\r\n" + _HOST + b"\r\n",  # pipelined
        b"GET /healthz HTTP/1.0\r\n" + _HOST + b"\r\n",
    ]
    hostile = [
        b"POST /login HTTP/1.1\r\n" + _HOST + b"Content-Length: \xb2\r\n\r\n",
        "POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: ²\r\n\r\n".encode(),
        b"GET /healthz HTTP/1.1\nHost: 127.0.0.1\n\n",
        b"GET //evil.example/api/status HTTP/1.1\r\n" + _HOST + b"\r\n",
        b"GET http://evil.example/ HTTP/1.1\r\n" + _HOST + b"\r\n",
        b"GET / HTTP/1.1\r\n" + _HOST + b" folded\r\n\r\n",
        b"POST /login HTTP/1.1\r\n" + _HOST + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + _HOST + _HOST + b"\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        b"\r\n" * 8 + b"GET / HTTP/1.1\r\n" + _HOST + b"\r\n",
    ]
    return good + hostile


def _answer_all(data: bytes, piece: int) -> None:
    parser = RequestParser(LIMITS)
    for start in range(0, len(data), piece):
        parser.feed(data[start:start + piece])
        while (request := parser.next_request()) is not None:
            _, stays_open = parser.respond(Response(HTTPStatus.OK, b"ok"), request.method == "HEAD", True)
            if not stays_open:
                return


def fuzz_one(data: bytes) -> None:
    for piece in (max(1, len(data)), 3):
        with contextlib.suppress(HttpError):
            _answer_all(data, piece)


if __name__ == "__main__":  # a quick local check of the seeds
    for seed in seeds():
        fuzz_one(seed)
    print(f"{NAME}: {len(seeds())} seeds ok")
