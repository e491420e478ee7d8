"""CommandPlane: verify a signed command, claim it in the replay cache, run it, audit it, reply.

One entry point per channel: ``handle_json`` (MQTT payload) and ``handle_compact``
(a satellite COMMAND). Each returns a :class:`Reply` the caller publishes
(``<prefix>/<gw>/reply``) or packs for satellite. Checks, in order: well-formed,
signed, known key, good signature, this gateway, not expired / not in the future /
validity not over ``max_ttl``, allowed for that key on this site, arguments valid;
then the replay claim (persisted), the audit of the acceptance, and only then the action.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.commands.canonical import CanonicalError, canonical_json
from gateway.commands.config import CommandsConfig, effective_allow
from gateway.commands.dispatch import BadArgs, Call, call_for, check_args, time_limit
from gateway.commands.envelope import Envelope, EnvelopeError, from_compact, parse_json
from gateway.commands.names import Reason, Status
from gateway.commands.replay import ReplayCache, ReplayRefused
from gateway.commands.reply import Reply
from gateway.commands.target import CommandFailed, CommandTarget
from gateway.shared import StrictModel

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from gateway import compact

log = logging.getLogger("fieldgate.commands")

AuditSink = Callable[[dict[str, Any]], Awaitable[None]]
_AUDIT_ARGS_BYTES = 2048  # larger args are audited by digest only
_REJECT_BURST = 30  # rejection audits and warnings: a bucket of 30, refilled at one per 2 s
_REJECT_REFILL_S = 2.0
_MAX_CONCURRENT = 4  # commands running at once (a snapshot must not hold up a cancel)
# Admitted commands not yet finished (running or waiting to run). Beyond this a command is refused
# as busy *before* its replay claim, so the platform may send the same one again.
_MAX_PENDING = 32


@dataclass(frozen=True)
class Admission:
    """What the plane made of a command before acting on it.

    Refused: ``reply`` is final (``publish`` False when it is one of a flood: audited in summary and
    counted, not answered). Admitted: the command is claimed in the replay cache and its acceptance
    audited; ``run()`` performs it and gives the reply. A link may acknowledge the message to its
    broker once it has an Admission: nothing of the command lives only in memory after that
    except the action itself, and a crash then loses the command (no reply), never repeats it.
    """

    reply: Reply | None = None
    publish: bool = True
    run: Callable[[], Awaitable[Reply]] | None = None


class Rejected(Exception):
    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class Verifier:
    """The stateless checks (everything but the replay claim). Also used by `fieldgate command verify`."""

    def __init__(self, config: CommandsConfig, gateway_id: str, keys: Mapping[str, Ed25519PublicKey],
                 clock: Callable[[], float] = time.time, *, check_write_points: bool = True) -> None:
        self.config = config
        self.gateway_id = gateway_id
        self.check_write_points = check_write_points
        self.keys = dict(keys)
        self.allow = effective_allow(config)
        self.write_points = frozenset(config.write_points)
        self.clock = clock

    def check(self, env: Envelope) -> StrictModel:
        """Raise Rejected, or return the validated arguments."""
        if env.sig is None:
            raise Rejected(Reason.UNSIGNED, "the envelope has no signature")
        key = self.keys.get(env.kid)
        if key is None:
            raise Rejected(Reason.UNKNOWN_KEY, f"no issuer key '{env.kid}' on this gateway")
        from cryptography.exceptions import InvalidSignature  # imported already: the keys were loaded with it

        try:
            key.verify(env.sig, env.signing_bytes())
        except (InvalidSignature, CanonicalError):
            raise Rejected(Reason.BAD_SIGNATURE, f"signature does not verify with key '{env.kid}'") from None
        # Past this point the fields are the issuer's own words.
        if env.gw != self.gateway_id:
            raise Rejected(Reason.WRONG_GATEWAY, f"addressed to '{env.gw}', this is '{self.gateway_id}'")
        now, skew = self.clock(), self.config.max_clock_skew
        if env.exp - env.iat > self.config.max_ttl:
            raise Rejected(Reason.TTL_TOO_LONG,
                           f"valid for {env.exp - env.iat} s, more than max_ttl {self.config.max_ttl:.0f} s")
        if now > env.exp + skew:
            raise Rejected(Reason.EXPIRED, f"expired at {env.exp}, now {now:.0f}")
        if env.iat > now + skew:
            raise Rejected(Reason.NOT_YET_VALID, f"issued at {env.iat}, {env.iat - now:.0f} s in the future")
        if env.cmd not in self.allow.get(env.kid, frozenset()):
            where = "this site" if env.cmd not in self.config.allow else f"key '{env.kid}'"
            raise Rejected(Reason.NOT_ALLOWED, f"'{env.cmd}' is not allowed for {where}")
        try:
            return check_args(env.cmd, env.args, self.write_points if self.check_write_points else None)
        except BadArgs as exc:
            raise Rejected(Reason.BAD_ARGS, str(exc)) from None
        except PermissionError as exc:
            raise Rejected(Reason.NOT_ALLOWED, str(exc)) from None


class CommandPlane:
    def __init__(
        self,
        config: CommandsConfig,
        *,
        gateway_id: str,
        keys: Mapping[str, Ed25519PublicKey],
        target: CommandTarget,
        on_audit: AuditSink,
        replay: ReplayCache,
        gateway_number: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.gateway_id = gateway_id
        self.gateway_number = gateway_number
        self.verifier = Verifier(config, gateway_id, keys, clock)
        self.target = target
        self.replay = replay
        self._on_audit = on_audit
        self._clock = clock
        self._issuer_numbers = config.issuer_numbers()
        self._claim_lock = asyncio.Lock()
        self._running = asyncio.Semaphore(_MAX_CONCURRENT)
        self._tokens = float(_REJECT_BURST)
        self._tokens_at = time.monotonic()
        self._suppressed = 0
        self._pending = 0
        self.counters: dict[str, int] = {}

    # ---- entry points ----

    async def handle_json(self, payload: bytes, *, via: str = "mqtt", topic: str | None = None) -> Reply:
        """A JSON envelope, e.g. an MQTT message on ``<prefix>/<gw>/cmd/#``: admitted and run."""
        return await _finish(await self.admit_json(payload, via=via, topic=topic))

    def screen(self, payload: bytes) -> bool:
        """Cheap and synchronous: is ``payload`` an envelope for this gateway whose signature verifies with
        one of our issuer keys? A link asks this as each message arrives, so that a flood of anything
        else never takes the place of a signed command (drivers/mqtt/inbound.py)."""
        try:
            env = parse_json(payload)
        except EnvelopeError:
            return False
        key = self.verifier.keys.get(env.kid)
        if env.sig is None or key is None or env.gw != self.gateway_id:
            return False
        from cryptography.exceptions import InvalidSignature  # imported already: the keys were loaded with it

        try:
            key.verify(env.sig, env.signing_bytes())
        except (InvalidSignature, CanonicalError):
            return False
        return True

    async def admit_json(self, payload: bytes, *, via: str = "mqtt", topic: str | None = None) -> Admission:
        """Verify, claim and audit a JSON envelope; the action itself is ``Admission.run``."""
        context = {"via": via, "topic": topic, "digest": hashlib.sha256(payload).hexdigest(), "bytes": len(payload)}
        try:
            env = parse_json(payload)
        except EnvelopeError as exc:
            return await self._refuse(exc.reason, exc.detail, exc.hint, context)
        return await self._admit(env, context)

    async def handle_compact(self, message: compact.CompactMessage | bytes, *, via: str = "satellite") -> Reply:
        """A satellite COMMAND (raw bytes or already decoded by ``gateway.compact.decode``)."""
        from gateway import compact  # the compact codec: only where a satellite message is made or read

        raw = message if isinstance(message, bytes | bytearray) else None
        context: dict[str, Any] = {"via": via}
        if raw is not None:
            context.update(digest=hashlib.sha256(raw).hexdigest(), bytes=len(raw))
            try:
                message = compact.decode(bytes(raw))
            except compact.CompactDecodeError as exc:
                return await self._reject(Reason.MALFORMED, f"compact: {exc}", {}, context)
        assert isinstance(message, compact.CompactMessage)
        hint = {"id": message.seqs[0] if message.seqs else None}
        if self.gateway_number is None:
            return await self._reject(Reason.WRONG_GATEWAY, "this gateway has no satellite gateway number", hint,
                                      context)
        if message.gateway != self.gateway_number:
            return await self._reject(Reason.WRONG_GATEWAY, f"addressed to gateway number {message.gateway}, "
                                      f"this is {self.gateway_number}", hint, context)
        try:
            env = from_compact(message, self.gateway_id, self._issuer_numbers)
        except EnvelopeError as exc:
            return await self._reject(exc.reason, exc.detail, exc.hint, context)
        return await _finish(await self._admit(env, context))

    # ---- the pipeline ----

    async def _admit(self, env: Envelope, context: dict[str, Any]) -> Admission:
        hint = {"id": env.id, "kid": env.kid, "cmd": env.cmd}
        context = {**context, "iat": env.iat, "exp": env.exp, "args": _audit_args(env.args)}
        try:
            parsed = self.verifier.check(env)
            if self._pending >= _MAX_PENDING:
                raise Rejected(Reason.BUSY, f"{self._pending} commands are still running or waiting; send it again")
            async with self._claim_lock:
                await asyncio.to_thread(self.replay.claim, env.kid, env.id, env.nonce, env.iat, env.exp)
        except (Rejected, ReplayRefused) as exc:
            return await self._refuse(exc.reason, exc.detail, hint, context)
        try:
            # No unaudited action: if the acceptance cannot be journalled, nothing happens.
            await self._on_audit(self._record("accepted", hint, context, Status.OK, Reason.NONE, ""))
        except Exception as exc:
            log.error("command %s %s from %s not run: audit failed: %r", env.id, env.cmd, env.kid, exc)
            return Admission(self._reply(hint, context, Status.FAILED, Reason.AUDIT_FAILED,
                                         "could not journal the command"))
        log.info("command %s %s from %s accepted via %s", env.id, env.cmd, env.kid, context["via"],
                 extra={"command_id": env.id})
        self._pending += 1
        return Admission(run=lambda: self._execute(env, parsed, hint, context))

    async def _execute(self, env: Envelope, parsed: StrictModel, hint: dict[str, Any],
                       context: dict[str, Any]) -> Reply:
        try:
            status, reason, detail, result = await self._run(
                call_for(env.cmd, env.args, parsed, self.target, self.gateway_id, env.id),
                time_limit(parsed, self.config.timeout, self.config.update_timeout))
        finally:
            self._pending -= 1
        reply = self._reply(hint, context, status, reason, detail, result)
        level = logging.INFO if status is Status.OK else logging.ERROR
        log.log(level, "command %s %s from %s: %s%s", env.id, env.cmd, env.kid, status.value,
                f" ({reason.value}: {detail})" if reason else "", extra={"command_id": env.id})
        await self._audit_quietly(self._record("done", hint, context, status, reason, detail,
                                               _audit_result(reply.result)))
        return reply

    async def _run(self, call: Call, limit_s: float) -> tuple[Status, Reason, str, dict[str, Any] | None]:
        async with self._running:
            try:
                async with asyncio.timeout(limit_s):
                    result = await call()
            except TimeoutError:
                return (Status.FAILED, Reason.TIMEOUT,
                        f"no answer within {limit_s:.0f} s; the outcome is unknown", None)
            except CommandFailed as exc:
                return Status.FAILED, Reason.TARGET_ERROR, str(exc)[:300], None
            except Exception as exc:
                log.exception("command raised")
                return Status.FAILED, Reason.ERROR, repr(exc)[:300], None
        if not isinstance(result, dict):
            return Status.FAILED, Reason.ERROR, f"target returned a {type(result).__name__}, not a dict", None
        return Status.OK, Reason.NONE, "", self._bounded(result)

    def _bounded(self, result: dict[str, Any]) -> dict[str, Any]:
        try:
            size = len(canonical_json(result))
        except (CanonicalError, RecursionError) as exc:
            return {"unencodable": True, "error": str(exc)[:200]}
        if size <= self.config.max_result_bytes:
            return result
        return {"truncated": True, "bytes": size, "keys": sorted(str(k) for k in result)[:50]}

    # ---- rejection, replies, audit ----

    async def _reject(self, reason: Reason, detail: str, hint: dict[str, Any], context: dict[str, Any]) -> Reply:
        refused = await self._refuse(reason, detail, hint, context)
        assert refused.reply is not None
        return refused.reply

    async def _refuse(self, reason: Reason, detail: str, hint: dict[str, Any], context: dict[str, Any]) -> Admission:
        """A rejection: always counted; logged, audited and answered unless it is one of a flood."""
        reply = self._reply(hint, context, Status.REJECTED, reason, detail)
        if self._take_token():
            suppressed, self._suppressed = self._suppressed, 0
            log.warning("command %s %s from %s rejected via %s: %s: %s%s", hint.get("id"), hint.get("cmd"),
                        hint.get("kid"), context.get("via"), reason.value, detail,
                        f" ({suppressed} earlier rejections not logged)" if suppressed else "")
            record = self._record("rejected", hint, context, Status.REJECTED, reason, detail)
            if suppressed:
                record["suppressed_before"] = suppressed
            await self._audit_quietly(record)
            return Admission(reply)
        self._suppressed += 1  # a flood of junk must not flood the journal, nor the uplink with replies
        return Admission(reply, publish=False)

    def _take_token(self) -> bool:
        t = time.monotonic()
        self._tokens = min(float(_REJECT_BURST), self._tokens + (t - self._tokens_at) / _REJECT_REFILL_S)
        self._tokens_at = t
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def _reply(self, hint: dict[str, Any], context: dict[str, Any], status: Status, reason: Reason, detail: str,
               result: dict[str, Any] | None = None) -> Reply:
        key = f"{status.value}:{reason.value}" if reason else status.value
        self.counters[key] = self.counters.get(key, 0) + 1
        command_id = hint.get("id")
        return Reply(gw=self.gateway_id, id=command_id if isinstance(command_id, int) else None,
                     kid=_text(hint.get("kid")), cmd=_text(hint.get("cmd")), status=status, reason=reason,
                     detail=detail, result=result, ts=round(self._clock(), 3), via=str(context.get("via", "")))

    def _record(self, phase: str, hint: dict[str, Any], context: dict[str, Any], status: Status, reason: Reason,
                detail: str, result: Any = None) -> dict[str, Any]:
        record: dict[str, Any] = {
            "type": "command", "phase": phase, "gw": self.gateway_id, "id": hint.get("id"),
            "kid": _text(hint.get("kid")), "cmd": _text(hint.get("cmd")), "status": status.value,
            "reason": reason.value or None, "detail": detail, "ts": round(self._clock(), 3),
            **{k: v for k, v in context.items() if v is not None},
        }
        if result is not None:
            record["result"] = result
        return record

    async def _audit_quietly(self, record: dict[str, Any]) -> None:
        try:
            await self._on_audit(record)
        except Exception as exc:
            log.error("command audit record lost (%r): %s", exc, record)

    def close(self) -> None:
        self.replay.close()


def _text(value: Any) -> str | None:
    return value[:64] if isinstance(value, str) else None


def _audit_args(args: dict[str, Any]) -> Any:
    try:
        raw = canonical_json(args)
    except CanonicalError:
        return {"unencodable": True}
    if len(raw) <= _AUDIT_ARGS_BYTES:
        return args
    return {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}


def _audit_result(result: dict[str, Any] | None) -> Any:
    if result is None:
        return None
    try:
        raw = canonical_json(result)
    except CanonicalError:
        return {"unencodable": True}
    if len(raw) <= _AUDIT_ARGS_BYTES:
        return result
    return {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}


async def _finish(admission: Admission) -> Reply:
    if admission.run is not None:
        return await admission.run()
    assert admission.reply is not None
    return admission.reply
