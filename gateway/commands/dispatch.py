"""Per-command argument models and the call each command makes on the target."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import Field, StrictBool, StrictFloat, StrictInt, ValidationError

from gateway.alerts.model import CAP_TOKEN, Alert
from gateway.alerts.signing import OperatorSignature
from gateway.commands.names import CommandName
from gateway.commands.target import CommandTarget
from gateway.shared import StrictModel

_ID = r"^[A-Za-z0-9_.:/-]{1,128}$"


class NoArgs(StrictModel):
    pass


class PointArgs(StrictModel):
    point: str = Field(pattern=_ID)


class WriteArgs(StrictModel):
    point: str = Field(pattern=_ID)
    value: StrictBool | StrictInt | StrictFloat


class BroadcastArgs(StrictModel):
    alert: Alert
    signatures: list[OperatorSignature] = Field(default_factory=list, max_length=8)


class CancelArgs(StrictModel):
    alert_id: str = Field(pattern=CAP_TOKEN)


class CameraArgs(StrictModel):
    camera: str = Field(pattern=_ID)


_SHA256 = r"^[0-9a-f]{64}$"
CHUNK_B64 = 30 * 1024  # base64 of 22 KiB is 30 040 characters


class ConfigChunkArgs(StrictModel):
    """One piece of a site file (docs/fleet.md); the chunks of one file share its sha256."""

    sha256: str = Field(pattern=_SHA256)
    index: int = Field(ge=0, lt=64)
    total: int = Field(ge=1, le=64)
    # base64 of at most 22 KiB of the file: the whole envelope fits the MQTT link's 32 KiB message limit
    data: str = Field(max_length=CHUNK_B64)


class ConfigApplyArgs(StrictModel):
    sha256: str = Field(pattern=_SHA256)
    label: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_.:+-]+$")
    window_s: float = Field(default=60.0, ge=5, le=3600, description="health window after the change")
    max_wait_s: float = Field(default=600.0, ge=0, le=86400, description="longest wait for a safe moment")
    signatures: list[OperatorSignature] = Field(default_factory=list, max_length=8)


class UpdateChunkArgs(StrictModel):
    """One piece of a software update bundle (docs/fleet.md); kept as its own file, so a transfer resumes."""

    sha256: str = Field(pattern=_SHA256)
    index: int = Field(ge=0, lt=100_000)
    total: int = Field(ge=1, le=100_000)
    data: str = Field(max_length=CHUNK_B64)  # base64 of at most 22 KiB (gateway/fleet/updates.py CHUNK_BYTES)


class UpdateApplyArgs(StrictModel):
    sha256: str = Field(pattern=_SHA256)
    window_s: float = Field(default=120.0, ge=5, le=3600, description="health window of the new release")
    max_wait_s: float = Field(default=600.0, ge=0, le=86400, description="longest wait for a safe moment")


ARG_MODELS: dict[CommandName, type[StrictModel]] = {
    "ping": NoArgs, "status": NoArgs, "read_point": PointArgs, "write_point": WriteArgs,
    "trigger_broadcast": BroadcastArgs, "cancel_broadcast": CancelArgs, "request_snapshot": CameraArgs,
    "reload_config": NoArgs, "config_chunk": ConfigChunkArgs, "config_apply": ConfigApplyArgs,
    "update_chunk": UpdateChunkArgs, "update_apply": UpdateApplyArgs,
}


class BadArgs(ValueError):
    pass


def check_args(cmd: CommandName, args: dict[str, Any], write_points: frozenset[str] | None) -> StrictModel:
    """Validate before the command is claimed; raises BadArgs (reason bad_args) or PermissionError.
    ``write_points`` None skips the write allowlist (the offline `verify` tool without a site config)."""
    try:
        parsed = ARG_MODELS[cmd].model_validate(args)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "args"
        raise BadArgs(f"{where}: {first['msg']}"[:300] + (f" (+{exc.error_count() - 1} more)"
                                                           if exc.error_count() > 1 else "")) from None
    if isinstance(parsed, WriteArgs) and write_points is not None and parsed.point not in write_points:
        raise PermissionError(f"point '{parsed.point}' is not in commands.write_points")
    return parsed


Call = Callable[[], Awaitable[dict[str, Any]]]


def time_limit(parsed: StrictModel, timeout: float, update_timeout: float) -> float:
    """How long the command may run: any update_chunk may be the one that completes the bundle and verifies
    it, and update_apply verifies it again; both read and write the whole bundle (gateway/fleet/config.py)."""
    if isinstance(parsed, UpdateChunkArgs | UpdateApplyArgs):
        return max(timeout, update_timeout)
    return timeout


def call_for(cmd: CommandName, args: dict[str, Any], parsed: StrictModel, target: CommandTarget,
             gateway_id: str, command_id: int | None = None) -> Call:
    """The coroutine factory that performs ``cmd`` (args already checked by check_args)."""
    if cmd == "ping":
        async def ping() -> dict[str, Any]:
            return {"pong": True, "gw": gateway_id, "time": round(time.time(), 3)}
        return ping
    if cmd == "status":
        async def status() -> dict[str, Any]:
            return target.snapshot()
        return status
    if isinstance(parsed, PointArgs):
        return lambda: target.read_point(parsed.point)
    if isinstance(parsed, WriteArgs):
        return lambda: target.write_point(parsed.point, parsed.value)
    if isinstance(parsed, BroadcastArgs):
        # The target gets the request as sent (the operators signed that alert's digest).
        request = {"alert": args["alert"], "signatures": args.get("signatures", [])}
        return lambda: target.trigger_broadcast(request)
    if isinstance(parsed, CancelArgs):
        return lambda: target.cancel_broadcast(parsed.alert_id)
    if isinstance(parsed, CameraArgs):
        return lambda: target.request_snapshot(parsed.camera)
    if cmd == "reload_config":
        return target.reload_config
    if isinstance(parsed, ConfigChunkArgs):
        return lambda: target.config_chunk(parsed.sha256, parsed.index, parsed.total, parsed.data)
    if isinstance(parsed, ConfigApplyArgs):
        return lambda: target.config_apply(parsed.sha256, parsed.label, parsed.window_s, parsed.max_wait_s,
                                           parsed.signatures, command_id)
    if isinstance(parsed, UpdateChunkArgs):
        return lambda: target.update_chunk(parsed.sha256, parsed.index, parsed.total, parsed.data)
    if isinstance(parsed, UpdateApplyArgs):
        return lambda: target.update_apply(parsed.sha256, parsed.window_s, parsed.max_wait_s, command_id)
    raise AssertionError(f"no dispatch for {cmd}")
