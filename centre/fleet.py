"""`fieldgate fleet`: the platform's side of the configuration roll-out (docs/fleet.md).

``push`` signs each gateway's site file into ``config_chunk`` commands and a ``config_apply``, sends them
over MQTT and follows each gateway's ``rollout`` evidence records to its outcome (committed, rolled back,
refused), a wave at a time: the first ``--first`` gateways, then the rest only if all of those committed.
``summary`` lists who runs what, from the gateways' health messages. ``sign-config`` is an operator's
signature over a site file for one gateway, needed when the file changes the broadcast outputs or the
interlock (two operators, as for an Actual alert).
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from paho.mqtt import client as paho
from paho.mqtt.enums import CallbackAPIVersion

from gateway.alerts.signing import OperatorSignature, config_signing_message, sign_message
from gateway.commands.envelope import Envelope
from gateway.fleet.config import DEFAULT_UPDATE_TIMEOUT_S
from gateway.fleet.store import sha256_hex

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

PREFIX = "fieldgate/v1"
CHUNK_BYTES = 22 * 1024  # of the file per config_chunk: the signed envelope fits the MQTT link's 32 KiB
FINAL_STEPS = frozenset({"committed", "rolled_back", "refused"})


@dataclass
class Target:
    gateway: str
    body: bytes
    signatures: list[OperatorSignature] = field(default_factory=list)
    outcome: str = "pending"  # committed / rolled_back / refused / failed / timeout / not_sent
    reason: str = ""
    sent_at: float | None = None
    done_at: float | None = None
    chunks_sent: int = 0

    @property
    def sha256(self) -> str:
        return sha256_hex(self.body)

    def to_json(self) -> dict[str, Any]:
        took = None if self.sent_at is None or self.done_at is None else round(self.done_at - self.sent_at, 2)
        return {"gateway": self.gateway, "sha256": self.sha256, "outcome": self.outcome, "reason": self.reason,
                "seconds": took}


class FleetLink:
    """One MQTT 5 client of the platform: publishes signed commands, keeps replies, roll-out records and the
    newest health message of every gateway (bounded: one per gateway, replies by id until taken)."""

    def __init__(self, host: str, port: int, prefix: str = PREFIX) -> None:
        self.prefix = prefix
        self._lock = threading.Condition()
        self.replies: dict[tuple[str, int], dict[str, Any]] = {}
        self.rollouts: dict[str, list[dict[str, Any]]] = {}
        self.health: dict[str, dict[str, Any]] = {}
        self.online: dict[str, str] = {}
        self._subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"fleet-{uuid.uuid4().hex[:8]}",
                                  protocol=paho.MQTTv5)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise ConnectionError(f"no MQTT session with {host}:{port}")

    def _on_connect(self, client: paho.Client, *_args: Any) -> None:
        p = self.prefix
        client.subscribe([(f"{p}/+/reply", 1), (f"{p}/+/reply/#", 1), (f"{p}/+/evidence", 1), (f"{p}/+/event", 1),
                          (f"{p}/+/status", 1)])

    def _on_message(self, _client: paho.Client, _userdata: Any, message: paho.MQTTMessage) -> None:
        parts = message.topic.split("/")
        if len(parts) < 4:
            return
        gw, kind = parts[2], parts[3]
        try:
            body = json.loads(message.payload)
        except ValueError:
            return
        if not isinstance(body, dict):
            return
        with self._lock:
            if kind == "reply" and isinstance(body.get("id"), int):
                self.replies[(gw, body["id"])] = body
            elif kind == "status":
                self.online[gw] = str(body.get("state"))
            else:
                for record in body.get("records", []):
                    if not isinstance(record, dict):
                        continue
                    if record.get("kind") == "rollout":
                        self.rollouts.setdefault(gw, []).append(record)
                        del self.rollouts[gw][:-50]
                    elif record.get("kind") == "health":
                        self.health[gw] = record
            self._lock.notify_all()

    def send(self, envelope: Envelope) -> None:
        info = self.client.publish(f"{self.prefix}/{envelope.gw}/cmd/fleet", envelope.to_bytes(), qos=1)
        info.wait_for_publish(10)

    def wait_reply(self, gateway: str, command_id: int, timeout: float) -> dict[str, Any] | None:
        with self._lock:
            self._lock.wait_for(lambda: (gateway, command_id) in self.replies, timeout)
            return self.replies.pop((gateway, command_id), None)

    def final_rollout(self, gateway: str, sha256: str) -> dict[str, Any] | None:
        with self._lock:
            return next((r for r in self.rollouts.get(gateway, []) if r.get("sha256") == sha256
                         and r.get("step") in FINAL_STEPS), None)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def command(key: Ed25519PrivateKey, kid: str, gateway: str, cmd: str, args: dict[str, Any],
            ttl: int = 600) -> Envelope:
    issued = int(time.time())
    return Envelope(id=secrets.randbelow(2**53), gw=gateway, iat=issued, exp=issued + ttl,
                    nonce=secrets.token_bytes(12), kid=kid, cmd=cmd, args=args).signed(key)  # type: ignore[arg-type]


def chunk_commands(key: Ed25519PrivateKey, kid: str, gateway: str, body: bytes) -> list[Envelope]:
    pieces = [body[i:i + CHUNK_BYTES] for i in range(0, len(body), CHUNK_BYTES)] or [b""]
    sha = sha256_hex(body)
    return [command(key, kid, gateway, "config_chunk",
                    {"sha256": sha, "index": i, "total": len(pieces), "data": base64.b64encode(p).decode()})
            for i, p in enumerate(pieces)]


def sign_config(key: Ed25519PrivateKey, operator: str, gateway: str, body: bytes,
                now: float | None = None) -> OperatorSignature:
    sha = sha256_hex(body)
    return sign_message(lambda at: config_signing_message(gateway, sha, at), operator, key,
                        time.time() if now is None else now)


@dataclass
class Plan:
    key: Ed25519PrivateKey
    kid: str
    label: str | None = None
    window_s: float = 60.0
    max_wait_s: float = 600.0
    first: int = 0  # gateways in the first wave (0: all at once)
    # A reply to one chunk (~30 KB envelope: 0.25 s at 1 Mbit/s, 16 in flight 4 s) or to a config command.
    reply_timeout: float = 30.0
    # The reply to the update_chunk that completes the bundle and to update_apply: the gateway verifies the
    # whole bundle first, within its commands.update_timeout (gateway/fleet/config.py has the arithmetic).
    verify_timeout: float = DEFAULT_UPDATE_TIMEOUT_S
    outcome_timeout: float | None = None  # default: READY timeout + window + wait + margin

    @property
    def verify_reply_timeout(self) -> float:
        """The gateway's limit for a verifying command, and the way back."""
        return self.verify_timeout + self.reply_timeout


