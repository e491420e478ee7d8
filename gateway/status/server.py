"""The status server: page, JSON, metrics, health and logged-in actions, on stdlib asyncio and h11.

Read-only routes need no login. ``POST /api/action/<name>`` needs a session cookie from
``POST /login`` (HttpOnly, SameSite=Strict, Secure over TLS), a JSON body and an ``Origin`` equal
to the page's own, so a page on another site can neither send the cookie nor forge the request.
Every request must name this box in ``Host`` (see :mod:`gateway.status.guard`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from pydantic import ValidationError

from gateway import i18n
from gateway.i18n.operator import describe_evidence
from gateway.status import auth
from gateway.status.config import StatusConfig, StatusTls
from gateway.status.connection import address, read_request, write
from gateway.status.guard import ConnectionSlots, HostAllowList, Slot, check_origin
from gateway.status.http import ClientGone, HttpError, Limits, Request, RequestParser, Response, error_bytes
from gateway.status.techroutes import TechRoutes, TechSources, sources_of
from gateway.status.view import ACTIONS, StatusView, json_safe, overdue_loops

log = logging.getLogger("fieldgate.status")

COOKIE = "fg_session"
MAX_SNAPSHOT_BYTES = 8 * 1024 * 1024
ACTION_TIMEOUT_S = 60.0
# A hash to check against when the user does not exist, so a wrong name costs the same time as
# a wrong password and the response time does not reveal which user names exist.
_DUMMY_HASH = auth.unmatchable_hash()
# scrypt takes 16 MiB and ~50 ms per check on a Pi 4: two at a time, the others wait their turn.
MAX_CONCURRENT_HASHES = 2

Handler = Callable[[Request], Awaitable[Response]]


def json_response(status: HTTPStatus, data: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(json_safe(data), separators=(",", ":"), allow_nan=False).encode("utf-8")
    return Response(status, body, "application/json", headers or {})


def error_json(status: HTTPStatus, message: str) -> Response:
    return json_response(status, {"error": message})


def too_many_connections() -> Response:
    return json_response(HTTPStatus.SERVICE_UNAVAILABLE, {"error": "too many connections"}, {"Retry-After": "5"})


def server_tls_context(tls: StatusTls) -> ssl.SSLContext:
    """TLS 1.2+ with the configured pair. Raises OSError/ssl.SSLError naming the files when they are unusable."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise OSError(f"status.tls: cannot use cert_file {tls.cert_file} with key_file {tls.key_file}: "
                      f"{getattr(exc, 'strerror', None) or exc}") from None
    return context


