"""Command plane: every rejection (forged, expired, replayed incl. across a restart, unsigned,
wrong gateway, unknown key, not allowed) is refused, never reaches the target, and is audited."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
from collections.abc import Coroutine
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.alerts.signing import public_key_text
from gateway.commands import (
    CommandFailed,
    CommandPlane,
    CommandsConfig,
    Envelope,
    IssuerConfig,
    ReplayCache,
    Reply,
    encode_compact,
    load_issuer_keys,
)
from gateway.commands.names import CommandName
from gateway.commands.replay import ReplayRefused
from gateway.rules.clock import Clock as TwoClocks
from gateway.shared import Value

T = TypeVar("T")
GW = "res-qingshui-01"
GW_NUMBER = 1001
T0 = 1_795_853_523.0  # the fake clock's "now"

OPS_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
VIEWER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
INTRUDER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(2, 34)))


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@dataclass
class Clock:
    """The wall clock the test sets; a monotonic clock that moves with it (these tests step no clock:
    tests/unit/test_replay_floor_clock_step.py does)."""

    now: float = T0

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now - T0 + 50_000.0


@dataclass
class FakeTarget:
    """Stands in for the daemon's Gateway: records what it was asked to do."""

    calls: list[tuple[str, Any]] = field(default_factory=list)
    points: dict[str, Value] = field(default_factory=lambda: {"dam.level": 23.4, "siren.east.coil": False})
    hang: bool = False
    explode: bool = False

    def snapshot(self) -> dict[str, Any]:
        self.calls.append(("snapshot", None))
        return {"gateway": {"id": GW}, "points": [{"point": p, "value": v} for p, v in self.points.items()]}

    async def read_point(self, point_id: str) -> dict[str, Any]:
        self.calls.append(("read_point", point_id))
        if point_id not in self.points:
            raise CommandFailed(f"unknown point '{point_id}'")
        return {"point": point_id, "value": self.points[point_id]}

    async def write_point(self, point_id: str, value: Value) -> dict[str, Any]:
        self.calls.append(("write_point", (point_id, value)))
        if self.hang:
            await asyncio.sleep(3600)
        if self.explode:
            raise RuntimeError("driver bug")
        self.points[point_id] = value
        return {"point": point_id, "written": value, "readback": value}

    async def trigger_broadcast(self, request: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("trigger_broadcast", request))
        return {"accepted": True}

    async def cancel_broadcast(self, alert_id: str) -> dict[str, Any]:
        self.calls.append(("cancel_broadcast", alert_id))
        return {"cancelled": alert_id}

    async def request_snapshot(self, camera: str) -> dict[str, Any]:
        self.calls.append(("request_snapshot", camera))
        return {"camera": camera, "snapshot": f"{camera}-1.jpg"}

    async def reload_config(self) -> dict[str, Any]:
        self.calls.append(("reload_config", None))
        return {"reloaded": True}

    verify_s: float = 0.0  # how long the bundle takes to verify (a big one on a slow card)

    async def update_chunk(self, sha256: str, index: int, total: int, data: str) -> dict[str, Any]:
        self.calls.append(("update_chunk", index))
        await asyncio.sleep(self.verify_s if index == total - 1 else 0)
        return {"sha256": sha256, "missing": [], "missing_count": 0, "verified": True, "version": "0.2.0"}

    async def update_apply(self, sha256: str, window_s: float, max_wait_s: float,
                           command_id: int | None) -> dict[str, Any]:
        self.calls.append(("update_apply", sha256))
        await asyncio.sleep(self.verify_s)
        return {"sha256": sha256, "version": "0.2.0"}


def commands_config(**overrides: Any) -> CommandsConfig:
    base: dict[str, Any] = {
        "issuers": {
            "county-ops-1": IssuerConfig(key=public_key_text(OPS_KEY), number=1,
                                         allow=["ping", "status", "read_point", "write_point", "trigger_broadcast",
                                                "cancel_broadcast", "request_snapshot", "reload_config"]),
            "viewer": IssuerConfig(key=public_key_text(VIEWER_KEY), number=2, allow=["ping", "status", "read_point"]),
        },
        "allow": ["ping", "status", "read_point", "write_point", "trigger_broadcast", "cancel_broadcast",
                  "request_snapshot"],
        "write_points": ["siren.east.coil"],
        "max_clock_skew": 60,
        "max_ttl": 3600,
    }
    base.update(overrides)
    return CommandsConfig(**base)


