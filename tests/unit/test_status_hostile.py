"""Issue #12, the status server under hostile input: each test here failed on the hand-written HTTP layer.

Clients on other addresses are 127.0.0.x sources (Linux routes all of 127/8 to loopback), so the
per-client connection cap can be exercised from one machine.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from http import HTTPStatus
from pathlib import Path

import pytest

from gateway.status import StatusConfig, StatusServer
from gateway.status.http import Limits, Request, RequestParser, Response
from tests.unit.test_status_server import FakeGateway, Running, parse_response, serving, users_file

__all__ = ["users_file"]  # the fixture, used by name below

LOGIN = json.dumps({"user": "tech", "password": "correct horse"}).encode()
PROBE = json.dumps({"bus": "b", "unit_id": 7, "table": "holding", "address": 0, "count": 2}).encode()


@pytest.fixture
def running(users_file: Path) -> Iterator[Running]:
    # Keep-alive connections must stay open while a test holds them: a long idle timeout.
    with serving(users_file, Limits(header_timeout_s=2.0, idle_timeout_s=30.0, body_timeout_s=2.0)) as server:
        yield server


def post(running: Running, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    head = {"Host": f"127.0.0.1:{running.port}", "Connection": "close", "Content-Length": str(len(body)), **headers}
    text = f"POST {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n"
    return parse_response(running.raw(text.encode() + body))


def own_origin(running: Running) -> str:
    return f"http://127.0.0.1:{running.port}"


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


# -- parsing -------------------------------------------------------------------------------------


def test_non_ascii_content_length_is_a_400_and_no_traceback(running: Running,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    # Before: the byte 0xB2 read as latin-1 is "²", str.isdigit() said yes and int() raised ValueError:
    # no answer and a traceback. The UTF-8 form and other Unicode digits must be refused too.
    for value in (b"\xb2", "²".encode(), "١٢".encode(), b"\xb9"):
        request = b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " + value + b"\r\n\r\n"
        with caplog.at_level(logging.INFO):
            assert parse_response(running.raw(request))[0] == 400, value
            assert running.request("GET", "/healthz")[0] == 200
    assert errors_logged(caplog) == []


@pytest.mark.parametrize("request_bytes", [
    b"GET /healthz HTTP/1.1\nHost: 127.0.0.1\n\n",
    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\n\r\n",
    b"GET /healthz HTTP/1.1\nHost: 127.0.0.1\r\n\r\n",
    b"GET /healthz HTTP/1.1\rHost: 127.0.0.1\r\n\r\n",
])
def test_bare_line_feeds_and_carriage_returns_are_refused(running: Running, request_bytes: bytes) -> None:
    assert parse_response(running.raw(request_bytes))[0] == 400  # before: 200 for the bare-LF ones


@pytest.mark.parametrize("target", [b"//evil.example/api/status", b"http://127.0.0.1/api/status", b"*",
                                    b"/%2F%2Fevil.example/api/status"])
def test_only_origin_form_targets_are_served(running: Running, target: bytes) -> None:
    # Before: "//evil.example/api/status" went through urlsplit, lost its "authority" and was routed.
    response = running.raw(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    status, _, body = parse_response(response)
    assert status == 400 and b"points" not in body


def test_pipelined_requests_parse_the_same_in_any_pieces() -> None:
    data = (b"\r\nGET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
            b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nabcde"
            b"HEAD /api/status?a=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    for piece in (1, 2, 5, len(data)):
        parser, got = RequestParser(Limits()), []
        for start in range(0, len(data), piece):
            parser.feed(data[start:start + piece])
            while (request := parser.next_request()) is not None:
                got.append((request.method, request.path, request.query, request.body))
                parser.respond(Response(HTTPStatus.OK), request.method == "HEAD", True)
        assert got == [("GET", "/healthz", {}, b""), ("POST", "/login", {}, b"abcde"),
                       ("HEAD", "/api/status", {"a": ["1"]}, b"")], piece


# -- Host ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "127.0.0.1.evil.example", "10.9.9.9"])
def test_a_host_this_box_does_not_answer_to_gets_421_and_nothing_of_value(running: Running, host: str) -> None:
    # DNS rebinding: a page on evil.example whose name now resolves to the box reads /api/status.
    for path in ("/api/status", "/metrics", "/"):
        status, _, body = running.request("GET", path, headers={"Host": host})
        assert status == 421, (path, body)
        assert b"gw-1" not in body and b"res.level" not in body


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]:8080", socket.gethostname(),
                                  f"{socket.gethostname()}.local:8080"])
def test_the_box_own_names_are_served(running: Running, host: str) -> None:
    assert running.request("GET", "/api/status", headers={"Host": host})[0] == 200


def test_malformed_host_is_a_400(running: Running) -> None:
    for host in ("a b", "[::1", "x:99999", "x:²"):
        assert running.request("GET", "/healthz", headers={"Host": host})[0] == 400, host


# -- Origin --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "content_type"), [
    (LOGIN, "application/json"),
    (b"user=tech&password=correct+horse", "application/x-www-form-urlencoded"),
])
def test_login_needs_the_exact_origin(running: Running, body: bytes, content_type: str) -> None:
    refused = [{}, {"Origin": "null"}, {"Origin": "http://evil.example"},
               {"Origin": f"https://127.0.0.1:{running.port}"}, {"Origin": f"http://127.0.0.1:{running.port}/x"}]
    for extra in refused:
        status, headers, _ = post(running, "/login", body, {"Content-Type": content_type, **extra})
        assert status == 403 and "set-cookie" not in headers, extra  # before: 200 and a session
    status, headers, _ = post(running, "/login", body, {"Content-Type": content_type, "Origin": own_origin(running)})
    assert status == 200 and headers["set-cookie"].startswith("fg_session=")


def test_actions_refuse_origin_null_and_no_origin(running: Running) -> None:
    json_type = {"Content-Type": "application/json"}
    _, headers, _ = post(running, "/login", LOGIN, {**json_type, "Origin": own_origin(running)})
    session = {"Cookie": headers["set-cookie"].split(";")[0]}
    for extra in ({"Origin": "null"}, {}):
        status, _, _ = post(running, "/api/action/probe", PROBE, {**json_type, **session, **extra})
        assert status == 403, extra  # before: both ran the probe
    assert running.view.actions == []
    status, _, _ = post(running, "/api/action/probe", PROBE, {**json_type, **session, "Origin": own_origin(running)})
    assert status == 200 and len(running.view.actions) == 1


# -- login throttling ----------------------------------------------------------------------------


def test_concurrent_wrong_logins_are_counted_before_they_are_evaluated(users_file: Path) -> None:
    # Before: all 30 passed the "blocked?" check while the first ones were still hashing.
    async def main() -> list[int]:
        server = StatusServer(StatusConfig(listen="127.0.0.1:8080", users_file=users_file), FakeGateway())
        body = json.dumps({"user": "tech", "password": "wrong"}).encode()
        headers = {"host": "127.0.0.1:8080", "origin": "http://127.0.0.1:8080", "content-type": "application/json",
                   "content-length": str(len(body))}

        def attempt() -> Request:
            return Request(method="POST", target="/login", version="HTTP/1.1", headers=dict(headers), path="/login",
                           body=body, client="10.0.0.9")

        responses = await asyncio.gather(*(server.handle(attempt()) for _ in range(30)))
        return [r.status.value for r in responses]

    statuses = asyncio.run(main())
    assert statuses.count(401) == 5 and statuses.count(429) == 25, statuses


# -- connection caps -----------------------------------------------------------------------------


def connect_from(source: str, port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    return sock


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    status, headers, body = parse_response(data)
    while len(body) < int(headers.get("content-length", "0")):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    if headers.get("connection") == "close":
        while sock.recv(65536):  # until the server has closed (and given back the slot)
            pass
    return status, headers, body


@contextmanager
def held_connections(port: int, sources: list[str]) -> Iterator[list[socket.socket]]:
    """One keep-alive connection per entry of ``sources``, each having had one /healthz answered."""
    with ExitStack() as stack:
        socks = []
        for source in sources:
            sock = stack.enter_context(connect_from(source, port))
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            read_response(sock)
            socks.append(sock)
        yield socks


def get_from(source: str, port: int, path: str) -> int:
    with connect_from(source, port) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        return read_response(sock)[0]


def test_one_client_holding_32_connections_starves_neither_the_page_nor_healthz(running: Running) -> None:
    # Before: 32 held sockets from one address made everything answer 503 while they were held.
    with held_connections(running.port, ["127.0.0.1"] * 32):
        assert get_from("127.0.0.2", running.port, "/") == 200
        assert get_from("127.0.0.1", running.port, "/healthz") == 200
        assert get_from("127.0.0.1", running.port, "/") == 503  # that client is over its own cap


def test_healthz_answers_when_every_general_slot_is_taken(running: Running) -> None:
    sources = [f"127.0.0.{10 + i}" for i in range(32)]
    with held_connections(running.port, sources):
        assert get_from("127.0.0.200", running.port, "/") == 503
        assert get_from("127.0.0.200", running.port, "/healthz") == 200  # before: 503
