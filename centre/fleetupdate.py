"""The platform's side of a software update (docs/fleet.md): send a signed bundle in ``update_chunk``
commands (resuming: the gateway's reply lists what it still misses), then ``update_apply``, and follow the
gateway's ``rollout`` records to committed, rolled_back or refused, a wave at a time as ``push`` does."""

from __future__ import annotations

import base64
import time
from collections.abc import Sequence

from centre.fleet import FleetLink, Plan, Target, _why, command, waves
from gateway.fleet.updates import CHUNK_BYTES

BATCH = 16  # chunks in flight before their replies are awaited


def push_update(link: FleetLink, plan: Plan, targets: Sequence[Target]) -> list[Target]:
    """Every target's ``body`` is the same bundle (its sha256 names it); waves as in centre.fleet.push."""
    return waves(link, plan, targets, _start_update, extra_timeout=900.0)


def send_chunks(link: FleetLink, plan: Plan, target: Target, indices: Sequence[int] | None = None) -> dict[str, object]:
    """Send the chunks ``indices`` (default: ask with chunk 0, then send what the gateway says is missing,
    until it has all). The last reply, or ``{"error": why}``."""
    pieces = [target.body[i:i + CHUNK_BYTES] for i in range(0, len(target.body), CHUNK_BYTES)]
    todo = list(indices) if indices is not None else [0]
    last: dict[str, object] = {}
    while todo:
        for start in range(0, len(todo), BATCH):
            envelopes = [command(plan.key, plan.kid, target.gateway, "update_chunk", {
                "sha256": target.sha256, "index": i, "total": len(pieces),
                "data": base64.b64encode(pieces[i]).decode()}) for i in todo[start:start + BATCH]]
            for envelope in envelopes:
                link.send(envelope)
            target.chunks_sent += len(envelopes)
            for envelope in envelopes:
                # The gateway takes chunks one at a time, in the order sent: the last of a round is the one
                # that may complete the bundle, and its reply comes after the bundle is verified.
                last_of_round = envelope is envelopes[-1] and start + BATCH >= len(todo)
                reply = link.wait_reply(target.gateway, envelope.id,
                                        plan.verify_reply_timeout if last_of_round else plan.reply_timeout)
                if reply is None or reply.get("status") != "ok":
                    return {"error": f"update_chunk: {_why(reply)}"}
                last = reply.get("result") or {}
        if indices is not None:
            return last
        missing = last.get("missing")
        if not isinstance(missing, list) or last.get("missing_count") == 0:
            return last
        todo = [int(i) for i in missing]
    return last


def _start_update(link: FleetLink, plan: Plan, target: Target) -> None:
    target.sent_at = time.time()
    last = send_chunks(link, plan, target)
    if "error" in last:
        target.outcome, target.reason = "failed", str(last["error"])
        return
    if last.get("verified") is False:
        target.outcome, target.reason = "refused", f"bundle refused: {last.get('problem')}"
        return
    apply = command(plan.key, plan.kid, target.gateway, "update_apply", {
        "sha256": target.sha256, "window_s": plan.window_s, "max_wait_s": plan.max_wait_s})
    link.send(apply)
    reply = link.wait_reply(target.gateway, apply.id, plan.verify_reply_timeout)  # it verifies the bundle again
    if reply is not None and reply.get("reason") == "timeout":
        # Cut off by the gateway's commands.update_timeout: the update goes on there in the background
        # (gateway/fleet/release.py); its roll-out records decide, as after an answer.
        target.reason = f"update_apply: {_why(reply)}"
        return
    if reply is None or reply.get("status") != "ok":
        target.outcome, target.reason = "refused", f"update_apply: {_why(reply)}"