class Harness:
    """A command plane over a replay cache in ``tmp``, on ``clock`` (wall and monotonic) in boot ``boot``
    (None: this machine's); ``restart`` opens both again on the same file, as the daemon's next start."""

    def __init__(self, tmp: Path, *, config: CommandsConfig | None = None, clock: TwoClocks | None = None,
                 target: FakeTarget | None = None, boot: str | None = None, aged: bool = True) -> None:
        self.tmp = tmp
        self.config = config or commands_config()
        self.clock: TwoClocks = clock or Clock()
        self.boot = boot
        self.target = target or FakeTarget()
        self.audit: list[dict[str, Any]] = []
        self.killed: list[CommandPlane] = []
        self.cache_path = tmp / "state" / "commands" / "replay.sqlite"
        if aged and not self.cache_path.exists():
            # A cache that has existed for a day: its floor lies well before the commands of these tests.
            wall, monotonic = self.clock.wall, self.clock.monotonic
            ReplayCache(self.cache_path, max_entries=10, max_clock_skew=60, clock=lambda: wall() - 86400,
                        monotonic=lambda: monotonic() - 86400, boot=boot).close()
        self.plane = self.open()

    def open(self) -> CommandPlane:
        async def on_audit(record: dict[str, Any]) -> None:
            json.dumps(record)  # the journal stores JSON: every record must serialise
            self.audit.append(record)

        replay = ReplayCache(self.cache_path, max_entries=self.config.replay_cache_size,
                             max_clock_skew=self.config.max_clock_skew, clock=self.clock.wall,
                             monotonic=self.clock.monotonic, boot=self.boot)
        return CommandPlane(self.config, gateway_id=GW, keys=load_issuer_keys(self.config), target=self.target,
                            on_audit=on_audit, replay=replay, gateway_number=GW_NUMBER, clock=self.clock.wall)

    def restart(self, clock: TwoClocks | None = None, *, boot: str | None = None, clean: bool = True) -> None:
        """The daemon's next start; a reboot when a new clock (its monotonic clock starts again) and boot id are
        given. ``clean`` False: the process was killed (or the power cut) without closing the cache."""
        if clean:
            self.plane.close()
        else:
            self.killed.append(self.plane)  # left open and unused (closed at the end): a dead process closes nothing
        self.clock, self.boot = clock or self.clock, boot or self.boot
        self.plane = self.open()

    def close(self) -> None:
        for plane in [*self.killed, self.plane]:
            plane.close()

    def send(self, payload: bytes) -> Reply:
        async def go() -> Reply:
            return await self.plane.handle_json(payload, topic=f"fieldgate/v1/{GW}/cmd")
        return run(go())

    def send_compact(self, data: bytes) -> Reply:
        return run(self.plane.handle_compact(data))


_next_id = iter(range(1000, 10**6))


def envelope(cmd: CommandName = "ping", args: dict[str, Any] | None = None, *, key: Ed25519PrivateKey = OPS_KEY,
             kid: str = "county-ops-1", gw: str = GW, iat: float = T0, ttl: int = 300,
             command_id: int | None = None, nonce: bytes | None = None) -> Envelope:
    cid = command_id if command_id is not None else next(_next_id)
    return Envelope(id=cid, gw=gw, iat=int(iat), exp=int(iat) + ttl,
                    nonce=nonce if nonce is not None else cid.to_bytes(12, "big"), kid=kid, cmd=cmd,
                    args=args or {}).signed(key)


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def assert_rejected(h: Harness, reply: Reply, reason: str) -> None:
    assert reply.status.value == "rejected", reply
    assert reply.reason.value == reason, reply
    assert h.target.calls == [], "a rejected command must never reach the target"
    last = h.audit[-1]
    assert (last["phase"], last["status"], last["reason"]) == ("rejected", "rejected", reason)
    assert last["id"] == reply.id
    body = reply.to_json()
    assert body["status"] == "rejected" and body["reason"] == reason and body["detail"]


