"""Who may trigger actions on the status page: password hashes, the users file, sessions.

The users file holds one ``user:hash`` line per technician (``#`` comments allowed). A hash is
``scrypt$<n>$<r>$<p>$<salt>$<key>`` or ``pbkdf2_sha256$<iterations>$<salt>$<key>`` (salt and key
in unpadded URL-safe base64), both from :mod:`hashlib`, so a Pi needs no extra package. The file
is read again at every login, so ``fieldgate status passwd`` takes effect without a restart.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import secrets
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("fieldgate.status")

USER_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
MAX_USERS_FILE_BYTES = 64 * 1024
MAX_PASSWORD_BYTES = 1024

# scrypt n=2**14, r=8 needs 16 MiB and ~50 ms on a Pi 4: costly to guess, cheap enough to log in.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
PBKDF2_ITERATIONS = 600_000
# Bounds on parameters read from the file, so a corrupt line cannot ask for gigabytes of RAM.
_MAX_SCRYPT_R, _MAX_SCRYPT_P = 32, 16
_MAX_SCRYPT_MEMORY = 64 * 1024 * 1024
_MAX_PBKDF2_ITERATIONS = 10_000_000


class UsersFileError(ValueError):
    """The users file cannot be used (unreadable, too large, or a malformed line)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt_memory(n: int, r: int, p: int) -> int:
    # What OpenSSL checks against maxmem: the V array plus the B/XY buffers, with slack.
    return 128 * r * (n + p + 2) + 1024 * 1024


def hash_password(password: str, scheme: str = "scrypt") -> str:
    secret = password.encode("utf-8")
    if not secret or len(secret) > MAX_PASSWORD_BYTES:
        raise ValueError(f"a password must be 1..{MAX_PASSWORD_BYTES} bytes")
    salt = secrets.token_bytes(16)
    if scheme == "scrypt":
        key = hashlib.scrypt(secret, salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32,
                             maxmem=_scrypt_memory(SCRYPT_N, SCRYPT_R, SCRYPT_P))
        return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"
    if scheme == "pbkdf2":
        key = hashlib.pbkdf2_hmac("sha256", secret, salt, PBKDF2_ITERATIONS)
        return f"pbkdf2_sha256${PBKDF2_ITERATIONS}${_b64(salt)}${_b64(key)}"
    raise ValueError(f"unknown hash scheme {scheme!r} (scrypt or pbkdf2)")


def unmatchable_hash() -> str:
    """A well-formed scrypt entry with the same cost as a real one that no password matches (random key).

    Checked against when a user does not exist, so that a wrong name costs the same time as a wrong
    password. Made without running scrypt: hashing a dummy password at import cost every daemon start
    16 MiB of peak memory (and ~50 ms on a Pi 4) for a status page that may never see a login.
    """
    return (f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(secrets.token_bytes(16))}"
            f"${_b64(secrets.token_bytes(32))}")


def check_hash_format(encoded: str) -> None:
    """Raise ValueError when ``encoded`` is not a hash this module can verify (with sane costs)."""
    parts = encoded.split("$")
    try:
        if parts[0] == "scrypt" and len(parts) == 6:
            n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
            if n < 2 or n & (n - 1) or not 0 < r <= _MAX_SCRYPT_R or not 0 < p <= _MAX_SCRYPT_P:
                raise ValueError("scrypt parameters out of range")
            if _scrypt_memory(n, r, p) > _MAX_SCRYPT_MEMORY:
                raise ValueError("scrypt parameters need more than 64 MiB")
            salt, key = _unb64(parts[4]), _unb64(parts[5])
        elif parts[0] == "pbkdf2_sha256" and len(parts) == 4:
            if not 0 < int(parts[1]) <= _MAX_PBKDF2_ITERATIONS:
                raise ValueError("pbkdf2 iterations out of range")
            salt, key = _unb64(parts[2]), _unb64(parts[3])
        else:
            raise ValueError("expected scrypt$n$r$p$salt$key or pbkdf2_sha256$iterations$salt$key")
    except (binascii.Error, UnicodeError) as exc:
        raise ValueError(f"bad base64 in hash: {exc}") from None
    if len(salt) < 8 or len(key) < 16:
        raise ValueError("salt or key too short")


def verify_password(password: str, encoded: str) -> bool:
    """Constant-time check of ``password`` against one stored hash; False for any malformed hash."""
    secret = password.encode("utf-8", "surrogatepass")
    if not secret or len(secret) > MAX_PASSWORD_BYTES:
        return False
    try:
        check_hash_format(encoded)
    except ValueError:
        return False
    parts = encoded.split("$")
    if parts[0] == "scrypt":
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, key = _unb64(parts[4]), _unb64(parts[5])
        got = hashlib.scrypt(secret, salt=salt, n=n, r=r, p=p, dklen=len(key), maxmem=_scrypt_memory(n, r, p))
    else:
        salt, key = _unb64(parts[2]), _unb64(parts[3])
        got = hashlib.pbkdf2_hmac("sha256", secret, salt, int(parts[1]), dklen=len(key))
    return hmac.compare_digest(got, key)


