"""Logging setup: journald with structured fields under systemd, one plain line per record otherwise.

Code logs context with ``extra=``, e.g.
``log.warning("no answer", extra={"device": "pump-3", "point": "level"})``. Under systemd
those become journal fields (``DEVICE=pump-3 POINT=level``) that a technician can filter on
(``journalctl -u fieldgate DEVICE=pump-3``); on a terminal they are appended as
``key=value`` pairs: ``WARNING fieldgate.modbus: no answer device=pump-3 point=level``.
Logger names follow one scheme, listed in docs/logging.md.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, Literal, TextIO

# The context keys code may pass in extra=, in the order they are printed.
STRUCTURED_FIELDS: tuple[str, ...] = ("device", "point", "link", "alarm_id")
SYSLOG_IDENTIFIER = "fieldgate"

Destination = Literal["journald", "stderr"]


def record_fields(record: logging.LogRecord) -> dict[str, str]:
    """The structured context carried by ``record`` (only keys that are set and not None)."""
    fields: dict[str, str] = {}
    for key in STRUCTURED_FIELDS:
        value = getattr(record, key, None)
        if value is not None:
            fields[key] = str(value)
    return fields


def _quote(value: str) -> str:
    # Quote only when needed, so a line stays greppable and splits unambiguously.
    if value and not any(c.isspace() or c in '"=\\' for c in value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


class KeyValueFormatter(logging.Formatter):
    """``LEVEL logger: message key=value ...``, one line per record.

    Newlines in the message or a traceback are escaped so one record is one line: a
    multi-line record would be split into several unrelated journal/console lines.
    With ``syslog_prefix`` the line starts with ``<N>`` (the syslog priority), which journald
    turns into the entry's priority when it reads our stderr without systemd-python.
    """

    def __init__(self, *, syslog_prefix: bool = False) -> None:
        super().__init__()
        self.syslog_prefix = syslog_prefix

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        parts = [f"{record.levelname} {record.name}: {message}"]
        parts += [f"{key}={_quote(value)}" for key, value in record_fields(record).items()]
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            parts.append(f"exc={_quote(record.exc_text)}")
        line = " ".join(parts).replace("\r", "\\r").replace("\n", "\\n")
        return f"<{syslog_priority(record.levelno)}>{line}" if self.syslog_prefix else line


def syslog_priority(levelno: int) -> int:
    """Python level to syslog priority (3 err, 4 warning, 6 info, 7 debug; 2 crit)."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def under_journald(env: Mapping[str, str] | None = None, stream: TextIO | None = None) -> bool:
    """True when ``stream`` (stderr) is the journal stream systemd connected us to.

    systemd sets ``JOURNAL_STREAM=<dev>:<inode>`` of the stream it hands the service; a child
    that inherited the variable but had stderr redirected must not log to the journal.
    """
    env = os.environ if env is None else env
    expected = env.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    stream = sys.stderr if stream is None else stream
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return expected == f"{info.st_dev}:{info.st_ino}"


def journal_handler(sender: Callable[..., Any] | None = None) -> logging.Handler | None:
    """A JournalHandler that maps our extra= keys to journal fields, or None without systemd-python.

    ``sender`` replaces ``systemd.journal.send`` (the library's own hook), for tests.
    """
    try:
        from systemd import journal
    except ImportError:
        return None

    class StructuredJournalHandler(journal.JournalHandler):  # type: ignore[misc]
        """systemd-python's handler forwards every record attribute, lower-case ones included,
        which journald rejects as field names: send exactly the fields we mean instead."""

        def emit(self, record: logging.LogRecord) -> None:
            try:
                fields: dict[str, Any] = dict(self._extra)
                fields.update({key.upper(): value for key, value in record_fields(record).items()})
                if record.exc_info:
                    fields["EXCEPTION_TEXT"] = logging.Formatter().formatException(record.exc_info)
                self.send(
                    self.format(record),
                    PRIORITY=str(self.map_priority(record.levelno)),
                    LOGGER=record.name,
                    THREAD_NAME=record.threadName,
                    CODE_FILE=record.pathname,
                    CODE_LINE=record.lineno,
                    CODE_FUNC=record.funcName,
                    **fields,
                )
            except Exception:
                self.handleError(record)

    options: dict[str, Any] = {"SYSLOG_IDENTIFIER": SYSLOG_IDENTIFIER}
    if sender is not None:
        options["sender_function"] = sender
    handler: logging.Handler = StructuredJournalHandler(**options)
    # journald stores level and logger as fields already: the message is just the message.
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


def setup_logging(
    level: int | str = logging.INFO,
    *,
    stream: TextIO | None = None,
    env: Mapping[str, str] | None = None,
    prefer_journald: bool = True,
) -> Destination:
    """Configure the root logger once at start-up; returns where records go.

    Replaces any handlers on the root logger, so calling it again (tests, reload) does not
    duplicate lines.
    """
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.setLevel(level)
    target = sys.stderr if stream is None else stream
    journald_stream = under_journald(env, target)
    handler = journal_handler() if prefer_journald and journald_stream else None
    destination: Destination = "journald"
    if handler is None:
        handler = logging.StreamHandler(target)
        handler.setFormatter(KeyValueFormatter(syslog_prefix=journald_stream))
        destination = "stderr"
    root.addHandler(handler)
    return destination