# ---------------------------------------------------------------------------- accepted


def test_good_command_executes_replies_and_is_audited_before_and_after(h: Harness) -> None:
    env = envelope("write_point", {"point": "siren.east.coil", "value": True})
    reply = h.send(env.to_bytes())
    assert reply.ok and reply.id == env.id and reply.cmd == "write_point" and reply.kid == "county-ops-1"
    assert reply.result == {"point": "siren.east.coil", "written": True, "readback": True}
    assert h.target.calls == [("write_point", ("siren.east.coil", True))]
    assert [(a["phase"], a["status"]) for a in h.audit] == [("accepted", "ok"), ("done", "ok")]
    assert h.audit[0]["args"] == {"point": "siren.east.coil", "value": True}
    assert h.audit[1]["result"]["written"] is True
    body = json.loads(reply.payload())
    assert body["id"] == env.id and body["status"] == "ok" and "reason" not in body


@pytest.mark.parametrize(("cmd", "args", "call"), [
    ("ping", {}, None),
    ("status", {}, ("snapshot", None)),
    ("read_point", {"point": "dam.level"}, ("read_point", "dam.level")),
    ("cancel_broadcast", {"alert_id": "county.a1"}, ("cancel_broadcast", "county.a1")),
    ("request_snapshot", {"camera": "tower-n"}, ("request_snapshot", "tower-n")),
])
def test_each_command_dispatches(h: Harness, cmd: CommandName, args: dict[str, Any],
                                 call: tuple[str, Any] | None) -> None:
    reply = h.send(envelope(cmd, args).to_bytes())
    assert reply.ok, reply
    assert h.target.calls == ([call] if call else [])
    if cmd == "ping":
        assert reply.result is not None and reply.result["pong"] is True


def test_trigger_broadcast_passes_the_signed_request_on(h: Harness) -> None:
    alert = {"identifier": "county.flood.7", "sender": "county", "sent": "2026-11-28T10:00:00+08:00",
             "status": "Exercise", "event": "Flood drill", "areas": ["village-east"]}
    request = {"alert": alert, "signatures": [{"operator": "li", "signed_at": 1795853500, "signature": "AA=="}]}
    reply = h.send(envelope("trigger_broadcast", request).to_bytes())
    assert reply.ok, reply
    assert h.target.calls == [("trigger_broadcast", request)]


def test_skew_within_bounds_is_accepted(h: Harness) -> None:
    assert h.send(envelope(iat=T0 + 50).to_bytes()).ok  # issuer clock 50 s ahead
    h.clock.now = T0 + 300 + 50
    assert h.send(envelope(iat=T0).to_bytes()).ok  # 50 s past expiry, within the 60 s skew


# ---------------------------------------------------------------------------- rejections


def test_forged_signature_other_key_is_rejected(h: Harness) -> None:
    forged = envelope("write_point", {"point": "siren.east.coil", "value": True}, key=INTRUDER_KEY)
    assert_rejected(h, h.send(forged.to_bytes()), "bad_signature")


def test_tampered_args_after_signing_are_rejected(h: Harness) -> None:
    env = envelope("write_point", {"point": "siren.east.coil", "value": False})
    body = json.loads(env.to_bytes())
    body["args"]["value"] = True
    assert_rejected(h, h.send(json.dumps(body).encode()), "bad_signature")


@pytest.mark.parametrize("field_name", ["id", "iat", "exp", "nonce", "kid", "cmd", "gw", "args"])
def test_every_signed_field_is_covered(h: Harness, field_name: str) -> None:
    body = json.loads(envelope("read_point", {"point": "dam.level"}).to_bytes())
    body[field_name] = {"id": 7, "iat": int(T0) - 1, "exp": int(T0) + 299, "nonce": "AAAA", "kid": "viewer",
                        "cmd": "status", "gw": "res-other-02", "args": {"point": "siren.east.coil"}}[field_name]
    assert_rejected(h, h.send(json.dumps(body).encode()), "bad_signature")


