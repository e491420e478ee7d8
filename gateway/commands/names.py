"""The command names, their satellite codes, and the reasons a reply can carry."""

from __future__ import annotations

import enum
from typing import Literal

CommandName = Literal[
    "ping", "status", "read_point", "write_point",
    "trigger_broadcast", "cancel_broadcast", "request_snapshot", "reload_config",
    "config_chunk", "config_apply", "update_chunk", "update_apply",
]

# Position = the 4-bit code of the command in the compact satellite form. Append only.
COMMANDS: tuple[CommandName, ...] = (
    "ping", "status", "read_point", "write_point",
    "trigger_broadcast", "cancel_broadcast", "request_snapshot", "reload_config",
    "config_chunk", "config_apply",  # fleet roll-out (docs/fleet.md); a chunk never fits a satellite message
    "update_chunk", "update_apply",  # software update (docs/fleet.md); MQTT only as well
)

# What a site accepts when its config says nothing: commands that change nothing in the field.
READ_ONLY: tuple[CommandName, ...] = ("ping", "status", "read_point", "request_snapshot")


class Status(enum.StrEnum):
    OK = "ok"
    REJECTED = "rejected"  # not executed: the command was not acceptable
    FAILED = "failed"  # accepted and attempted; the action did not succeed (or its outcome is unknown)


class Reason(enum.StrEnum):
    """Why a command was rejected or failed. Position = code in the compact reply. Append only."""

    NONE = ""
    MALFORMED = "malformed"
    UNSIGNED = "unsigned"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_KEY = "unknown_key"
    WRONG_GATEWAY = "wrong_gateway"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    TTL_TOO_LONG = "ttl_too_long"
    REPLAYED = "replayed"
    ISSUED_BEFORE_CACHE = "issued_before_cache"  # older than the replay cache: cannot prove it is new
    REPLAY_CACHE_FULL = "replay_cache_full"
    REPLAY_CACHE_UNAVAILABLE = "replay_cache_unavailable"
    NOT_ALLOWED = "not_allowed"
    BAD_ARGS = "bad_args"
    AUDIT_FAILED = "audit_failed"
    TIMEOUT = "timeout"
    TARGET_ERROR = "target_error"  # the gateway refused or could not do it (unknown point, device error...)
    ERROR = "error"  # an unexpected exception
    BUSY = "busy"  # too many commands still running or waiting; not claimed: send the same one again


REASON_CODES: tuple[Reason, ...] = tuple(Reason)
