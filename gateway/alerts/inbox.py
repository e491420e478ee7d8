"""Manual alerts into the running daemon: a polled inbox directory of signed request files.

An operator's request (``fieldgate alert draft`` + ``sign`` by one or two operators) is put into
``broadcast.inbox_dir`` *atomically*: ``fieldgate alert submit REQ`` writes ``.<name>.part`` in the
inbox and renames it to ``<name>.json``. Only complete ``*.json`` files are taken; hidden files
(``.…``) and other suffixes are left alone. A ``*.json`` copied in non-atomically that does not
parse yet is left for the next scan while younger than ``settle_s``.

Each file taken is first renamed into ``work/`` (the claim), then handed to
``BroadcastSubsystem.handle(alert, origin="manual", signatures=…)`` (the interlock decides:
an Actual alert needs two operators), then moved to ``done/`` or ``refused/`` beside a
``<name>.result.json`` sidecar saying why. A file found in ``work/`` at start-up was being handled
when the gateway stopped: it goes to ``refused/`` unplayed (never re-sounded by a restart).

Bounded: files per scan, bytes per file, directory entries looked at per scan, signatures per
request, files kept in ``done/`` and ``refused/``. Garbage is refused with a reason, never a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.alerts.config import BroadcastConfig
from gateway.alerts.model import Alert
from gateway.alerts.signing import OperatorSignature
from gateway.alerts.subsystem import BroadcastSubsystem
from gateway.fsutil import RECORD, ensure_dir, write_atomic
from gateway.shared import Progress

log = logging.getLogger("fieldgate.alerts.inbox")

MAX_SIGNATURES = 8  # two are needed; more is a malformed or hostile request


@dataclass(frozen=True)
class InboxLimits:
    interval_s: float = 1.0  # between scans
    max_files_per_scan: int = 8
    max_file_bytes: int = 64 * 1024
    max_entries_per_scan: int = 1000  # directory entries looked at per scan (a flooded inbox stays cheap)
    keep: int = 200  # request files kept in each of done/ and refused/ (their sidecars too)
    settle_s: float = 2.0  # an unparseable *.json younger than this may still be being copied


@dataclass
class InboxOutcome:
    file: str
    outcome: str  # "done" | "refused" | "waiting"
    reason: str
    alert_id: str | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    moved_to: str | None = None


class RequestRefused(ValueError):
    """The file is not a usable alert request; the message says why (it goes into the sidecar)."""


Parsed = tuple[Alert, list[OperatorSignature]]


class InboxWatcher:
    def __init__(self, config: BroadcastConfig, subsystem: BroadcastSubsystem, *,
                 inbox_dir: str | Path | None = None, limits: InboxLimits | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.inbox = Path(inbox_dir if inbox_dir is not None else config.inbox_dir)
        self.subsystem = subsystem
        self.limits = limits or InboxLimits()
        self._clock = clock
        self._started = False
        self._last_error = ""

    @property
    def work(self) -> Path:
        return self.inbox / "work"

    @property
    def done(self) -> Path:
        return self.inbox / "done"

    @property
    def refused(self) -> Path:
        return self.inbox / "refused"

    async def run(self, progress: Progress) -> None:
        """Scan forever; a broken inbox (permissions, disk) is logged, never fatal."""
        while True:
            try:
                await self.scan_once()
                self._last_error = ""
            except OSError as exc:
                self._log_once(f"alert inbox {self.inbox}: {exc}")
            progress.beat()
            await asyncio.sleep(self.limits.interval_s)

    async def scan_once(self) -> list[InboxOutcome]:
        # File system work runs in a worker thread (fsync on an SD card can take a while);
        # only the interlock and the audit run on the loop.
        outcomes = []
        if not self._started:
            for entry in await asyncio.to_thread(self._start):
                outcomes.append(await self._finish(
                    entry, None, "refused", "interrupted: the gateway stopped while handling it; not played "
                    "after the restart; submit a new request if it is still needed"))
            self._started = True
        for path in await asyncio.to_thread(self._candidates):
            try:
                outcome = await self._take(path)
            except OSError as exc:  # vanished, or cannot be moved: leave it, say so once
                self._log_once(f"alert inbox: {path.name}: {exc}")
                continue
            except Exception:  # a bug must not stop the inbox; a claimed file is refused at the next start
                log.exception("alert inbox: %s: unexpected error", path.name)
                continue
            if outcome is not None:
                outcomes.append(outcome)
        await asyncio.to_thread(self._prune_all)
        return outcomes

    def _start(self) -> list[Path]:
        """Make the directories; the files a previous run left in work/ (handled when it stopped)."""
        for sub in (self.inbox, self.work, self.done, self.refused):
            ensure_dir(sub, 0o770)
        return [e for e in sorted(self.work.iterdir())[: self.limits.max_files_per_scan * 8]
                if e.is_file() and not e.is_symlink()]

    # ---- finding files ----

    def _candidates(self) -> list[Path]:
        found: list[tuple[float, str]] = []
        with os.scandir(self.inbox) as entries:
            for i, entry in enumerate(entries):
                if i >= self.limits.max_entries_per_scan:
                    break
                if entry.name.startswith(".") or not entry.name.endswith(".json"):
                    continue
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(st.st_mode):
                    continue
                found.append((st.st_mtime, entry.name))
        found.sort()
        return [self.inbox / name for _, name in found[: self.limits.max_files_per_scan]]

    # ---- one file ----

    async def _take(self, path: Path) -> InboxOutcome | None:
        claimed = await asyncio.to_thread(self._check_and_claim, path)
        if claimed is None:
            return None
        target, data, parsed = claimed
        if isinstance(parsed, str):
            return await self._finish(target, data, "refused", parsed)
        alert, signatures = parsed
        results = await self.subsystem.handle(alert, origin="manual", signatures=signatures)
        refusal = next((r for r in results if r.output == "interlock" and r.fault == "refused"), None)
        if refusal is not None:
            reason = str(refusal.detail.get("reason", "refused by the interlock"))
            return await self._finish(target, data, "refused", reason, alert, results)
        ok = bool(results) and all(r.ok for r in results)
        reason = "accepted; every output confirmed" if ok else "accepted; some outputs failed (see results)"
        return await self._finish(target, data, "done", reason, alert, results)

    def _check_and_claim(self, path: Path) -> tuple[Path, bytes | None, Parsed | str] | None:
        """None: leave it for now. Else the claimed file, its bytes, and the request or why it is refused."""
        st = path.lstat()
        if not stat.S_ISREG(st.st_mode):
            return self._claim(path), None, "not a regular file (symlinks refused)"
        if st.st_size > self.limits.max_file_bytes:
            return self._claim(path), None, f"{st.st_size} bytes, more than {self.limits.max_file_bytes}"
        if self._clock() - st.st_mtime < self.limits.settle_s:
            try:
                _parse(_read_bounded(path, self.limits.max_file_bytes))
            except RequestRefused:
                return None  # perhaps still being copied in; look again next scan
        claimed = self._claim(path)
        data: bytes | None = None
        try:
            data = _read_bounded(claimed, self.limits.max_file_bytes)
            return claimed, data, _parse(data)
        except RequestRefused as exc:
            return claimed, data, str(exc)

    def _claim(self, path: Path) -> Path:
        target = _unique(self.work, path.name)
        os.rename(path, target)  # atomic on one file system: no other scan (or process) takes it twice
        return target

    async def _finish(self, claimed: Path, data: bytes | None, outcome: str, reason: str,
                      alert: Alert | None = None, results: list[Any] | None = None) -> InboxOutcome:
        received = dt.datetime.fromtimestamp(self._clock(), dt.UTC)
        original = claimed.name
        result_json = [r.to_json() for r in results or []]
        sidecar = {
            "file": original, "received": received.isoformat(), "outcome": outcome, "reason": reason[:2000],
            "sha256": hashlib.sha256(data).hexdigest() if data is not None else None,
            "alert": alert.identifier if alert else None, "status": alert.status.value if alert else None,
            "results": result_json[:64],
        }
        dest_dir = self.done if outcome == "done" else self.refused
        name = f"{received.strftime('%Y%m%dT%H%M%SZ')}-{original}"
        dest = await asyncio.to_thread(self._store, claimed, dest_dir, name, sidecar)
        log_level = logging.INFO if outcome == "done" else logging.WARNING
        log.log(log_level, "alert inbox: %s %s: %s", original, outcome, reason)
        await self.subsystem.note("inbox", {k: v for k, v in sidecar.items() if k != "results"} | {
            "moved_to": str(dest)})
        return InboxOutcome(original, outcome, reason, alert.identifier if alert else None, result_json,
                            str(dest))

    @staticmethod
    def _store(claimed: Path, dest_dir: Path, name: str, sidecar: dict[str, Any]) -> Path:
        """Sidecar first, then the request beside it: a request in done/refused always has its answer."""
        dest = _unique(dest_dir, name)
        _write_atomic(dest.with_name(dest.name[: -len(".json")] + ".result.json"), sidecar)
        os.rename(claimed, dest)
        return dest

    def _prune_all(self) -> None:
        for sub in (self.done, self.refused):
            self._prune(sub)

    def _prune(self, directory: Path) -> None:
        requests = sorted(p for p in directory.iterdir() if p.name.endswith(".json")
                          and not p.name.endswith(".result.json"))
        for old in requests[: max(0, len(requests) - self.limits.keep)]:
            with contextlib.suppress(OSError):
                old.unlink()
            with contextlib.suppress(OSError):
                old.with_name(old.name[: -len(".json")] + ".result.json").unlink()
        # Sidecars whose request is gone (e.g. deleted by hand) go too, so the directory stays bounded.
        for orphan in directory.glob("*.result.json"):
            if not orphan.with_name(orphan.name[: -len(".result.json")] + ".json").exists():
                with contextlib.suppress(OSError):
                    orphan.unlink()

    def _log_once(self, message: str) -> None:
        if message != self._last_error:
            log.error("%s", message)
            self._last_error = message


def _read_bounded(path: Path, limit: int) -> bytes:
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise RequestRefused(f"more than {limit} bytes")
    return data


def _parse(data: bytes) -> tuple[Alert, list[OperatorSignature]]:
    """A request as `fieldgate alert sign` writes it: {"alert": {...}, "signatures": [...]}."""
    try:
        body = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RequestRefused(f"not UTF-8 JSON: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("alert"), dict):
        raise RequestRefused('not an alert request: expected {"alert": {...}, "signatures": [...]}')
    signatures = body.get("signatures", [])
    if not isinstance(signatures, list) or len(signatures) > MAX_SIGNATURES:
        raise RequestRefused(f"signatures must be a list of at most {MAX_SIGNATURES}")
    try:
        return Alert.model_validate(body["alert"]), [OperatorSignature.model_validate(s) for s in signatures]
    except ValidationError as exc:
        raise RequestRefused(f"invalid request: {exc}"[:2000]) from None


def _unique(directory: Path, name: str) -> Path:
    """A name in ``directory`` whose request and sidecar names are both free (links count as taken)."""
    stem = name[: -len(".json")] if name.endswith(".json") else name
    candidate, n = stem, 1
    while os.path.lexists(directory / f"{candidate}.json") or os.path.lexists(directory / f"{candidate}.result.json"):
        candidate = f"{stem}.{n}"
        n += 1
    return directory / f"{candidate}.json"


def _write_atomic(path: Path, body: dict[str, Any]) -> None:
    # A fresh temporary name, never one an operator could have planted as a link (done/ and
    # refused/ are writable by the operators' group).
    write_atomic(path, json.dumps(body, ensure_ascii=False, indent=2).encode(), RECORD)


def submit(request: Path, inbox: Path) -> Path:
    """Put a signed request into an inbox atomically (``fieldgate alert submit``)."""
    data = request.read_bytes()
    _parse(data)  # refuse garbage here, where the operator sees the message
    name = request.name if request.name.endswith(".json") else request.name + ".json"
    target = inbox / name
    n = 1
    while target.exists():
        target = inbox / f"{name[: -len('.json')]}.{n}.json"
        n += 1
    tmp = inbox / f".{target.name}.part"
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.rename(tmp, target)
    return target
