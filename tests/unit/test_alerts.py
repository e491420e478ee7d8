"""Alerts: CAP XML export, signatures, audit chain, reserved siren patterns, interlock policy."""

from __future__ import annotations

import datetime as dt
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from drivers.broadcast import g711
from gateway.alerts.audit import AuditLog, verify_chain
from gateway.alerts.config import BroadcastConfig, PatternConfig
from gateway.alerts.interlock import Decision, Interlock, check_site_plan
from gateway.alerts.model import CAP_NS, Alert, MsgType, Origin, Status
from gateway.alerts.signing import Keyring, OperatorSignature, public_key_text, sign
from gateway.rules.config import RulesConfig
from tests.clocks import SteppedClock

NOW = dt.datetime(2026, 5, 12, 2, 0, tzinfo=dt.UTC)


def alert(**kw: Any) -> Alert:
    base: dict[str, Any] = {"identifier": "a-1", "sender": "reservoir-01", "sent": NOW, "status": Status.ACTUAL,
                            "event": "洪水预警", "areas": ("dam",), "resources": ("evacuate",),
                            "expires": NOW + dt.timedelta(hours=1)}
    return Alert(**{**base, **kw})


def test_cap_xml_export() -> None:
    root = ET.fromstring(alert().to_cap_xml())
    ns = {"cap": CAP_NS}
    assert root.tag == f"{{{CAP_NS}}}alert"
    assert root.findtext("cap:sent", namespaces=ns) == "2026-05-12T02:00:00+00:00"  # CAP forbids 'Z'
    assert root.findtext("cap:status", namespaces=ns) == "Actual"
    assert root.findtext("cap:msgType", namespaces=ns) == "Alert"
    assert root.findtext("cap:info/cap:event", namespaces=ns) == "洪水预警"
    assert root.findtext("cap:info/cap:area/cap:areaDesc", namespaces=ns) == "dam"
    assert root.findtext("cap:info/cap:resource/cap:uri", namespaces=ns) == "clip:evacuate"
    # Order of the first alert children is fixed by the CAP 1.2 schema.
    assert [c.tag.split("}")[1] for c in root][:6] == ["identifier", "sender", "sent", "status", "msgType", "scope"]


def test_cancel_needs_reference_and_alert_needs_area() -> None:
    with pytest.raises(ValidationError):
        alert(msg_type=MsgType.CANCEL)
    with pytest.raises(ValidationError):
        alert(areas=())
    with pytest.raises(ValidationError):
        alert(identifier="has space")
    with pytest.raises(ValidationError):
        alert(sent=NOW.replace(tzinfo=None))


def test_two_person_rule() -> None:
    keys = {n: Ed25519PrivateKey.generate() for n in ("zhang", "li", "wang")}
    ring = Keyring({n: public_key_text(k) for n, k in keys.items()})
    a = alert()
    t = NOW.timestamp()
    s1, s2 = sign(a, "zhang", keys["zhang"], t), sign(a, "li", keys["li"], t + 30)
    assert ring.require(a, [s1, s2], 2, 600, t + 60) == ["zhang", "li"]
    good, problems = ring.verified_signers(a, [s1, s2], 600, t + 700)  # window passed
    assert good == [] and len(problems) == 2
    tampered = alert(areas=("dam", "village"))
    assert ring.verified_signers(tampered, [s1, s2], 600, t)[0] == []
    impostor = s2.model_copy(update={"operator": "wang"})  # li's signature claimed by wang
    assert ring.verified_signers(a, [s1, impostor], 600, t)[0] == ["zhang"]


def test_same_key_under_two_names_counts_once() -> None:
    key = Ed25519PrivateKey.generate()
    ring = Keyring({"a": public_key_text(key), "b": public_key_text(key)})
    x = alert()
    good, _ = ring.verified_signers(x, [sign(x, "a", key, NOW.timestamp()), sign(x, "b", key, NOW.timestamp())],
                                    600, NOW.timestamp())
    assert good == ["a"]


def test_audit_chain_detects_tampering_and_survives_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(path)
    for i in range(5):
        log.append("decision", {"i": i})
    log.close()
    assert verify_chain(path).records == 5
    with path.open("ab") as handle:
        handle.write(b'{"seq": 6, "trunc')  # power cut mid-write
    log = AuditLog(path)
    log.append("decision", {"i": 6})
    log.close()
    check = verify_chain(path)
    assert check.ok and check.records == 7  # torn line cut, the recovery itself recorded
    lines = path.read_bytes().splitlines()
    record = json.loads(lines[2])
    record["data"]["i"] = 99
    lines[2] = json.dumps(record).encode()
    path.write_bytes(b"\n".join(lines) + b"\n")
    broken = verify_chain(path)
    assert not broken.ok and "line 3" in (broken.error or "")


def test_audit_rotation_keeps_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.log"
    log = AuditLog(path, max_bytes=600, keep=3)
    for i in range(40):
        log.append("output", {"i": i, "pad": "x" * 50})
    log.close()
    assert len(list(tmp_path.glob("audit.log.*"))) <= 3  # bounded
    assert verify_chain(path).ok


@pytest.mark.parametrize("steps, repeat", [
    ([[36, 24]], 3),  # civil-defence pre-warning
    ([[6, 6]], 15),  # air raid
    ([[180, 0]], 1),  # all-clear: 3 min continuous
    ([[60, 0], [60, 5]], 1),  # 2 min continuous built from two steps
    ([[34, 26]], 2),  # close enough to be mistaken for the pre-warning
    # Split into steps with zero (or inaudible) gaps, as the relay plays them (failed before: accepted).
    ([[18, 0], [18, 24]], 3),  # the pre-warning in two halves
    ([[3, 0], [3, 6]], 15),  # the air raid in two halves
    ([[45, 0], [45, 0.5], [45, 0], [45, 0]], 1),  # 180.5 s heard as one tone: the all-clear
    ([[24, 18], [18, 0]], 2),  # 18 s + the next repeat's 24 s: 42 on / 18 off
    ([[2, 0.5]], 60),  # 150 s of tone with half-second breaths
])
def test_reserved_civil_defence_patterns_refused(steps: list[list[float]], repeat: int) -> None:
    with pytest.raises(ValidationError, match="reserved"):
        PatternConfig.model_validate({"steps": steps, "repeat": repeat})