class StatusServer:
    def __init__(self, config: StatusConfig, view: StatusView, limits: Limits | None = None,
                 tech: TechSources | None = None) -> None:
        self.config = config
        self.view = view
        self.limits = limits or Limits()
        self.sessions = auth.SessionStore(config.session_ttl)
        self.throttle = auth.LoginThrottle()
        self.hosts = HostAllowList(config.hosts, config.host)
        self.slots = ConnectionSlots(config.max_connections, config.max_connections_per_client,
                                     config.healthz_reserve)
        self._hashing = asyncio.Semaphore(MAX_CONCURRENT_HASHES)
        self._action_lock = asyncio.Lock()
        self._connections: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None
        self._tls: ssl.SSLContext | None = None
        self.port: int | None = None
        self._get: dict[str, Handler] = {
            "/": self._index, "/index.html": self._index, "/app.js": self._js, "/app.css": self._css,
            "/api/status": self._status, "/metrics": self._metrics, "/healthz": self._healthz,
            "/snapshot.jpg": self._snapshot,
        }
        self._post: dict[str, Handler] = {"/login": self._login, "/logout": self._logout}
        self.tech = TechRoutes(tech or sources_of(view), self.language, json_response)
        self._get.update(self.tech.get_routes())

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        if self.config.tls is not None:
            self._tls = server_tls_context(self.config.tls)
        # TLS is started per connection after it holds a slot (see _connection), so handshakes
        # in progress count against the caps too.
        self._server = await asyncio.start_server(
            self._connection, self.config.host, self.config.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        scheme = "https" if self._tls else "http"
        log.info("status page on %s://%s/ (users file: %s)", scheme, self.config.listen,
                 self.config.users_file or "none, read-only")
        if self._tls is None and not self.config.loopback_only:
            log.warning("status page on %s without TLS: passwords and session cookies cross the network in "
                        "clear; set status.tls (docs/status.md)", self.config.listen)

    async def run(self) -> None:
        """Serve until cancelled; then stop listening and close every open connection."""
        if self._server is None:
            await self.start()
        assert self._server is not None
        try:
            await self._server.serve_forever()
        finally:
            await self.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        self._server = None

    # -- connections -----------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        client = address(writer.get_extra_info("peername"))
        local = address(writer.get_extra_info("sockname"))
        task = asyncio.current_task()
        slot = self.slots.take(client) if task is not None else None
        try:
            if slot is None or task is None:
                if self._tls is None:  # over TLS a plain answer is noise to the client: just close
                    await write(writer, error_bytes(too_many_connections()), self.limits)
                return
            self._connections.add(task)
            if self._tls is not None:
                await writer.start_tls(self._tls, ssl_handshake_timeout=self.limits.header_timeout_s)
            await self._serve(reader, writer, client, local, slot)
        except (OSError, TimeoutError, ClientGone):  # resets, TLS handshake failures, silent clients
            pass
        except Exception:  # one bad connection must never take the server down
            log.exception("status connection from %s failed", client)
        finally:
            if slot is not None:
                self.slots.give_back(client, slot)
            if task is not None:
                self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2.0)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: str, local: str,
                     slot: Slot) -> None:
        parser = RequestParser(self.limits)
        for served in range(self.limits.max_requests_per_connection):
            try:
                request = await read_request(reader, parser, self.limits, first=served == 0)
            except HttpError as exc:
                await write(writer, error_bytes(error_json(exc.status, exc.detail)), self.limits)
                return
            request.client, request.local, request.secure = client, local, self._tls is not None
            if slot is Slot.HEALTHZ and request.path != "/healthz":
                response = too_many_connections()
            else:
                response = await self.handle(request)
            keep_alive = (request.keep_alive and slot is Slot.GENERAL
                          and served + 1 < self.limits.max_requests_per_connection)
            data, stays_open = parser.respond(response, request.method == "HEAD", keep_alive)
            await write(writer, data, self.limits)
            if not stays_open:
                return

    # -- routing ---------------------------------------------------------------------------------

    async def handle(self, request: Request) -> Response:
        """Answer one parsed request. Never raises: a failing handler becomes a 500."""
        try:
            self.hosts.check(request)
            return await self._route(request)
        except HttpError as exc:
            return error_json(exc.status, exc.detail)
        except Exception:
            log.exception("status request %s %s failed", request.method, request.path)
            return error_json(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error; see the daemon log")

    async def _route(self, request: Request) -> Response:
        path = request.path
        if request.method in ("GET", "HEAD"):
            handler = self._get.get(path)
            if handler is not None:
                return await handler(request)
        elif request.method == "POST":
            handler = self._post.get(path)
            if handler is not None:
                return await handler(request)
            if path.startswith("/api/action/"):
                return await self._action(request, path.removeprefix("/api/action/"))
        allowed = ("GET, HEAD" if path in self._get else
                   "POST" if path in self._post or path.startswith("/api/action/") else "")
        if allowed:
            return Response(HTTPStatus.METHOD_NOT_ALLOWED, b"method not allowed\n", headers={"Allow": allowed})
        return Response.text(HTTPStatus.NOT_FOUND, "not found\n")

    # -- read-only routes ------------------------------------------------------------------------

    def language(self, request: Request) -> str:
        """The site file's status.language, else the best match of the browser's Accept-Language."""
        return i18n.choose_for_page(self.config.language, request.header("accept-language"))

    # The page (its HTML, script, style and texts) and the metrics renderer are imported by the first request
    # for them: a box nobody looks at never holds them (issue 18, idle memory).

    async def _index(self, request: Request) -> Response:
        from gateway.status import page

        language = self.language(request)
        return Response(HTTPStatus.OK, page.index_html(language).encode(), "text/html; charset=utf-8",
                        {"Content-Language": i18n.html_lang(language), "Vary": "Accept-Language"})

    async def _js(self, _request: Request) -> Response:
        from gateway.status import page

        return Response(HTTPStatus.OK, page.APP_JS.encode(), "text/javascript; charset=utf-8")

    async def _css(self, _request: Request) -> Response:
        from gateway.status import page

        return Response(HTTPStatus.OK, page.APP_CSS.encode(), "text/css; charset=utf-8")

    async def _status(self, request: Request) -> Response:
        snapshot = dict(self.view.snapshot())
        user = self.sessions.user(request.cookie(COOKIE))
        snapshot["session"] = {"user": user, "login": self.config.users_file is not None,
                               "actions": sorted(ACTIONS)}
        evidence = snapshot.get("evidence")
        if isinstance(evidence, list):
            with i18n.speaking(self.language(request)):
                snapshot["evidence_text"] = [describe_evidence(e) if isinstance(e, dict) else "" for e in evidence]
        return json_response(HTTPStatus.OK, snapshot)

    async def _metrics(self, _request: Request) -> Response:
        from gateway.status import metrics

        text = metrics.render_metrics(self.view.snapshot())
        return Response(HTTPStatus.OK, text.encode("utf-8"), metrics.CONTENT_TYPE)

    async def _healthz(self, _request: Request) -> Response:
        try:
            snapshot = self.view.snapshot()
        except Exception as exc:
            log.exception("healthz: snapshot failed")
            return Response.text(HTTPStatus.SERVICE_UNAVAILABLE, f"unhealthy: snapshot failed: {exc}\n")
        late = overdue_loops(snapshot)
        if late:
            return Response.text(HTTPStatus.SERVICE_UNAVAILABLE, "overdue: " + ", ".join(late) + "\n")
        degraded = [str(d.get("fault")) for d in snapshot.get("degraded") or [] if isinstance(d, dict)]
        if degraded:  # running, polling and sounding: not a reason to restart it, but say so
            return Response.text(HTTPStatus.OK, "degraded: " + ", ".join(degraded) + "\n")
        return Response.text(HTTPStatus.OK, "ok\n")

    async def _snapshot(self, _request: Request) -> Response:
        snap = self.view.snapshot().get("snapshot")
        raw_path = snap.get("path") if isinstance(snap, dict) else None
        if not raw_path:
            return Response.text(HTTPStatus.NOT_FOUND, "no camera snapshot\n")
        data = await asyncio.to_thread(_read_jpeg, Path(str(raw_path)))
        if data is None:
            return Response.text(HTTPStatus.NOT_FOUND, "snapshot file missing or not a JPEG\n")
        return Response(HTTPStatus.OK, data, "image/jpeg")

    # -- login and actions -----------------------------------------------------------------------

    async def _login(self, request: Request) -> Response:
        if self.config.users_file is None:
            return error_json(HTTPStatus.FORBIDDEN, "logins are disabled: no status.users_file configured")
        check_origin(request)
        form = _credentials(request)
        if not self.throttle.attempt(request.client):
            return json_response(HTTPStatus.TOO_MANY_REQUESTS, {"error": "too many failed logins; wait a minute"},
                                 {"Retry-After": str(int(self.throttle.window_s))})
        user, password = form.get("user", ""), form.get("password", "")
        try:
            users = auth.read_users(self.config.users_file)
        except auth.UsersFileError as exc:
            log.error("status login impossible: %s", exc)
            return error_json(HTTPStatus.SERVICE_UNAVAILABLE, "the users file cannot be read; see the daemon log")
        encoded = users.get(user, _DUMMY_HASH)
        async with self._hashing:
            ok = await asyncio.to_thread(auth.verify_password, password, encoded) and user in users
        if not ok:
            log.warning("status login failed for %r from %s", user[:64], request.client)
            return error_json(HTTPStatus.UNAUTHORIZED, "wrong user or password")
        self.throttle.succeeded(request.client)
        token = self.sessions.create(user)
        log.info("status login: %s from %s", user, request.client)
        return json_response(HTTPStatus.OK, {"user": user},
                             {"Set-Cookie": _cookie(request, token, int(self.config.session_ttl))})

    async def _logout(self, request: Request) -> Response:
        check_origin(request)
        self.sessions.drop(request.cookie(COOKIE))
        return json_response(HTTPStatus.OK, {"user": None}, {"Set-Cookie": _cookie(request, "", 0)})

    async def _action(self, request: Request, name: str) -> Response:
        model = ACTIONS.get(name)
        if model is None:
            return error_json(HTTPStatus.NOT_FOUND, f"no action {name[:64]!r}; actions: {', '.join(sorted(ACTIONS))}")
        check_origin(request)
        user = self.sessions.user(request.cookie(COOKIE))
        if user is None:
            return error_json(HTTPStatus.UNAUTHORIZED, "log in first")
        if _media_type(request) != "application/json":
            raise HttpError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send the body as application/json")
        body = _json_object(request)
        try:
            args = model.model_validate(body).model_dump(exclude_none=True)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
            return error_json(HTTPStatus.BAD_REQUEST, problems)
        if self._action_lock.locked():
            return error_json(HTTPStatus.CONFLICT, "another action is running; try again when it ends")
        async with self._action_lock:
            log.warning("status action %s by %s from %s: %s", name, user, request.client, args)
            try:
                handler = self.tech.actions.get(name)
                running = (handler(args, user, self.language(request)) if handler is not None
                           else self.view.action(name, args))
                result = await asyncio.wait_for(running, ACTION_TIMEOUT_S)
            except (ValueError, LookupError) as exc:
                return error_json(HTTPStatus.BAD_REQUEST, str(exc) or type(exc).__name__)
            except TimeoutError:
                return error_json(HTTPStatus.GATEWAY_TIMEOUT, f"action {name} took longer than {ACTION_TIMEOUT_S:g}s")
        return json_response(HTTPStatus.OK, {"action": name, "user": user, "result": result})


def _read_jpeg(path: Path) -> bytes | None:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SNAPSHOT_BYTES + 1)
    except OSError:
        return None
    if len(data) > MAX_SNAPSHOT_BYTES or not data.startswith(b"\xff\xd8"):
        return None
    return data


def _media_type(request: Request) -> str:
    return request.header("content-type").split(";")[0].strip().lower()


def _cookie(request: Request, token: str, max_age: int) -> str:
    secure = "; Secure" if request.secure else ""  # a browser then never sends it over plain HTTP
    return f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"


def _json_object(request: Request) -> dict[str, Any]:
    if not request.body:
        return {}
    try:
        body = json.loads(request.body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: "[[[[..." nesting
        raise HttpError(HTTPStatus.BAD_REQUEST, "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise HttpError(HTTPStatus.BAD_REQUEST, "body must be a JSON object")
    return body


def _credentials(request: Request) -> dict[str, str]:
    if _media_type(request) == "application/x-www-form-urlencoded":
        try:
            fields = parse_qs(request.body.decode("utf-8"), max_num_fields=10)
        except (UnicodeDecodeError, ValueError):
            raise HttpError(HTTPStatus.BAD_REQUEST, "bad form body") from None
        return {k: v[0] for k, v in fields.items() if v}
    if _media_type(request) != "application/json":
        raise HttpError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "send the login as application/json or a form")
    body = _json_object(request)
    return {k: v for k, v in body.items() if isinstance(v, str)}
