"""The command plane: signed, expiring, replay-proof commands from the platform (docs/commands.md)."""

from gateway.commands.config import CommandKeyError, CommandsConfig, IssuerConfig, load_issuer_keys
from gateway.commands.envelope import Envelope, EnvelopeError, encode_compact, from_compact, parse_json
from gateway.commands.names import COMMANDS, CommandName, Reason, Status
from gateway.commands.plane import AuditSink, CommandPlane, Verifier
from gateway.commands.replay import ReplayCache
from gateway.commands.reply import Reply
from gateway.commands.target import CommandFailed, CommandTarget

__all__ = [
    "COMMANDS", "AuditSink", "CommandFailed", "CommandKeyError", "CommandName", "CommandPlane", "CommandTarget",
    "CommandsConfig", "Envelope", "EnvelopeError", "IssuerConfig", "Reason", "ReplayCache", "Reply", "Status",
    "Verifier", "encode_compact", "from_compact", "load_issuer_keys", "parse_json",
]