def test_truncated_signature_is_rejected(h: Harness) -> None:
    body = json.loads(envelope().to_bytes())
    body["sig"] = base64.b64encode(base64.b64decode(body["sig"])[:32]).decode()
    assert_rejected(h, h.send(json.dumps(body).encode()), "bad_signature")


def test_unsigned_is_rejected(h: Harness) -> None:
    body = json.loads(envelope("write_point", {"point": "siren.east.coil", "value": True}).to_bytes())
    del body["sig"]
    reply = h.send(json.dumps(body).encode())
    assert_rejected(h, reply, "unsigned")
    assert reply.id == body["id"]
    body["sig"] = None
    assert_rejected(h, h.send(json.dumps(body).encode()), "unsigned")


def test_expired_is_rejected(h: Harness) -> None:
    env = envelope(iat=T0 - 1000, ttl=300)  # expired 700 s ago, far beyond the 60 s skew
    assert_rejected(h, h.send(env.to_bytes()), "expired")


def test_not_yet_valid_beyond_skew_is_rejected(h: Harness) -> None:
    assert_rejected(h, h.send(envelope(iat=T0 + 120).to_bytes()), "not_yet_valid")


def test_validity_longer_than_max_ttl_is_rejected(h: Harness) -> None:
    assert_rejected(h, h.send(envelope(ttl=7200).to_bytes()), "ttl_too_long")


def test_wrong_gateway_is_rejected(h: Harness) -> None:
    env = envelope("write_point", {"point": "siren.east.coil", "value": True}, gw="res-other-02")
    assert_rejected(h, h.send(env.to_bytes()), "wrong_gateway")


def test_unknown_key_is_rejected(h: Harness) -> None:
    assert_rejected(h, h.send(envelope(key=INTRUDER_KEY, kid="intruder").to_bytes()), "unknown_key")


def test_key_id_of_another_issuer_does_not_lend_its_rights(h: Harness) -> None:
    # The viewer signs but claims to be county-ops-1: the signature is checked with ops' key.
    env = envelope("write_point", {"point": "siren.east.coil", "value": True}, key=VIEWER_KEY)
    assert_rejected(h, h.send(env.to_bytes()), "bad_signature")


def test_command_not_allowed_for_the_issuer_is_rejected(h: Harness) -> None:
    env = envelope("write_point", {"point": "siren.east.coil", "value": True}, key=VIEWER_KEY, kid="viewer")
    reply = h.send(env.to_bytes())
    assert_rejected(h, reply, "not_allowed")
    assert "viewer" in reply.detail


def test_command_not_allowed_on_the_site_is_rejected(h: Harness) -> None:
    reply = h.send(envelope("reload_config").to_bytes())  # ops may, the site does not
    assert_rejected(h, reply, "not_allowed")
    assert "site" in reply.detail


def test_write_to_a_point_outside_write_points_is_rejected(h: Harness) -> None:
    env = envelope("write_point", {"point": "dam.gate.setpoint", "value": 2.5})
    assert_rejected(h, h.send(env.to_bytes()), "not_allowed")


def test_default_site_allowlist_is_read_only() -> None:
    assert set(CommandsConfig().allow) == {"ping", "status", "read_point", "request_snapshot"}


@pytest.mark.parametrize(("cmd", "args"), [
    ("write_point", {"point": "siren.east.coil"}),
    ("write_point", {"point": "siren.east.coil", "value": "on"}),
    ("read_point", {"point": "dam.level", "extra": 1}),
    ("ping", {"x": 1}),
    ("trigger_broadcast", {"alert": {"identifier": "x"}}),
    ("cancel_broadcast", {"alert_id": "has space"}),
])
def test_bad_arguments_are_rejected(h: Harness, cmd: CommandName, args: dict[str, Any]) -> None:
    assert_rejected(h, h.send(envelope(cmd, args).to_bytes()), "bad_args")


