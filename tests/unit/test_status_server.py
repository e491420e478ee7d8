"""The status server over real sockets: garbage and oversize requests, login before actions, routes."""

from __future__ import annotations

import asyncio
import json
import math
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway.status import StatusConfig, StatusServer
from gateway.status.auth import set_password
from gateway.status.http import Limits
from sim.support import free_port

SNAPSHOT: dict[str, Any] = {
    "gateway": {"id": "gw-1", "name": "Test dam", "started": 1_700_000_000.0, "uptime_s": 12.5, "config": "x.yaml"},
    "points": [{"point": "res.level", "value": 12.5, "unit": "m", "q": "good", "ts": 1.0, "age_s": 0.4},
               {"point": "res.nan", "value": math.nan, "unit": "", "q": "good", "ts": 1.0, "age_s": 0.4}],
    "devices": [{"bus": "b", "device": "gauge", "unit_id": 7, "online": True, "polls": 10, "errors": 1}],
    "links": [{"name": "county", "type": "mqtt", "connected": True, "sent_messages": 3, "failed_sends": 0,
               "backlog": 0}],
    "journal": {"backlog": 0, "committed": 5, "oldest_age_s": 0, "drops": 0},
    "loops": [{"name": "bus b", "overdue": False}],
}


class FakeGateway:
    """Stands in for gateway.app.Gateway: a snapshot dict and recorded actions."""

    def __init__(self) -> None:
        self.snap: dict[str, Any] = json.loads(json.dumps(SNAPSHOT, allow_nan=True))
        self.actions: list[tuple[str, dict[str, Any]]] = []

    def snapshot(self) -> dict[str, Any]:
        return self.snap

    async def action(self, name: str, args: dict[str, Any]) -> dict[str, Any]:
        self.actions.append((name, args))
        if args.get("bus") == "nope":
            raise LookupError("no bus 'nope'")
        return {"ok": True, "registers": [1, 2]}


class Running:
    """A StatusServer on its own event loop in a thread, reached over real TCP."""

    def __init__(self, config: StatusConfig, view: FakeGateway, limits: Limits | None = None) -> None:
        self.view = view
        self.server = StatusServer(config, view, limits)
        self.port = config.port
        self.loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        started = threading.Event()

        def main() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(self.server.start())
            self._task = self.loop.create_task(self.server.run())
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=main, daemon=True)
        self.thread.start()
        assert started.wait(10)

    def stop(self) -> None:
        async def cancel() -> None:
            assert self._task is not None
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(cancel(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def raw(self, data: bytes, *, read: bool = True) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(data)
            if not read:
                return b""
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks)

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
                ) -> tuple[int, dict[str, str], bytes]:
        head = {"Host": f"127.0.0.1:{self.port}", "Connection": "close", **(headers or {})}
        if method == "POST":  # as a browser does; tests of the Origin check are in test_status_hostile.py
            head.setdefault("Origin", f"http://127.0.0.1:{self.port}")
        if body or method == "POST":
            head["Content-Length"] = str(len(body))
        text = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n"
        return parse_response(self.raw(text.encode() + body))


