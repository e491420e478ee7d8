"""Generic HTTP trigger for vendor IP speakers (e.g. a 'play stored clip' endpoint)."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from drivers.broadcast.base import OutputState
from drivers.broadcast.config import HttpTriggerConfig
from gateway.alerts.contract import Activation, OutputResult, ReportsInResults

_MAX_BODY = 4096  # we only keep the start of a reply, for evidence


def _fill(template: str, values: dict[str, str], quote: bool) -> str:
    for key, value in values.items():
        template = template.replace("{" + key + "}", urllib.parse.quote(value, safe="") if quote else value)
    return template


class HttpTrigger(ReportsInResults):
    kind = "http"

    def __init__(self, name: str, config: HttpTriggerConfig) -> None:
        self.name = name
        self.config = config
        self.outdoor = config.outdoor
        self._state = OutputState.IDLE
        self._last: dict[str, Any] = {}

    def _result(self, action: str, ok: bool, fault: str | None = None, **detail: Any) -> OutputResult:
        return OutputResult(self.name, action, ok, fault, dict(detail))

    def _request(self, method: str, url: str, body: str | None) -> tuple[int, bytes]:
        data = body.encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers=dict(self.config.headers))
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout) as response:
                return int(response.status), response.read(_MAX_BODY)
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read(_MAX_BODY) if exc.fp else b""

    async def _call(self, action: str, method: str, url: str, body: str | None) -> OutputResult:
        try:
            code, reply = await asyncio.to_thread(self._request, method, url, body)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            self._state = OutputState.FAULT
            return self._result(action, False, "unreachable", error=str(exc))
        self._last = {"status": code}
        if not 200 <= code < 300:
            self._state = OutputState.FAULT
            text = reply[:200].decode(errors="replace")
            return self._result(action, False, "http_error", status=code, reply=text)
        return self._result(action, True, status=code)

    async def prepare(self, activation: Activation) -> OutputResult:
        return self._result("prepare", True)

    async def activate(self, activation: Activation) -> OutputResult:
        values = {
            "alert_id": activation.alert_id,
            "status": activation.status,
            "clip": activation.clips[0].stem if activation.clips else "",
            "zones": ",".join(activation.zones),
        }
        url = _fill(self.config.url, values, quote=True)
        body = _fill(self.config.body, values, quote=False) if self.config.body is not None else None
        result = await self._call("activate", self.config.method, url, body)
        if result.ok:
            self._state = OutputState.ACTIVE
        return result

    async def deactivate(self) -> OutputResult:
        if self.config.cancel_url is None:
            self._state = OutputState.IDLE
            return self._result("deactivate", True, note="no cancel_url: the speaker stops at clip end")
        result = await self._call("deactivate", self.config.cancel_method, self.config.cancel_url,
                                  self.config.cancel_body)
        if result.ok:
            self._state = OutputState.IDLE
        return result

    async def selftest(self) -> OutputResult:
        return self._result("selftest", True, note="no side-effect-free probe for a generic trigger")

    def status(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "state": self._state.value, "last": self._last}

    async def close(self) -> None:
        return None