@pytest.mark.parametrize("payload", [
    b"", b"\xff\xfe", b"[]", b"null", b"{", b'{"v":1}', b"x" * 20000,
    b'{"v":1,"id":1,"id":2,"gw":"g","iat":1,"exp":2,"nonce":"","kid":"k","cmd":"ping","args":{}}',
    b'{"v":1,"id":NaN,"gw":"g","iat":1,"exp":2,"nonce":"","kid":"k","cmd":"ping","args":{}}',
    b'{"v":1,"id":1,"gw":"g","iat":1,"exp":2,"nonce":"","kid":"k","cmd":"shell","args":{}}',
    b'{"v":1,"id":1,"gw":"g","iat":1,"exp":2,"nonce":"","kid":"k","cmd":"ping","args":{},"extra":1}',
    b'{"v":1,"id":true,"gw":"g","iat":1,"exp":2,"nonce":"","kid":"k","cmd":"ping","args":{}}',
    b'{"v":1,"id":1,"gw":"g","iat":1,"exp":2,"nonce":"AA","kid":"k","cmd":"ping","args":{}}',
    b'{"v":2,"id":1,"gw":"g","iat":1,"exp":2,"nonce":"","kid":"k","cmd":"ping","args":{}}',
    b'{"v":1,"id":1,"gw":"g","iat":5,"exp":2,"nonce":"","kid":"k","cmd":"ping","args":{}}',
    b"[" * 5000,
])
def test_malformed_input_is_rejected_not_raised(h: Harness, payload: bytes) -> None:
    reply = h.send(payload)
    assert_rejected(h, reply, "malformed")


def test_there_is_no_shell_command(h: Harness) -> None:
    body = json.loads(envelope().to_bytes())
    body["cmd"] = "shell"
    reply = h.send(json.dumps(body).encode())
    assert_rejected(h, reply, "malformed")
    assert "unknown command" in reply.detail


# ---------------------------------------------------------------------------- replay


def test_replayed_envelope_is_rejected(h: Harness) -> None:
    payload = envelope("write_point", {"point": "siren.east.coil", "value": True}).to_bytes()
    assert h.send(payload).ok
    h.target.calls.clear()
    assert_rejected(h, h.send(payload), "replayed")


def test_replay_is_rejected_across_a_restart_of_the_verifier(h: Harness) -> None:
    payload = envelope("write_point", {"point": "siren.east.coil", "value": True}).to_bytes()
    assert h.send(payload).ok
    h.restart()  # a new ReplayCache and CommandPlane on the same file, as after a reboot
    h.target.calls.clear()
    assert_rejected(h, h.send(payload), "replayed")


def test_reused_nonce_with_a_new_id_is_rejected(h: Harness) -> None:
    assert h.send(envelope(command_id=1, nonce=b"samenonce").to_bytes()).ok
    assert_rejected(h, h.send(envelope(command_id=2, nonce=b"samenonce").to_bytes()), "replayed")


def test_the_same_id_from_another_issuer_is_a_different_command(h: Harness) -> None:
    assert h.send(envelope(command_id=5).to_bytes()).ok
    assert h.send(envelope(command_id=5, key=VIEWER_KEY, kid="viewer").to_bytes()).ok


def test_rejected_commands_do_not_use_up_their_id(h: Harness) -> None:
    env = envelope("write_point", {"point": "siren.east.coil", "value": True}, command_id=77)
    body = json.loads(env.to_bytes())
    del body["sig"]
    assert h.send(json.dumps(body).encode()).reason.value == "unsigned"
    assert h.send(env.to_bytes()).ok


