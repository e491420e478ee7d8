"""The `fieldgate` profile with its MQTT session: versioned JSON envelopes (docs/payloads.md).

The envelope encoding itself lives in gateway/payloads.py (shared with other code); this
adds what the link needs: retained status topic (birth and will), the command
subscription and the reply topics. Commands under ``<base>/cmd/…`` are signed envelopes
of the command plane, which parses them itself; ``decode_command`` only frames them.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.payloads import ENVELOPE_VERSION, FieldgateProfile
from gateway.profiles.base import InboundCommand
from gateway.shared import OutboundMessage, PayloadProfileName

# Larger command payloads are dropped unread (a signed command is a few hundred bytes).
MAX_COMMAND_BYTES = 64 * 1024


class FieldgateSessionProfile(FieldgateProfile):
    name: PayloadProfileName = "fieldgate"
    version = ENVELOPE_VERSION

    def status_topic(self) -> str | None:
        return f"{self.base}/status"

    def subscriptions(self) -> list[str]:
        return [f"{self.base}/cmd/#"]

    def on_connect(self) -> list[OutboundMessage]:
        return []

    def reply_topic(self, suffix: str) -> str:
        return f"{self.base}/{suffix.lstrip('/')}"

    def decode_command(self, topic: str, payload: bytes) -> InboundCommand | None:
        prefix = f"{self.base}/cmd/"
        if not topic.startswith(prefix) or len(payload) > MAX_COMMAND_BYTES:
            return None
        return InboundCommand(kind="rpc", topic=topic, method=topic[len(prefix):], params=payload)

    def encode_reply(self, command: InboundCommand, result: Any) -> tuple[str, bytes]:
        suffix = f"reply/{command.request_id}" if command.request_id is not None else "reply"
        body = {"v": ENVELOPE_VERSION, "gw": self.gateway_id, "re": command.request_id, "result": result}
        return suffix, json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