def push(link: FleetLink, plan: Plan, targets: Sequence[Target]) -> list[Target]:
    """Roll the targets out wave by wave; a wave that does not commit entirely stops the rest."""
    return waves(link, plan, targets, _start)


def waves(link: FleetLink, plan: Plan, targets: Sequence[Target], start: Callable[[FleetLink, Plan, Target], None],
          extra_timeout: float = 0.0) -> list[Target]:
    """The first ``plan.first`` targets, then the rest only if all of those committed."""
    groups = [list(targets[:plan.first]), list(targets[plan.first:])] if 0 < plan.first < len(targets) \
        else [list(targets)]
    for number, wave in enumerate(groups):
        for target in wave:
            start(link, plan, target)
        _await_outcomes(link, plan, wave, extra_timeout)
        if number + 1 < len(groups) and any(t.outcome != "committed" for t in wave):
            for target in groups[number + 1]:
                target.outcome, target.reason = "not_sent", "the first wave did not commit entirely"
            break
    return list(targets)


def _start(link: FleetLink, plan: Plan, target: Target) -> None:
    target.sent_at = time.time()
    chunks = chunk_commands(plan.key, plan.kid, target.gateway, target.body)
    for envelope in chunks:
        link.send(envelope)
    for envelope in chunks:
        reply = link.wait_reply(target.gateway, envelope.id, plan.reply_timeout)
        if reply is None or reply.get("status") != "ok":
            target.outcome, target.reason = "failed", f"config_chunk: {_why(reply)}"
            return
        result = reply.get("result") or {}
        if result.get("staged") is False:
            target.outcome, target.reason = "refused", "invalid: " + "; ".join(result.get("problems", [])[:3])
            return
    apply = command(plan.key, plan.kid, target.gateway, "config_apply", {
        "sha256": target.sha256, "label": plan.label, "window_s": plan.window_s, "max_wait_s": plan.max_wait_s,
        "signatures": [s.model_dump() for s in target.signatures]})
    link.send(apply)
    reply = link.wait_reply(target.gateway, apply.id, plan.reply_timeout)
    if reply is None or reply.get("status") != "ok":
        target.outcome, target.reason = "refused", f"config_apply: {_why(reply)}"


def _await_outcomes(link: FleetLink, plan: Plan, wave: list[Target], extra_timeout: float = 0.0) -> None:
    limit = plan.outcome_timeout or (60.0 + plan.window_s + plan.max_wait_s + 60.0 + extra_timeout)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        for target in wave:
            if target.outcome != "pending":
                continue
            record = link.final_rollout(target.gateway, target.sha256)
            if record is not None:
                target.outcome, target.reason = str(record["step"]), str(record.get("reason", ""))
                target.done_at = time.time()
        if all(t.outcome != "pending" for t in wave):
            return
        time.sleep(0.2)
    for target in wave:
        if target.outcome == "pending":
            target.outcome, target.reason = "timeout", f"no outcome within {limit:.0f} s"


def _why(reply: dict[str, Any] | None) -> str:
    if reply is None:
        return "no reply"
    return f"{reply.get('status')} {reply.get('reason') or ''} {reply.get('detail') or ''}".strip()


def summary_rows(link: FleetLink) -> list[dict[str, Any]]:
    with link._lock:
        gateways = sorted(set(link.health) | set(link.online))
        rows = []
        for gw in gateways:
            inv = link.health.get(gw, {}).get("inventory") or {}
            rollout = inv.get("rollout") or {}
            rows.append({"gateway": gw, "state": link.online.get(gw), "software": inv.get("sw"),
                         "config": inv.get("cfg"), "label": inv.get("label"), "model": inv.get("model"),
                         "serial": inv.get("serial"), "rollout": rollout.get("phase"),
                         "rollout_reason": rollout.get("reason")})
        return rows