def test_replay_entries_expire_with_their_command(tmp_path: Path) -> None:
    clock = Clock()
    cache = ReplayCache(tmp_path / "r.sqlite", max_entries=4, max_clock_skew=60, clock=lambda: T0 - 3600,
                        monotonic=lambda: clock.monotonic() - 3600)  # an hour before, on the same clocks
    cache.close()
    cache = ReplayCache(tmp_path / "r.sqlite", max_entries=4, max_clock_skew=60, clock=clock,
                        monotonic=clock.monotonic)
    cache.claim("k", 1, b"n1", T0, T0 + 300)
    cache.claim("k", 2, b"n2", T0, T0 + 300)
    with pytest.raises(ReplayRefused) as full:
        cache.claim("k", 3, b"n3", T0, T0 + 300)
    assert full.value.reason.value == "replay_cache_full"
    with pytest.raises(ReplayRefused) as again:
        cache.claim("k", 1, b"", T0, T0 + 300)
    assert again.value.reason.value == "replayed"
    clock.now = T0 + 300 + 61  # past expiry + skew: the command could no longer pass, so it can go
    cache.claim("k", 3, b"n3", T0 + 361, T0 + 600)
    assert len(cache) == 2
    cache.close()


def test_a_new_cache_refuses_commands_issued_before_it(tmp_path: Path) -> None:
    clock = Clock()
    h = Harness(tmp_path, clock=clock)
    h.plane.close()
    h.cache_path.unlink()  # state wiped: whatever the old cache knew is gone
    h.plane = h.open()
    reply = h.send(envelope(iat=T0 - 10).to_bytes())
    assert_rejected(h, reply, "issued_before_cache")
    clock.now = T0 + 61
    assert h.send(envelope(iat=T0 + 61).to_bytes()).ok