def test_ordinary_pattern_accepted() -> None:
    assert PatternConfig.model_validate({"steps": [[2, 1], [2, 3]], "repeat": 20}).repeat == 20


OPERATORS = {name: Ed25519PrivateKey.generate() for name in ("zhang", "li")}


def two_signed(a: Alert, t: float) -> list[OperatorSignature]:
    """Both operators' signatures over ``a``, made at ``t`` (every origin but the rules needs them)."""
    return [sign(a, name, key, t) for name, key in OPERATORS.items()]


def decide(lock: Interlock, a: Alert, t: float, origin: Origin = "remote") -> Decision:
    return lock.decide(a, origin, t, two_signed(a, t))


def broadcast_config(**extra: Any) -> BroadcastConfig:
    board = {"host": "127.0.0.1", "port": 1502}
    data: dict[str, Any] = {
        "outputs": {"siren": {"type": "modbus_relay_siren", "board": board, "coil": 0},
                    "pa": {"type": "alsa_audio"}},
        "zones": {"dam": {"outputs": ["siren", "pa"]}},
        "clips": {c: {"file": f"/clips/{c}.wav"} for c in ("evacuate", "ex", "test", "clear")},
        "patterns": {"flood": {"steps": [[2, 1]], "repeat": 10}, "drill": {"steps": [[1, 2]], "repeat": 5}},
        "status_patterns": {"actual": "flood", "exercise": "drill"},
        "announce": {"exercise": "ex", "test": "test"},
        "all_clear_clip": "clear",
        "automatic": [{"rule": "hi", "zones": ["dam"], "event": "flood", "clips": ["evacuate"]}],
        "rate_limit": {"min_interval": 600, "max_per_hour": 2},
        "operators": {name: public_key_text(key) for name, key in OPERATORS.items()},
    }
    data.update(extra)
    return BroadcastConfig.model_validate(data)


def test_config_reference_checks() -> None:
    with pytest.raises(ValidationError, match="unknown output"):
        broadcast_config(zones={"dam": {"outputs": ["nope"]}})
    with pytest.raises(ValidationError, match="must differ"):
        broadcast_config(status_patterns={"actual": "flood", "exercise": "flood"})
    with pytest.raises(ValidationError, match="unknown clip"):
        broadcast_config(all_clear_clip="missing")


def test_site_plan_refuses_fault_rule() -> None:
    cfg = broadcast_config()
    rules = RulesConfig.model_validate([{"type": "comm_fail", "id": "hi", "point": "lvl"}])
    with pytest.raises(ValueError, match="fault"):
        check_site_plan(rules, cfg)
    with pytest.raises(ValueError, match="unknown rule"):
        check_site_plan(RulesConfig(), cfg)


def test_interlock_rate_limit_and_replay() -> None:
    clock = SteppedClock(NOW.timestamp())  # the limits age on both clocks: real time passes on both
    lock = Interlock(broadcast_config(), monotonic=clock.monotonic)
    first = decide(lock, alert(identifier="r-1"), clock.wall())
    assert first.accepted and first.activations["siren"].cadence is not None
    assert first.activations["pa"].clips == (Path("/clips/evacuate.wav"),)
    clock.advance(10)
    assert "rate limit" in decide(lock, alert(identifier="r-2"), clock.wall()).reason
    clock.advance(690)
    assert "replay" in decide(lock, alert(identifier="r-1"), clock.wall()).reason
    assert decide(lock, alert(identifier="r-3"), clock.wall()).accepted
    clock.advance(700)
    assert "hour" in decide(lock, alert(identifier="r-4"), clock.wall()).reason


def test_interlock_refuses_draft_expired_and_unknown_zone() -> None:
    lock = Interlock(broadcast_config())
    t = NOW.timestamp()
    assert "never broadcast" in decide(lock, alert(status=Status.DRAFT), t).reason
    assert "expired" in decide(lock, alert(), t + 7200).reason
    assert "unknown zone" in decide(lock, alert(areas=("moon",)), t).reason


def test_exercise_announced_and_uses_exercise_pattern() -> None:
    window = {"start": (NOW - dt.timedelta(minutes=5)).isoformat(), "end": (NOW + dt.timedelta(hours=1)).isoformat()}
    lock = Interlock(broadcast_config(exercise_windows=[window]))
    decision = decide(lock, alert(status=Status.EXERCISE), NOW.timestamp())
    assert decision.accepted
    assert decision.activations["pa"].clips[0] == Path("/clips/ex.wav")
    cadence = decision.activations["siren"].cadence
    assert cadence is not None and cadence.name == "drill"


def test_ulaw_matches_reference_values() -> None:
    # Reference points of G.711 mu-law (ITU-T G.711 table 2a): 0 -> 0xFF, full scale -> 0x80/0x00.
    assert g711._TABLE[0] == 0xFF
    assert g711._TABLE[32767] == 0x80
    assert g711._TABLE[(-32768) & 0xFFFF] == 0x00
    for sample in (-30000, -1000, -100, -1, 1, 100, 1000, 30000):
        decoded = g711.ulaw_decode_one(g711._TABLE[sample & 0xFFFF])
        assert abs(decoded - sample) <= max(8, abs(sample) // 16)  # within one quantisation step
