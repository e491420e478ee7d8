"""Status-page users: password hashes, the users file, sessions, login throttling; and request fuzzing."""

from __future__ import annotations

import importlib.util
import stat
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.status import auth


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize("scheme", ["scrypt", "pbkdf2"])
def test_hash_roundtrip(scheme: str) -> None:
    encoded = auth.hash_password("s3cret pass", scheme)
    assert auth.verify_password("s3cret pass", encoded)
    assert not auth.verify_password("s3cret pasS", encoded)
    assert auth.hash_password("s3cret pass", scheme) != encoded  # salted


@pytest.mark.parametrize("encoded", [
    "", "plain", "scrypt$16384$8$1$AAAA", "scrypt$16383$8$1$c2FsdHNhbHQ$" + "A" * 43,
    "scrypt$1048576$32$1$c2FsdHNhbHQ$" + "A" * 43,  # 4 GiB of memory: refused, not attempted
    "pbkdf2_sha256$0$c2FsdHNhbHQ$" + "A" * 43, "pbkdf2_sha256$x$y$z", "md5$abc",
])
def test_malformed_or_costly_hashes_never_verify(encoded: str) -> None:
    assert not auth.verify_password("anything", encoded)


def test_users_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "users"
    good = auth.hash_password("password1")
    path.write_text(f"# technicians\nalice:{good}\n\nbob {good}\n")
    with pytest.raises(auth.UsersFileError, match=r"users:4: expected user:hash"):
        auth.read_users(path)
    path.write_text(f"alice:{good}\nalice:{good}\n")
    with pytest.raises(auth.UsersFileError, match="appears twice"):
        auth.read_users(path)
    path.write_text("alice:scrypt$1$2$3$4$5\n")
    with pytest.raises(auth.UsersFileError, match="users:1: user alice"):
        auth.read_users(path)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(auth.UsersFileError, match="not UTF-8"):
        auth.read_users(path)
    path.write_text("x" * (auth.MAX_USERS_FILE_BYTES + 1))
    with pytest.raises(auth.UsersFileError, match="larger than"):
        auth.read_users(path)
    with pytest.raises(auth.UsersFileError, match="cannot read"):
        auth.read_users(tmp_path / "missing")


def test_set_password_adds_replaces_and_keeps_others(tmp_path: Path) -> None:
    path = tmp_path / "etc" / "users"
    auth.set_password(path, "alice", "first-password")
    auth.set_password(path, "bob", "bobs-password")
    auth.set_password(path, "alice", "second-password")
    users = auth.read_users(path)
    assert sorted(users) == ["alice", "bob"]
    assert auth.verify_password("second-password", users["alice"])
    assert auth.verify_password("bobs-password", users["bob"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["users"]  # no temp file left behind
    with pytest.raises(ValueError, match="user name"):
        auth.set_password(path, "bad:name", "password")


def test_set_password_refuses_to_rewrite_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text("this is not a users file\n")
    with pytest.raises(auth.UsersFileError):
        auth.set_password(path, "alice", "password1")
    assert path.read_text() == "this is not a users file\n"


def test_sessions_expire_and_are_capped() -> None:
    clock = Clock()
    store = auth.SessionStore(ttl_s=60, max_sessions=3, clock=clock)
    tokens = [store.create(f"u{i}") for i in range(4)]
    assert len(store) == 3 and store.user(tokens[0]) is None  # the oldest made room
    assert store.user(tokens[3]) == "u3"
    assert store.user("guess") is None and store.user(None) is None
    clock.t += 61
    assert store.user(tokens[3]) is None


def test_throttle_blocks_after_failures_and_forgets_after_the_window() -> None:
    clock = Clock()
    throttle = auth.LoginThrottle(max_failures=3, window_s=60, max_clients=2, clock=clock)
    for _ in range(3):
        assert not throttle.blocked("10.0.0.1")
        throttle.failed("10.0.0.1")
    assert throttle.blocked("10.0.0.1") and not throttle.blocked("10.0.0.2")
    clock.t += 61
    assert not throttle.blocked("10.0.0.1")
    for client in ("a", "b", "c"):  # the table stays at max_clients
        throttle.failed(client)
    assert len(throttle._failures) == 2


# -- the request parser against arbitrary bytes ---------------------------------------------------


def _load_harness() -> ModuleType:
    """fuzz/targets/http_request.py (a plain file, not a package): the same driver the fuzzer runs."""
    path = Path(__file__).resolve().parents[2] / "fuzz" / "targets" / "http_request.py"
    spec = importlib.util.spec_from_file_location("fuzz_http_request", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HARNESS = _load_harness()


def test_the_harness_seeds_pass() -> None:
    for seed in HARNESS.seeds():
        HARNESS.fuzz_one(seed)


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.binary(max_size=600),
    st.lists(st.sampled_from([b"GET ", b"POST ", b"/ ", b"HTTP/1.1", b"\r\n", b"\n", b"Host: x", b":", b" ",
                              b"Content-Length: ", b"5", b"99", b"Transfer-Encoding: chunked", b"\x00", b"\t",
                              b"abcde", b"%00"]), max_size=40).map(b"".join),
))
def test_the_parser_only_ever_raises_http_errors(data: bytes) -> None:
    HARNESS.fuzz_one(data)  # feeds it whole and in 3-byte pieces; suppresses only HttpError


def test_unmatchable_hash_has_the_cost_of_a_real_one_and_matches_nothing() -> None:
    """The unknown-user stand-in is made without scrypt (issue 18: 16 MiB peak at every start) but is
    checked at the same parameters as a real entry, so a wrong name still costs a wrong password's time."""
    from gateway.status import auth

    dummy, real = auth.unmatchable_hash(), auth.hash_password("secret")
    auth.check_hash_format(dummy)
    assert dummy.split("$")[:4] == real.split("$")[:4]
    assert not auth.verify_password("secret", dummy)
    assert dummy != auth.unmatchable_hash()
