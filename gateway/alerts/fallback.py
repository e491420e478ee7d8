"""The broadcast audit log when its file cannot be written: never act without *some* audit record.

``ResilientAudit`` is what the broadcast subsystem writes to. It opens the configured audit log; if
that fails (permissions, a read-only or failing card, a link planted at the path) or an append to it
fails later, it switches to a temporary audit log on a RAM file system (beside the temporary journal,
gateway/journal/fallback.py) and says so (``problem``: the daemon raises an ``audit_unavailable``
fault alarm). ``retry()`` reopens the real log; once it opens, every record of the temporary log is
appended to it, in order, as a ``fallback_record`` (the original record, hash and all, inside), then
the temporary log is deleted. Only if neither can be written does an append raise: the subsystem
then takes no new activation (the decision is recorded before any output is driven), while a
Cancel still switches outputs off (gateway/alerts/subsystem.py). The daemon runs on in that state
too (polling, rules, journal, the fault alarm) and retries both logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import threading
from pathlib import Path
from typing import Any, Protocol

from gateway.alerts.audit import AuditLog, History, HistoryWanted

log = logging.getLogger("fieldgate.alerts")


class AuditTrail(Protocol):
    """What the broadcast subsystem needs of an audit log."""

    def history(self, since: float, enough: HistoryWanted | None = None) -> History: ...

    async def record(self, kind: str, data: dict[str, Any]) -> dict[str, Any]: ...

    def close(self) -> None: ...


class _NoAuditLog:
    """Neither the audit log nor the temporary one can be opened: every append fails (see above)."""

    def __init__(self, why: str) -> None:
        self.why = why

    def history(self, since: float, enough: HistoryWanted | None = None) -> History:
        return History([], False)  # nothing is known: alerts sent before this start are refused

    def append(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        raise OSError(f"no audit log can be written ({self.why})")

    def close(self) -> None:
        return None


class ResilientAudit:
    def __init__(self, path: Path, spare: Path) -> None:
        self.path = path
        self.spare = spare
        self.problem: str | None = None
        self._lock = threading.Lock()
        self._log: AuditLog | _NoAuditLog
        try:
            self._log = AuditLog(path)
        except OSError as exc:
            self.problem = f"{type(exc).__name__}: {exc}"
            log.critical("audit log %s cannot be opened (%s): DEGRADED, auditing to %s meanwhile", path, exc, spare)
            self._log = self._open_spare()
            return
        if spare.exists():
            self._merge_spare()  # an earlier run audited to the temporary log

    @property
    def degraded(self) -> bool:
        return self.problem is not None

    def history(self, since: float, enough: HistoryWanted | None = None) -> History:
        with self._lock:
            return self._log.history(since, enough)

    def append(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            try:
                return self._log.append(kind, data)
            except OSError as exc:
                if self.problem is not None:
                    raise  # the temporary log failed too: the caller must not act
                self.problem = f"{type(exc).__name__}: {exc}"
                log.critical("audit log %s failed (%s): DEGRADED, auditing to %s meanwhile", self.path, exc,
                             self.spare)
                self._close_quietly()
                self._log = self._open_spare()
                return self._log.append(kind, {**data, "audit_fallback": self.problem})

    def _open_spare(self) -> AuditLog | _NoAuditLog:
        try:
            return AuditLog(self.spare)
        except OSError as exc:
            # First in the text: the status line shows 80 characters, and this is what blocks broadcasts.
            self.problem = f"no audit log can be written: {self.problem}; temporary log: {type(exc).__name__}: {exc}"
            log.critical("temporary audit log %s cannot be opened either (%s): no new broadcast activation "
                         "until an audit log opens (a Cancel still switches outputs off)", self.spare, exc)
            return _NoAuditLog(self.problem)

    async def record(self, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        return await asyncio.to_thread(self.append, kind, data)

    def retry(self) -> bool:
        """Back on the real log if it opens now (the temporary records appended to it). True when healthy."""
        with self._lock:
            if self.problem is None:
                return True
            try:
                real = AuditLog(self.path)
            except OSError as exc:
                self.problem = f"{type(exc).__name__}: {exc}"
                if isinstance(self._log, _NoAuditLog):
                    self._log = self._open_spare()  # at least the temporary one, if it opens now
                return False
            self._close_quietly()
            self._log = real
            self.problem = None
            self._merge_spare()
            return True

    def _merge_spare(self) -> None:
        """Under the lock (or in __init__): the temporary log's records, in order, into the real one."""
        moved = 0
        for segment in [*sorted(self.spare.parent.glob(self.spare.name + ".*"), reverse=True), self.spare]:
            if not segment.exists():
                continue
            for line in segment.read_bytes().splitlines():
                try:
                    original = json.loads(line)
                except ValueError:
                    continue
                self._log.append("fallback_record", {"record": original})
                moved += 1
        self._log.append("fallback_merged", {"records": moved, "from": str(self.spare)})
        shutil.rmtree(self.spare.parent, ignore_errors=True)
        log.warning("audit log %s: %d records merged from the temporary log %s", self.path, moved, self.spare)

    def _close_quietly(self) -> None:
        with contextlib.suppress(OSError):
            self._log.close()

    def close(self) -> None:
        with self._lock:
            self._close_quietly()