def parse_users(text: str, source: str = "users file") -> dict[str, str]:
    """``user:hash`` lines → {user: hash}. Raises UsersFileError naming the bad line."""
    users: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, encoded = line.partition(":")
        if not sep or not USER_NAME.match(user):
            raise UsersFileError(f"{source}:{number}: expected user:hash with a user name of [A-Za-z0-9_.@-]")
        try:
            check_hash_format(encoded)
        except ValueError as exc:
            raise UsersFileError(f"{source}:{number}: user {user}: {exc}") from None
        if user in users:
            raise UsersFileError(f"{source}:{number}: user {user} appears twice")
        users[user] = encoded
    return users


def read_users(path: Path) -> dict[str, str]:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_USERS_FILE_BYTES + 1)
    except OSError as exc:
        raise UsersFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_USERS_FILE_BYTES:
        raise UsersFileError(f"{path}: larger than {MAX_USERS_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsersFileError(f"{path}: not UTF-8") from None
    return parse_users(text, str(path))


def set_password(path: Path, user: str, password: str, scheme: str = "scrypt") -> None:
    """Add or replace ``user`` in the users file, atomically, keeping other lines; file mode 0600."""
    if not USER_NAME.match(user):
        raise ValueError(f"user name {user!r} must match [A-Za-z0-9_.@-]{{1,64}}")
    lines: list[str] = []
    if path.exists():
        read_users(path)  # refuse to rewrite a file we cannot parse: it may hold someone's work
        lines = path.read_text("utf-8").splitlines()
    entry = f"{user}:{hash_password(password, scheme)}"
    replaced = False
    for index, line in enumerate(lines):
        if line.strip().partition(":")[0] == user and not line.strip().startswith("#"):
            lines[index] = entry
            replaced = True
    if not replaced:
        lines.append(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".users-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(slots=True)
class Session:
    user: str
    expires: float  # time.monotonic() deadline


class SessionStore:
    """Random session tokens → user, with a TTL and a cap (the oldest session goes first)."""

    def __init__(self, ttl_s: float, max_sessions: int = 64, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_sessions = max_sessions
        self._clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def create(self, user: str) -> str:
        self._expire()
        while len(self._sessions) >= self.max_sessions:
            self._sessions.popitem(last=False)
        token = secrets.token_urlsafe(32)
        self._sessions[token] = Session(user, self._clock() + self.ttl_s)
        return token

    def user(self, token: str | None) -> str | None:
        if not token:
            return None
        session = self._sessions.get(token)
        if session is None:
            return None
        if session.expires <= self._clock():
            del self._sessions[token]
            return None
        return session.user

    def drop(self, token: str | None) -> None:
        if token:
            self._sessions.pop(token, None)

    def _expire(self) -> None:
        now = self._clock()
        for token in [t for t, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[token]

    def __len__(self) -> int:
        return len(self._sessions)


class LoginThrottle:
    """After ``max_failures`` login attempts from one address within ``window_s`` that did not succeed,
    refuse it for the window.

    The table is capped: when full, the oldest address is forgotten (a flood of addresses cannot grow it).
    """

    def __init__(self, max_failures: int = 5, window_s: float = 60.0, max_clients: int = 256,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_clients = max_clients
        self._clock = clock
        self._failures: OrderedDict[str, list[float]] = OrderedDict()

    def _recent(self, client: str) -> list[float]:
        cutoff = self._clock() - self.window_s
        times = [t for t in self._failures.get(client, []) if t > cutoff]
        if times:
            self._failures[client] = times
        else:
            self._failures.pop(client, None)
        return times

    def blocked(self, client: str) -> bool:
        return len(self._recent(client)) >= self.max_failures

    def attempt(self, client: str) -> bool:
        """Count one login attempt *before* it is evaluated; False when ``client`` is over the limit.

        Counting first means concurrent attempts cannot all pass the check while the first ones are
        still hashing: at most ``max_failures`` are evaluated per window. A success clears the count.
        """
        if self.blocked(client):
            return False
        self.failed(client)
        return True

    def failed(self, client: str) -> None:
        times = self._recent(client)
        times.append(self._clock())
        self._failures[client] = times[-self.max_failures:]
        self._failures.move_to_end(client)
        while len(self._failures) > self.max_clients:
            self._failures.popitem(last=False)

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)
