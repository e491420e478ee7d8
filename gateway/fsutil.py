"""How the daemon creates and writes files: never through a symbolic link, always with its own mode.

Paths under the state directory are predictable (``done/<utc>-<name>.result.json``, ``journal.seq``);
whoever can write a directory the daemon writes into (the operators' group can write the alert
inbox) could plant a link there and make the daemon overwrite the link's target. So:

* files are created with ``O_CREAT | O_EXCL`` (a fresh temporary name, ``mkstemp``) or opened with
  ``O_NOFOLLOW``, and a finished file is renamed into place (``rename`` replaces a link, it never
  writes through it);
* every file gets an explicit mode with ``fchmod``, whatever the process umask: secrets ``0600``,
  the journal, audit log and other records ``0640`` (the ``fieldgate`` group may read them).

Directories are created with their mode too, but a directory that already exists as a link
is accepted: an administrator may have put ``/var/lib/fieldgate`` on another disk that way.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

SECRET = 0o600
RECORD = 0o640
PRIVATE_DIR = 0o750

_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


class LinkRefused(OSError):
    """The daemon was asked to write a file that is a symbolic link."""


def ensure_dir(path: Path, mode: int = PRIVATE_DIR) -> Path:
    """Create ``path`` (and parents) with ``mode``, independent of the umask; an existing one is kept."""
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, mode)
    return path


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = RECORD, *, durable: bool = True) -> None:
    """Replace ``path`` with ``data``: a fresh temporary file beside it (never a planted one), then rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(path.parent)


def open_append(path: Path, mode: int = RECORD) -> BinaryIO:
    """Open (or create) ``path`` for appending, refusing a symbolic link, with ``mode`` set."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW, mode)
    except OSError as exc:
        raise _explain(path, exc) from None
    os.fchmod(fd, mode)
    return os.fdopen(fd, "ab")


def create_exclusive(path: Path, mode: int = SECRET) -> BinaryIO:
    """A new file at ``path`` for writing; refuses an existing file or link (a key is never overwritten)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, mode)
    os.fchmod(fd, mode)
    return os.fdopen(fd, "wb")


def prepare_database(path: Path, mode: int = RECORD) -> None:
    """Before SQLite opens ``path``: refuse links at the database and its -wal/-shm, and create an empty
    database file with ``mode`` (SQLite gives its -wal and -shm the database file's mode)."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        candidate = Path(f"{path}{suffix}")
        if candidate.is_symlink():
            raise LinkRefused(f"{candidate} is a symbolic link; the daemon writes no file through a link")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, mode)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _explain(path: Path, exc: OSError) -> OSError:
    import errno

    if exc.errno == errno.ELOOP:
        return LinkRefused(f"{path} is a symbolic link; the daemon writes no file through a link")
    return exc


def open_checked_database(path: Path, schema: str, *, check_same_thread: bool = True) -> sqlite3.Connection:
    """A small state database (WAL, ``synchronous=FULL``, autocommit) that passed ``quick_check``, with
    ``schema`` applied. Raises sqlite3.DatabaseError for a damaged file: the caller moves it aside."""
    prepare_database(path)
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=check_same_thread, timeout=5.0)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        check = db.execute("PRAGMA quick_check").fetchone()
        if check is None or check[0] != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {check}")
        db.executescript(schema)
    except sqlite3.DatabaseError:
        db.close()
        raise
    return db


def move_database_aside(path: Path, stamp: int) -> Path:
    """Rename a damaged database to ``<name>.corrupt-<stamp>`` and remove its -wal/-shm/-journal."""
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    path.replace(aside)
    for suffix in ("-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    return aside


@contextlib.contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction on an autocommit connection (``isolation_level=None``, where ``with db:`` commits
    nothing): BEGIN IMMEDIATE, COMMIT at the end, ROLLBACK on any exception."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if db.in_transaction:  # SQLite may have rolled back already (disk full, I/O error)
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