def parse_response(data: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        key, _, value = line.partition(":")
        headers.setdefault(key.strip().lower(), value.strip())
    return status, headers, body


@pytest.fixture
def users_file(tmp_path: Path) -> Path:
    path = tmp_path / "users"
    set_password(path, "tech", "correct horse", "scrypt")
    return path


@contextmanager
def serving(users_file: Path, limits: Limits) -> Iterator[Running]:
    server = Running(StatusConfig(listen=f"127.0.0.1:{free_port()}", users_file=users_file), FakeGateway(), limits)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def running(users_file: Path) -> Iterator[Running]:
    with serving(users_file, Limits(header_timeout_s=0.5, idle_timeout_s=0.5, body_timeout_s=0.5)) as server:
        yield server


def login(running: Running, user: str = "tech", password: str = "correct horse") -> tuple[int, str]:
    status, headers, _ = running.request("POST", "/login", json.dumps({"user": user, "password": password}).encode(),
                                         {"Content-Type": "application/json"})
    return status, headers.get("set-cookie", "")


# -- read-only routes ------------------------------------------------------------------------------


def test_page_and_assets_are_served_with_a_strict_csp(running: Running) -> None:
    status, headers, body = running.request("GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b'src="/app.js"' in body and b"<script>" not in body  # no inline script
    assert "script-src" not in headers["content-security-policy"]  # default-src 'self' covers it
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY"
    assert running.request("GET", "/app.js")[0] == 200
    assert running.request("GET", "/app.css")[0] == 200
    assert running.request("GET", "/nothing")[0] == 404


def test_api_status_is_clean_json_with_session_state(running: Running) -> None:
    status, headers, body = running.request("GET", "/api/status")
    assert status == 200 and headers["content-type"] == "application/json"
    data = json.loads(body)  # strict JSON: the NaN value became null
    assert data["points"][1]["value"] is None
    assert data["points"][0]["value"] == 12.5
    assert data["session"] == {"user": None, "login": True, "actions": ["commission", "detect", "probe", "selftest"]}


def test_head_has_headers_and_no_body(running: Running) -> None:
    status, headers, body = running.request("HEAD", "/api/status")
    assert status == 200 and int(headers["content-length"]) > 0 and body == b""


def test_healthz_names_overdue_loops(running: Running) -> None:
    assert running.request("GET", "/healthz")[:1] == (200,)
    running.view.snap["loops"] = [{"name": "bus b", "overdue": True}, {"name": "journal", "overdue": False},
                                  {"name": "link county", "overdue": True}]
    status, _, body = running.request("GET", "/healthz")
    assert status == 503 and body == b"overdue: bus b, link county\n"


def test_healthz_is_503_when_the_snapshot_fails(running: Running) -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("journal closed")

    running.view.snapshot = broken  # type: ignore[method-assign]
    status, _, body = running.request("GET", "/healthz")
    assert status == 503 and b"journal closed" in body
    assert running.request("GET", "/api/status")[0] == 500  # and the server keeps serving
    assert running.request("GET", "/")[0] == 200


def test_metrics_content_type_and_eof(running: Running) -> None:
    status, headers, body = running.request("GET", "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith(b"# EOF\n")
    assert b'fieldgate_device_errors_total{bus="b",device="gauge"} 1' in body


def test_snapshot_jpeg_is_served_from_the_daemon_path_only(running: Running, tmp_path: Path) -> None:
    assert running.request("GET", "/snapshot.jpg")[0] == 404  # no camera
    jpeg = tmp_path / "snap.jpg"
    jpeg.write_bytes(b"\xff\xd8\xff\xe0" + b"x" * 100 + b"\xff\xd9")
    running.view.snap["snapshot"] = {"camera": "tower", "path": str(jpeg), "ts": 5.0, "boxes": [[1, 2, 3, 4]]}
    status, headers, body = running.request("GET", "/snapshot.jpg?path=/etc/passwd")
    assert status == 200 and headers["content-type"] == "image/jpeg" and body == jpeg.read_bytes()
    jpeg.write_text("not a jpeg")
    assert running.request("GET", "/snapshot.jpg")[0] == 404


def test_keep_alive_serves_several_requests_on_one_connection(running: Running) -> None:
    host = f"Host: 127.0.0.1:{running.port}\r\n"
    data = running.raw(f"GET /healthz HTTP/1.1\r\n{host}\r\nGET /healthz HTTP/1.1\r\n{host}Connection: close\r\n\r\n"
                       .encode())
    assert data.count(b"HTTP/1.1 200 OK") == 2


# -- bad requests ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(256)) + b"\r\n\r\n", 400),  # a TLS hello
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
    (b"GET / HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n", 505),
    (b"GET http://evil/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400),  # absolute-form target
    (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n folded\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header: y\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX: a\x00b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: y\r\n\r\n", 400),
    (b"BREW / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 501),
    (b"PUT / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 405),
    (b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
    (b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -1\r\n\r\n", 400),
    (b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999999\r\n\r\n", 413),
    (b"GET /%00 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 3\r\n\r\nabc", 400),
    # Before: ValueError from parse_qs / urlsplit closed the connection with no answer and a traceback.
    (b"GET /api/status?" + b"&".join(b"a%d=1" % i for i in range(30)) + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400),
    (b"GET //[x/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400),
    # Before: a deeply nested JSON login body raised RecursionError: a 500 and a traceback per request.
    (b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://127.0.0.1\r\nContent-Type: application/json\r\n"
     b"Content-Length: 12000\r\n\r\n" + b"[" * 12000, 400),
    (b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nOrigin: http://[x\r\n"
     b"Content-Length: 2\r\n\r\n{}", 403),
])
def test_bad_requests_get_an_error_status_and_the_server_lives_on(
        running: Running, request_bytes: bytes, status: int) -> None:
    response = running.raw(request_bytes)
    assert parse_response(response)[0] == status, response[:200]
    assert running.request("GET", "/healthz")[0] == 200


def test_oversize_header_line_and_header_section_are_refused(running: Running) -> None:
    long_line = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: " + b"a" * 20_000 + b"\r\n\r\n"
    assert parse_response(running.raw(long_line))[0] == 431
    many = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(100)) + b"\r\n"
    assert parse_response(running.raw(many))[0] == 431
    big = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 1000) for i in range(30))
           + b"\r\n")
    assert parse_response(running.raw(big))[0] == 431
    long_target = b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    assert parse_response(running.raw(long_target))[0] == 431
    assert running.request("GET", "/healthz")[0] == 200


def test_a_silent_or_truncated_client_is_dropped_after_the_timeout(running: Running) -> None:
    # Sends half a request and waits: the server closes the connection (recv returns b"") by itself.
    assert running.raw(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n") == b""
    assert running.raw(b"") == b""
    body_short = b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\nabc"
    assert parse_response(running.raw(body_short))[0] == 400
    assert running.request("GET", "/healthz")[0] == 200


def test_connections_beyond_the_cap_are_refused(users_file: Path) -> None:
    config = StatusConfig(listen=f"127.0.0.1:{free_port()}", users_file=users_file, max_connections=2)
    server = Running(config, FakeGateway(), Limits(header_timeout_s=5.0))
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(2)]
    try:
        for sock in idle:  # make sure both are accepted and held before the third arrives
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert sock.recv(100).startswith(b"HTTP/1.1 200")
        status, _, body = parse_response(server.raw(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
        assert status == 503 and b"too many connections" in body
    finally:
        for sock in idle:
            sock.close()
        server.stop()


# -- login and actions -----------------------------------------------------------------------------

PROBE = json.dumps({"bus": "b", "unit_id": 7, "table": "holding", "address": 0, "count": 2}).encode()
JSON = {"Content-Type": "application/json"}


def test_actions_need_a_login(running: Running) -> None:
    status, _, body = running.request("POST", "/api/action/probe", PROBE, JSON)
    assert status == 401 and json.loads(body) == {"error": "log in first"}
    status, _, _ = running.request("POST", "/api/action/probe", PROBE, {**JSON, "Cookie": "fg_session=forged"})
    assert status == 401
    assert running.request("GET", "/api/action/probe")[0] == 405
    assert running.view.actions == []


def test_wrong_password_and_unknown_user_are_refused(running: Running) -> None:
    assert login(running, password="wrong") == (401, "")
    assert login(running, user="nobody") == (401, "")


def test_login_sets_a_strict_cookie_that_allows_actions(running: Running) -> None:
    status, cookie = login(running)
    assert status == 200
    attrs = [a.strip() for a in cookie.split(";")]
    assert "HttpOnly" in attrs and "SameSite=Strict" in attrs and "Path=/" in attrs
    session = attrs[0]
    status, _, body = running.request("POST", "/api/action/probe", PROBE, {**JSON, "Cookie": session})
    assert status == 200, body
    assert json.loads(body) == {"action": "probe", "user": "tech", "result": {"ok": True, "registers": [1, 2]}}
    assert running.view.actions == [("probe", {"bus": "b", "unit_id": 7, "table": "holding", "address": 0,
                                               "count": 2})]
    status, _, body = running.request("GET", "/api/status", headers={"Cookie": session})
    assert json.loads(body)["session"]["user"] == "tech"
    # After logout the same cookie no longer works.
    running.request("POST", "/logout", b"{}", {**JSON, "Cookie": session})
    assert running.request("POST", "/api/action/probe", PROBE, {**JSON, "Cookie": session})[0] == 401


def test_form_login_works_too(running: Running) -> None:
    status, headers, _ = running.request("POST", "/login", b"user=tech&password=correct+horse",
                                         {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and headers["set-cookie"].startswith("fg_session=")


@pytest.mark.parametrize(("path", "body", "headers", "status"), [
    ("/api/action/probe", b'{"bus": "b", "unit_id": 300, "table": "holding", "address": 0}', JSON, 400),
    ("/api/action/probe", b'{"bus": "b", "unit_id": 1, "table": "x", "address": 0}', JSON, 400),
    ("/api/action/probe", b'{"bus": "b", "unit_id": 1, "table": "coil", "address": 0, "rm": 1}', JSON, 400),
    ("/api/action/probe", b"[1, 2]", JSON, 400),
    ("/api/action/probe", b"{not json", JSON, 400),
    ("/api/action/probe", PROBE, {"Content-Type": "text/plain"}, 415),
    ("/api/action/probe", PROBE, {**JSON, "Origin": "http://evil.example"}, 403),
    ("/api/action/reboot", b"{}", JSON, 404),
    ("/api/action/probe", b'{"bus": "nope", "unit_id": 1, "table": "coil", "address": 0}', JSON, 400),
])
def test_bad_action_requests_are_refused_with_reasons(
        running: Running, path: str, body: bytes, headers: dict[str, str], status: int) -> None:
    session = login(running)[1].split(";")[0]
    got, _, text = running.request("POST", path, body, {**headers, "Cookie": session})
    assert got == status, text
    assert "error" in json.loads(text)


def test_repeated_failed_logins_are_throttled(running: Running) -> None:
    for _ in range(5):
        assert login(running, password="wrong")[0] == 401
    assert login(running)[0] == 429  # even the right password, for the window


def test_logins_are_disabled_without_a_users_file() -> None:
    server = Running(StatusConfig(listen=f"127.0.0.1:{free_port()}"), FakeGateway())
    try:
        status, _ = login(server)
        assert status == 403
        assert json.loads(server.request("GET", "/api/status")[2])["session"]["login"] is False
    finally:
        server.stop()


def test_endless_empty_lines_between_requests_are_cut_off(running: Running) -> None:
    host = f"Host: 127.0.0.1:{running.port}\r\n"
    data = running.raw(f"GET /healthz HTTP/1.1\r\n{host}\r\n".encode() + b"\r\n" * 50)
    assert data.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 400" in data