def test_a_corrupt_cache_is_set_aside_and_old_commands_refused(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    payload = envelope().to_bytes()
    assert h.send(payload).ok
    h.plane.close()
    h.cache_path.write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        h.cache_path.with_name(h.cache_path.name + suffix).unlink(missing_ok=True)
    h.plane = h.open()
    assert list(h.cache_path.parent.glob("replay.sqlite.corrupt-*"))
    assert_rejected(h, h.send(payload), "issued_before_cache")  # the replay is still refused


def test_an_unwritable_cache_fails_closed(h: Harness) -> None:
    h.plane.replay.close()
    assert_rejected(h, h.send(envelope().to_bytes()), "replay_cache_unavailable")


def test_cache_file_is_sqlite_with_both_keys(h: Harness) -> None:
    assert h.send(envelope(command_id=99, nonce=b"abc").to_bytes()).ok
    rows = sqlite3.connect(h.cache_path).execute("SELECT kid, kind, value FROM seen ORDER BY kind").fetchall()
    assert rows == [("county-ops-1", "id", "99"), ("county-ops-1", "nonce", b"abc".hex())]


# ---------------------------------------------------------------------------- satellite


def test_compact_command_executes(h: Harness) -> None:
    env = envelope("read_point", {"point": "dam.level"}, nonce=b"")
    reply = h.send_compact(encode_compact(env, gateway_number=GW_NUMBER, issuer_number=1))
    assert reply.ok and reply.via == "satellite" and reply.result == {"point": "dam.level", "value": 23.4}


def test_one_signature_serves_both_forms_and_a_copy_on_the_other_link_is_a_replay(h: Harness) -> None:
    env = envelope("write_point", {"point": "siren.east.coil", "value": True}, nonce=b"")
    assert h.send(env.to_bytes()).ok
    h.target.calls.clear()
    reply = h.send_compact(encode_compact(env, gateway_number=GW_NUMBER, issuer_number=1))
    assert_rejected(h, reply, "replayed")


def test_compact_forged_is_rejected(h: Harness) -> None:
    env = envelope("write_point", {"point": "siren.east.coil", "value": True}, key=INTRUDER_KEY, nonce=b"")
    assert_rejected(h, h.send_compact(encode_compact(env, gateway_number=GW_NUMBER, issuer_number=1)),
                    "bad_signature")


def test_compact_for_another_gateway_number_is_rejected(h: Harness) -> None:
    env = envelope(nonce=b"")
    assert_rejected(h, h.send_compact(encode_compact(env, gateway_number=7, issuer_number=1)), "wrong_gateway")


def test_compact_unsigned_and_unknown_issuer_are_rejected(h: Harness) -> None:
    data = encode_compact(envelope(nonce=b""), gateway_number=GW_NUMBER, issuer_number=1)
    assert_rejected(h, h.send_compact(data[:-64]), "unsigned")
    assert_rejected(h, h.send_compact(encode_compact(envelope(nonce=b""), gateway_number=GW_NUMBER,
                                                     issuer_number=9)), "unknown_key")


def test_compact_garbage_is_rejected(h: Harness) -> None:
    for data in (b"", b"\x15", b"\x11\x01\x00\x00\x00\x00\x01\x00", bytes(range(256))):
        assert_rejected(h, h.send_compact(data), "malformed")


def test_compact_reply_is_small(h: Harness) -> None:
    from gateway.commands.reply import decode_compact_reply

    reply = h.send_compact(encode_compact(envelope(nonce=b""), gateway_number=GW_NUMBER, issuer_number=1))
    body = reply.compact_body(max_bytes=60)
    status, reason, result = decode_compact_reply(body)
    assert (status.value, reason.value) == ("ok", "") and result is not None and result["pong"] is True
    assert len(reply.compact_body(max_bytes=2)) == 2
    bad = h.send_compact(encode_compact(envelope(iat=T0 - 9999, nonce=b""), gateway_number=GW_NUMBER,
                                        issuer_number=1))
    assert decode_compact_reply(bad.compact_body())[:2] == (bad.status, bad.reason)


# ---------------------------------------------------------------------------- outcomes


def test_target_refusal_is_a_failed_reply(h: Harness) -> None:
    reply = h.send(envelope("read_point", {"point": "no.such.point"}).to_bytes())
    assert (reply.status.value, reply.reason.value) == ("failed", "target_error")
    assert "no.such.point" in reply.detail
    assert [(a["phase"], a["status"]) for a in h.audit] == [("accepted", "ok"), ("done", "failed")]


def test_target_exception_is_a_failed_reply(tmp_path: Path) -> None:
    h = Harness(tmp_path, target=FakeTarget(explode=True))
    reply = h.send(envelope("write_point", {"point": "siren.east.coil", "value": True}).to_bytes())
    assert (reply.status.value, reply.reason.value) == ("failed", "error")
    assert h.audit[-1]["reason"] == "error"


def test_a_hung_command_times_out_with_outcome_unknown(tmp_path: Path) -> None:
    h = Harness(tmp_path, config=commands_config(timeout=0.2), target=FakeTarget(hang=True))
    reply = h.send(envelope("write_point", {"point": "siren.east.coil", "value": True}).to_bytes())
    assert (reply.status.value, reply.reason.value) == ("failed", "timeout")
    assert "unknown" in reply.detail


def test_a_big_bundle_verifies_within_the_update_timeout_not_the_command_timeout(tmp_path: Path) -> None:
    """The chunk that completes a bundle, and update_apply, verify the whole bundle (minutes for 200 MiB on
    a slow card): they run under commands.update_timeout. Before it, the 30 s timeout cut them off (here
    0.2 s against 0.5 s of verifying) and the platform saw "timeout, outcome unknown"."""
    updates: list[CommandName] = ["update_chunk", "update_apply"]
    config = commands_config(
        timeout=0.2, issuers={"county-ops-1": IssuerConfig(key=public_key_text(OPS_KEY), number=1,
                                                           allow=["write_point", *updates])},
        allow=["write_point", *updates])
    h = Harness(tmp_path, config=config, target=FakeTarget(verify_s=0.5))
    sha = "ab" * 32
    last = h.send(envelope("update_chunk", {"sha256": sha, "index": 1, "total": 2, "data": "AAAA"}).to_bytes())
    assert last.ok and last.result and last.result["verified"], last
    applied = h.send(envelope("update_apply", {"sha256": sha}).to_bytes())
    assert applied.ok, applied
    h.target.hang = True  # every other command keeps the short timeout
    reply = h.send(envelope("write_point", {"point": "siren.east.coil", "value": True}).to_bytes())
    assert (reply.status.value, reply.reason.value) == ("failed", "timeout")
    short = Harness(tmp_path / "short", config=config.model_copy(update={"update_timeout": 0.3}),
                    target=FakeTarget(verify_s=5))
    reply = short.send(envelope("update_apply", {"sha256": sha}).to_bytes())
    assert (reply.status.value, reply.reason.value) == ("failed", "timeout")  # and the update limit holds


def test_no_action_without_an_audit_record(h: Harness) -> None:
    async def broken(_record: dict[str, Any]) -> None:
        raise OSError("journal disk full")

    h.plane._on_audit = broken
    reply = h.send(envelope("write_point", {"point": "siren.east.coil", "value": True}).to_bytes())
    assert (reply.status.value, reply.reason.value) == ("failed", "audit_failed")
    assert h.target.calls == []


def test_large_results_are_summarised(tmp_path: Path) -> None:
    target = FakeTarget()
    target.points.update({f"p{i}": float(i) for i in range(2000)})
    h = Harness(tmp_path, config=commands_config(max_result_bytes=1000), target=target)
    reply = h.send(envelope("status").to_bytes())
    assert reply.ok and reply.result is not None and reply.result["truncated"] is True
    assert "result" in h.audit[-1] and h.audit[-1]["result"]["truncated"] is True


def test_a_flood_of_junk_does_not_flood_the_audit(h: Harness) -> None:
    for _ in range(200):
        assert h.send(b"junk").reason.value == "malformed"
    assert 30 <= len(h.audit) < 200


def test_reply_carries_the_command_id_even_when_rejected(h: Harness) -> None:
    env = replace(envelope(iat=T0 - 9999), sig=b"\x00" * 64)
    reply = h.send(env.to_bytes())
    assert reply.id == env.id and json.loads(reply.payload())["id"] == env.id


def test_key_file_forms(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    pem = OPS_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    (tmp_path / "ops.pem").write_bytes(pem)
    (tmp_path / "ops.b64").write_text(public_key_text(OPS_KEY) + "\n")
    (tmp_path / "bad.b64").write_text("not a key")
    config = CommandsConfig(issuers={
        "a": IssuerConfig(key_file=Path("ops.pem"), allow=["ping"]),
        "b": IssuerConfig(key_file=tmp_path / "ops.b64", allow=["ping"]),
    })
    keys = load_issuer_keys(config, tmp_path)
    assert set(keys) == {"a", "b"}
    from gateway.commands import CommandKeyError

    for bad in (IssuerConfig(key_file=tmp_path / "bad.b64", allow=["ping"]),
                IssuerConfig(key_file=tmp_path / "missing", allow=["ping"])):
        with pytest.raises(CommandKeyError, match="issuer c"):
            load_issuer_keys(CommandsConfig(issuers={"c": bad}), tmp_path)


def test_config_errors_are_clear() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="exactly one of key"):
        IssuerConfig(allow=["ping"])
    with pytest.raises(ValidationError, match="32-byte"):
        IssuerConfig(key="AAAA", allow=["ping"])
    with pytest.raises(ValidationError):
        IssuerConfig.model_validate({"key": public_key_text(OPS_KEY), "allow": ["shell"]})
    with pytest.raises(ValidationError, match="same number"):
        CommandsConfig(issuers={"a": IssuerConfig(key=public_key_text(OPS_KEY), number=1, allow=["ping"]),
                                "b": IssuerConfig(key=public_key_text(VIEWER_KEY), number=1, allow=["ping"])})
    with pytest.raises(ValidationError):
        CommandsConfig.model_validate({"issuers": {"bad id!": {"key": public_key_text(OPS_KEY), "allow": ["ping"]}}})


def test_a_clock_that_jumped_ahead_and_back_has_not_emptied_the_cache(h: Harness) -> None:
    payload = envelope("write_point", {"point": "siren.east.coil", "value": True}).to_bytes()
    assert h.send(payload).ok
    h.clock.now = T0 + 10 * 365 * 86400  # a bad RTC for a while...
    assert h.send(envelope(iat=h.clock.now).to_bytes()).ok
    h.clock.now = T0 + 10  # ...then NTP puts it right, while the first command is still valid
    h.target.calls.clear()
    assert_rejected(h, h.send(payload), "replayed")
