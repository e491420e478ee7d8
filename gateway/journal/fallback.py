"""The degraded journal: where readings wait when the real journal cannot be opened (docs/durability.md).

A siren site must keep polling, evaluating rules and sounding when its journal file cannot be
opened (permissions, a lock held by another process, a failing SD card). The daemon then keeps
its records in a **temporary journal** on a RAM file system (``$RUNTIME_DIRECTORY``, else
``/dev/shm``, else the temp directory), bounded to ``FALLBACK_MAX_BYTES`` by the journal's own
capacity rules (telemetry dropped oldest first, never alarms), keeps retrying the real one and,
once it opens, **merges** what is still owed back into it under the same seqs.

Seqs: the temporary journal starts above anything the real one can have handed out (its ``.seq``
reservation, and the current time in milliseconds), and the real journal continues above
everything the temporary one used, so ``(gw, seq)`` stays unique upstream and a record sent
twice is sent with the same seq. A temporary journal left behind by an earlier run (a restart
while degraded, or records the stop path could not commit, see ``spill``) is merged at the next
start that opens the real journal.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from gateway.fsutil import ensure_dir
from gateway.journal.config import JournalSettings, MiB
from gateway.journal.files import JournalFiles
from gateway.journal.records import JournalUnavailable
from gateway.journal.store import Journal
from gateway.shared import Journalable, RecordClass

log = logging.getLogger("fieldgate.journal")

FALLBACK_MAX_BYTES = 32 * MiB  # RAM: about a quarter of an hour of 2 000 points/s before telemetry is thinned
_MERGE_CHUNK = 5000
# What "cannot be opened" looks like: not damage (that is moved aside and started afresh by files.py).
OPEN_ERRORS = (JournalUnavailable, sqlite3.Error, OSError)


def runtime_dir() -> Path:
    """A RAM file system this process may write: systemd's RuntimeDirectory, /dev/shm, or the temp dir."""
    candidates = [*(os.environ.get("RUNTIME_DIRECTORY", "").split(":")), "/dev/shm", tempfile.gettempdir()]
    for candidate in candidates:
        if candidate and os.path.isdir(candidate) and os.access(candidate, os.W_OK | os.X_OK):
            return Path(candidate)
    return Path(tempfile.gettempdir())


def fallback_path(real: Path, gateway_id: str) -> Path:
    """Where the temporary journal of the journal at ``real`` lives (one per gateway id and journal path)."""
    digest = hashlib.sha256(str(Path(real).absolute()).encode()).hexdigest()[:10]
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", gateway_id)[:64]
    return runtime_dir() / f"fieldgate-{name}-{digest}" / "journal.sqlite"


def fallback_settings(settings: JournalSettings) -> JournalSettings:
    return settings.model_copy(update={"path": None, "max_bytes": min(settings.max_bytes, FALLBACK_MAX_BYTES),
                                       "reserve_bytes": 0})


def open_temporary(real: Path, links: dict[str, set[RecordClass]], settings: JournalSettings,
                   gateway_id: str) -> Journal:
    """The temporary journal, its seqs above anything the real journal can have handed out."""
    path = fallback_path(real, gateway_id)
    ensure_dir(path.parent)
    temp = Journal(path, links, fallback_settings(settings))
    floor = max(JournalFiles(real, settings).read_reserved(), int(time.time() * 1000))
    if temp.store.last < floor:
        with temp.store.tx(durable=True):
            temp.store.raise_seq(floor)
        temp.store.last = floor
        temp.store.reserve_for(0)
    return temp


def open_journal(path: Path, links: dict[str, set[RecordClass]], settings: JournalSettings,
                 gateway_id: str) -> tuple[Journal, str | None]:
    """(the real journal, None), or (a temporary journal, why the real one cannot be opened).

    A temporary journal left by an earlier run is merged into the real one here.
    """
    try:
        real = Journal(path, links, settings)
    except OPEN_ERRORS as exc:
        reason = str(exc) or type(exc).__name__
        log.critical("journal %s cannot be opened (%s): DEGRADED, readings are kept in a temporary journal "
                     "in RAM (%s, at most %d MiB) and the real one is retried", path, reason,
                     fallback_path(path, gateway_id).parent, fallback_settings(settings).max_bytes // MiB)
        return open_temporary(path, links, settings, gateway_id), reason
    leftover = fallback_path(path, gateway_id)
    if leftover.exists():
        try:
            merge_file(real, leftover, links, settings)
        except sqlite3.Error as exc:
            log.error("journal: the temporary journal %s left by an earlier run could not be merged (%s); "
                      "it is kept for the next start", leftover, exc)
    return real, None


def merge(real: Journal, temp: Journal) -> int:
    """Every record ``temp`` still owes, into ``real`` under its own seq; returns how many. On the journal
    thread. The real journal's seqs continue above every seq ``temp`` handed out."""
    moved, after = 0, 0
    with real.store.tx(durable=True):
        while True:
            rows, after = temp.store.export_rows(after, _MERGE_CHUNK)
            if not rows:
                break
            moved += real.store.adopt(rows)
        real.store.raise_seq(temp.store.last)
    real.store.last = max(real.store.last, temp.store.last)
    real.store.reserve_for(0)
    real.store._recount()
    real.capacity.enforce()
    return moved


def merge_file(real: Journal, path: Path, links: dict[str, set[RecordClass]], settings: JournalSettings) -> int:
    temp = Journal(path, links, fallback_settings(settings))
    try:
        moved = merge(real, temp)
    finally:
        temp.close()
    remove(path)
    log.warning("journal: merged %d records from the temporary journal %s", moved, path)
    return moved


def remove(path: Path) -> None:
    """The temporary journal and its side files, and its directory."""
    shutil.rmtree(path.parent, ignore_errors=True)


def spill(real_path: Path, links: dict[str, set[RecordClass]], settings: JournalSettings, gateway_id: str,
          items: Sequence[tuple[RecordClass, Journalable]]) -> int:
    """Records the stop path could not commit to the real journal: into the temporary journal, merged at the
    next start. Returns how many were kept (0 when even that failed: logged by the caller)."""
    temp = open_temporary(real_path, links, settings, gateway_id)
    try:
        return len(temp.append(items))
    finally:
        with contextlib.suppress(sqlite3.Error):
            temp.close()
