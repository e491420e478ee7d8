"""Broadcast acceptance on the virtual rig: pymodbus TCP relay board (with a stuck-relay fault),
audio played by a real subprocess (sox) into a WAV file the test reads, RTP received on loopback.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import functools
import inspect
import itertools
import math
import shutil
import socket
import struct
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from drivers.broadcast.factory import build_outputs
from gateway.alerts.audit import AuditLog, verify_chain
from gateway.alerts.config import BroadcastConfig
from gateway.alerts.model import Alert, MsgType, Status
from gateway.alerts.signing import public_key_text, sign
from gateway.alerts.subsystem import BroadcastSubsystem
from gateway.rules.config import RulesConfig
from gateway.rules.engine import RuleEngine
from gateway.shared import Quality, Reading
from sim.relay_board import SimRelayBoard

pytestmark = [pytest.mark.hil, pytest.mark.timeout(60)]
needs_sox = pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed")
SIREN_COIL, AMP_COIL = 0, 1
MCAST_GROUP = "239.255.42.99"


def tone(path: Path, freq: float, seconds: float = 0.3, rate: int = 22050) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        frames = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * freq * i / rate)))
                          for i in range(int(rate * seconds)))
        wav.writeframes(frames)
    return path


def multicast_receiver(port: int) -> tuple[socket.socket, str]:
    """Join the group on 127.0.0.1; fall back to unicast loopback if the kernel refuses."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((MCAST_GROUP, port))
        mreq = socket.inet_aton(MCAST_GROUP) + socket.inet_aton("127.0.0.1")
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
        target = MCAST_GROUP
    except OSError:
        sock.close()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", port))
        target = "127.0.0.1"
    sock.settimeout(2.0)
    return sock, target


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Rig:
    def __init__(self, tmp: Path, board: SimRelayBoard, rtp_target: str, rtp_port: int) -> None:
        self.tmp, self.board = tmp, board
        self.sink = tmp / "sink.wav"
        self.clips = {
            "evacuate": tone(tmp / "evacuate.wav", 440),
            "exercise": tone(tmp / "exercise.wav", 660),
            "test": tone(tmp / "test.wav", 880),
            "all_clear": tone(tmp / "all_clear.wav", 330),
        }
        self.keys = {name: Ed25519PrivateKey.generate() for name in ("zhang", "li")}
        board_cfg = {"transport": "tcp", "host": board.host, "port": board.port, "timeout": 1.0}
        now = dt.datetime.now(dt.UTC)
        self.config = BroadcastConfig.model_validate({
            "sender": "reservoir-01",
            "outputs": {
                "siren": {"type": "modbus_relay_siren", "board": board_cfg, "coil": SIREN_COIL,
                          "max_activation": 30},
                "pa": {"type": "alsa_audio", "device": str(self.sink),
                       "player": ["sox", "-q", "{files}", "{device}"],
                       "work_dir": str(tmp / "tts"),
                       "amplifier": {"board": board_cfg, "coil": AMP_COIL, "warmup": 0}},
                "ipspk": {"type": "rtp_multicast", "group": rtp_target, "port": rtp_port,
                          "interface": "127.0.0.1", "work_dir": str(tmp / "tts")},
            },
            "zones": {"dam": {"outputs": ["siren", "pa", "ipspk"]}},
            "clips": {name: {"file": str(path)} for name, path in self.clips.items()},
            "patterns": {"flood": {"steps": [[2, 1]], "repeat": 10},
                         "drill": {"steps": [[1, 2]], "repeat": 5},
                         "chirp": {"steps": [[0.5, 0]], "repeat": 1}},
            "status_patterns": {"actual": "flood", "exercise": "drill", "test": "chirp"},
            "announce": {"exercise": "exercise", "test": "test"},
            "all_clear_clip": "all_clear",
            "rate_limit": {"min_interval": 0, "max_per_hour": 60},
            "operators": {name: public_key_text(key) for name, key in self.keys.items()},
            "exercise_windows": [{"start": (now - dt.timedelta(hours=1)).isoformat(),
                                  "end": (now + dt.timedelta(hours=1)).isoformat()}],
            "automatic": [{"rule": "level.danger", "zones": ["dam"], "event": "水库超警戒水位",
                           "clips": ["evacuate"]}],
            "audit_path": str(tmp / "audit.log"),
        })
        self.receiver: socket.socket | None = None
        self.evidence: list[dict[str, Any]] = []
        self.faults: list[dict[str, Any]] = []
        self.audit = AuditLog(self.config.audit_path)
        self.outputs = build_outputs(self.config.outputs)
        self.subsystem = BroadcastSubsystem(self.config, self.audit, self.outputs,
                                            on_evidence=self._evidence, on_fault_alarm=self._fault)

    async def _evidence(self, record: dict[str, Any]) -> None:
        self.evidence.append(record)

    async def _fault(self, record: dict[str, Any]) -> None:
        self.faults.append(record)

    async def coil(self, address: int) -> bool:
        # A second Modbus master reads the board, as a technician's tool would.
        from pymodbus.client import AsyncModbusTcpClient

        client = AsyncModbusTcpClient(self.board.host, port=self.board.port)
        await client.connect()
        try:
            response = await client.read_coils(address, count=1, device_id=1)
            return bool(response.bits[0])
        finally:
            client.close()

    async def wait_played(self) -> None:
        await self.outputs["pa"].play_to_end()  # type: ignore[attr-defined]


async def _with_rig(tmp_path: Path, body: Callable[[Rig], Awaitable[None]]) -> None:
    board = SimRelayBoard()
    await board.start()
    port = free_udp_port()
    receiver, target = multicast_receiver(port)
    the_rig = Rig(tmp_path, board, target, port)
    the_rig.receiver = receiver
    try:
        await body(the_rig)
    finally:
        await the_rig.subsystem.close()
        receiver.close()
        the_rig.audit.close()
        await board.stop()


def rig_test(body: Callable[[Rig], Awaitable[None]]) -> Callable[[Path], None]:
    """No asyncio pytest plugin here: each test runs its own event loop around a fresh rig."""

    @functools.wraps(body)
    def test(tmp_path: Path) -> None:
        asyncio.run(_with_rig(tmp_path, body))

    test.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter("tmp_path", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    )
    return test


def sink_freqs(path: Path) -> list[int]:
    """Dominant frequency of each 0.3 s segment of the sink WAV (zero-crossing estimate)."""
    with wave.open(str(path), "rb") as wav:
        rate = wav.getframerate()
        data = wav.readframes(wav.getnframes())
    samples = struct.unpack(f"<{len(data) // 2}h", data)
    seg = int(rate * 0.3)
    out = []
    for start in range(0, len(samples) - seg + 1, seg):
        chunk = samples[start:start + seg]
        crossings = sum(1 for a, b in itertools.pairwise(chunk) if (a < 0) != (b < 0))
        out.append(round(crossings / 2 / 0.3 / 10) * 10)
    return out


def manual_alert(status: Status, ident: str, **kw: Any) -> Alert:
    now = dt.datetime.now(dt.UTC)
    return Alert(identifier=ident, sender="operator-console", sent=now, status=status, event="洪水预警",
                 areas=("dam",), resources=("evacuate",), expires=now + dt.timedelta(hours=1), **kw)


RULES = RulesConfig.model_validate([
    {"type": "threshold", "id": "level.danger", "point": "dam.level", "above": 12.0, "hysteresis": 0.2,
     "severity": "severe"},
    {"type": "comm_fail", "id": "level.commfail", "point": "dam.level", "after": 1},
])


@needs_sox
@rig_test
async def test_threshold_crossing_switches_siren_with_readback_and_plays_clip(rig: Rig) -> None:
    engine = RuleEngine(RULES)
    assert engine.evaluate(Reading("dam.level", 11.5, Quality.GOOD, 1000.0)) == []
    transitions = engine.evaluate(Reading("dam.level", 12.3, Quality.GOOD, 1001.0))
    assert [t.rule_id for t in transitions] == ["level.danger"]
    results = await rig.subsystem.on_alarm(transitions[0])
    by = {(r.output, r.action): r for r in results}
    assert by[("siren", "activate")].ok, results
    assert by[("siren", "activate")].detail["readback"] is True
    assert await rig.coil(SIREN_COIL) is True
    assert (SIREN_COIL, True) in rig.board.writes
    await rig.wait_played()
    assert sink_freqs(rig.sink) == [440]  # the evacuation clip, no exercise/test announcement
    assert (AMP_COIL, True) in rig.board.writes and await rig.coil(AMP_COIL) is False  # amp off after
    assert rig.receiver is not None
    packets = [await asyncio.to_thread(rig.receiver.recv, 2048) for _ in range(3)]
    assert all(p[0] == 0x80 and p[1] & 0x7F == 0 and len(p) == 12 + 160 for p in packets)
    assert packets[0][1] & 0x80  # marker on the first packet of the talk-spurt
    kinds = [e["type"] for e in rig.evidence]
    assert kinds[0] == "broadcast_decision" and rig.evidence[0]["accepted"] is True
    assert verify_chain(Path(rig.config.audit_path)).ok


@rig_test
async def test_comm_fail_gauge_never_sounds_siren(rig: Rig) -> None:
    engine = RuleEngine(RULES)
    transitions = engine.evaluate(Reading("dam.level", None, Quality.COMM_FAIL, 1000.0))
    assert [(t.rule_id, t.alarm_class.value) for t in transitions] == [("level.commfail", "fault")]
    for transition in transitions:
        assert await rig.subsystem.on_alarm(transition) == []
    # Even a forged automatic alert riding on the fault alarm is refused by the interlock.
    forged = rig.subsystem._automatic_alert(rig.subsystem._plan["level.danger"], transitions[0])
    results = await rig.subsystem.handle(forged, origin="rule", alarm=transitions[0])
    assert results[0].fault == "refused"
    assert await rig.coil(SIREN_COIL) is False
    assert not [w for w in rig.board.writes if w == (SIREN_COIL, True)]


@needs_sox
@rig_test
async def test_test_alert_never_switches_outdoor_siren(rig: Rig) -> None:
    alert = manual_alert(Status.TEST, "t-1")
    signature = sign(alert, "zhang", rig.keys["zhang"], dt.datetime.now(dt.UTC).timestamp())
    results = await rig.subsystem.handle(alert, origin="manual", signatures=[signature])
    assert "siren" not in {r.output for r in results}
    decision = rig.evidence[0]
    assert decision["skipped"] == {"siren": "Test never drives an outdoor siren"}
    await rig.wait_played()
    assert sink_freqs(rig.sink) == [880, 440]  # "this is a test" announced first
    assert not [w for w in rig.board.writes if w == (SIREN_COIL, True)]


@rig_test
async def test_actual_manual_alert_needs_two_distinct_signatures(rig: Rig) -> None:
    alert = manual_alert(Status.ACTUAL, "a-1")
    now = dt.datetime.now(dt.UTC).timestamp()
    one = sign(alert, "zhang", rig.keys["zhang"], now)
    refused = await rig.subsystem.handle(alert, origin="manual", signatures=[one])
    assert refused[0].fault == "refused" and "2 distinct" in refused[0].detail["reason"]
    assert await rig.coil(SIREN_COIL) is False
    same_twice = await rig.subsystem.handle(alert, origin="manual", signatures=[one, one])
    assert same_twice[0].fault == "refused"
    # li signs a *different* alert: does not count for this one.
    other = manual_alert(Status.ACTUAL, "a-2")
    wrong = sign(other, "li", rig.keys["li"], now)
    assert (await rig.subsystem.handle(alert, origin="manual", signatures=[one, wrong]))[0].fault == "refused"
    two = [one, sign(alert, "li", rig.keys["li"], now)]
    accepted = await rig.subsystem.handle(alert, origin="manual", signatures=two)
    siren = next(r for r in accepted if r.output == "siren" and r.action == "activate")
    assert siren.ok and await rig.coil(SIREN_COIL) is True
    assert rig.evidence[-len(accepted) - 1]["signers"] == ["zhang", "li"]


@needs_sox
@rig_test
async def test_cancel_stops_everything_and_plays_all_clear(rig: Rig) -> None:
    alert = manual_alert(Status.ACTUAL, "a-9")
    now = dt.datetime.now(dt.UTC).timestamp()
    sigs = [sign(alert, name, key, now) for name, key in rig.keys.items()]
    await rig.subsystem.handle(alert, origin="manual", signatures=sigs)
    assert await rig.coil(SIREN_COIL) is True
    cancel = Alert(identifier="c-9", sender="operator-console", sent=dt.datetime.now(dt.UTC),
                   status=Status.ACTUAL, msg_type=MsgType.CANCEL, event="解除", references=(alert.cap_reference(),))
    one = sign(cancel, "zhang", rig.keys["zhang"], dt.datetime.now(dt.UTC).timestamp())
    results = await rig.subsystem.handle(cancel, origin="remote", signatures=[one])  # a Cancel needs one operator
    deactivated = {r.output for r in results if r.action == "deactivate" and r.ok}
    assert deactivated == {"siren", "pa", "ipspk"}
    assert await rig.coil(SIREN_COIL) is False
    await rig.wait_played()
    assert sink_freqs(rig.sink) == [330]  # the all-clear clip replaced the warning
    assert rig.outputs["siren"].status()["state"] == "idle"


@rig_test
async def test_stuck_relay_gives_fault_and_fault_alarm(rig: Rig) -> None:
    rig.board.stuck.add(SIREN_COIL)
    alert = manual_alert(Status.ACTUAL, "a-stuck")
    now = dt.datetime.now(dt.UTC).timestamp()
    sigs = [sign(alert, name, key, now) for name, key in rig.keys.items()]
    results = await rig.subsystem.handle(alert, origin="manual", signatures=sigs)
    siren = next(r for r in results if r.output == "siren" and r.action == "activate")
    assert not siren.ok and siren.fault == "readback_mismatch"
    assert rig.faults and rig.faults[0]["output"] == "siren" and rig.faults[0]["fault"] == "readback_mismatch"
    # The other outputs were not held up by the failing siren.
    assert any(r.output == "ipspk" and r.action == "activate" and r.ok for r in results)


@rig_test
async def test_siren_auto_off_even_when_event_loop_is_blocked(rig: Rig) -> None:
    import time

    from drivers.broadcast.config import SirenRelayConfig
    from drivers.broadcast.siren import SirenRelay
    from gateway.alerts.contract import Activation, Cadence

    cfg = SirenRelayConfig.model_validate({"type": "modbus_relay_siren", "coil": 5, "max_activation": 0.5,
                                           "board": {"host": rig.board.host, "port": rig.board.port}})
    siren = SirenRelay("s2", cfg)
    result = await siren.activate(Activation("x", "Actual", ("dam",), cadence=Cadence("long", ((5.0, 1.0),), 3)))
    assert result.ok and await rig.coil(5) is True
    time.sleep(1.5)  # noqa: ASYNC251 - deliberately block the event loop past the maximum activation
    assert await rig.coil(5) is False
    await siren.close()


@rig_test
async def test_exercise_outside_window_is_refused(rig: Rig) -> None:
    object.__setattr__(rig.config, "exercise_windows", [])
    alert = manual_alert(Status.EXERCISE, "e-1")
    sig = sign(alert, "zhang", rig.keys["zhang"], dt.datetime.now(dt.UTC).timestamp())
    results = await rig.subsystem.handle(alert, origin="manual", signatures=[sig])
    assert results[0].fault == "refused" and "exercise window" in results[0].detail["reason"]


def test_key_text_is_raw_32_bytes() -> None:
    assert len(base64.b64decode(public_key_text(Ed25519PrivateKey.generate()))) == 32



@rig_test
async def test_direct_board_readback_failure_mid_cadence_is_reported_once(rig: Rig) -> None:
    import time

    object.__setattr__(rig.config.patterns["flood"], "steps", [(0.3, 0.3)])
    object.__setattr__(rig.config.patterns["flood"], "repeat", 60)
    alert = manual_alert(Status.ACTUAL, "a-flaky")
    now = dt.datetime.now(dt.UTC).timestamp()
    results = await rig.subsystem.handle(alert, origin="manual",
                                         signatures=[sign(alert, n, k, now) for n, k in rig.keys.items()])
    assert next(r for r in results if r.output == "siren" and r.action == "activate").ok
    rig.board.stuck.add(SIREN_COIL)  # stuck ON: every OFF edge now fails its read-back
    deadline = time.monotonic() + 10
    while rig.outputs["siren"].status()["failed_edges"] < 3:
        assert time.monotonic() < deadline, rig.outputs["siren"].status()
        await asyncio.sleep(0.05)
    assert [f["type"] for f in rig.faults] == ["broadcast_fault"]  # one report, not one per edge
    assert rig.faults[0]["action"] == "cadence" and rig.faults[0]["fault"] == "readback_mismatch"
    rig.board.stuck.discard(SIREN_COIL)
    while not any(f["type"] == "broadcast_fault_cleared" for f in rig.faults):
        assert time.monotonic() < deadline + 5, rig.faults
        await asyncio.sleep(0.05)
    assert [f["type"] for f in rig.faults] == ["broadcast_fault", "broadcast_fault_cleared"]
    assert rig.faults[1]["alert_id"] == "a-flaky"
    # The same reports are in the audit chain, as evidence of the activation.
    assert [e["action"] for e in rig.evidence if e.get("action") == "cadence"] == ["cadence", "cadence"]
    await rig.subsystem.cancel("a-flaky")
    assert await rig.coil(SIREN_COIL) is False


async def _until_coil(rig: Rig, address: int, value: bool, within: float, what: str) -> None:
    import time

    deadline = time.monotonic() + within
    while await rig.coil(address) is not value:
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


def _short_siren(rig: Rig, coil: int, limit_s: float) -> Any:
    from drivers.broadcast.config import SirenRelayConfig
    from drivers.broadcast.siren import SirenRelay

    cfg = SirenRelayConfig.model_validate({"type": "modbus_relay_siren", "coil": coil, "max_activation": limit_s,
                                           "board": {"host": rig.board.host, "port": rig.board.port,
                                                     "timeout": 2.0}})
    return SirenRelay(f"s{coil}", cfg)


@rig_test
async def test_siren_whose_activate_timed_out_still_stops_at_its_limit(rig: Rig) -> None:
    """The subsystem gives up on an output after output_timeout; a slow board may switch ON after that.

    Before: the ON went out from the worker thread but the cadence and the backstop were never started
    (the coroutine that would start them was cancelled), so the siren sounded until someone cancelled.
    """
    from gateway.alerts.contract import Activation, Cadence

    siren = _short_siren(rig, 6, 1.0)
    rig.board.delay_s = 0.3
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):  # the caller gives up while the ON is in flight
            await siren.activate(Activation("x", "Actual", ("dam",), cadence=Cadence("long", ((5.0, 1.0),), 3)))
    rig.board.delay_s = 0.0
    await _until_coil(rig, 6, True, 10, "the ON in flight reaches the board")
    await _until_coil(rig, 6, False, 10, "OFF at max_activation although activate() was cancelled")
    assert siren.status()["state"] == "idle"
    await siren.close()


@rig_test
async def test_siren_off_that_fails_at_the_limit_is_retried_until_confirmed(rig: Rig) -> None:
    """Before: the cadence's final OFF and the backstop's OFF were each tried once; both lost, the siren stayed ON."""
    from gateway.alerts.contract import Activation, Cadence

    siren = _short_siren(rig, 7, 0.5)
    result = await siren.activate(Activation("x", "Actual", ("dam",), cadence=Cadence("long", ((5.0, 1.0),), 3)))
    assert result.ok
    rig.board.stuck.add(7)  # every OFF write at the limit is now denied by the read-back
    await asyncio.sleep(1.5)  # past the limit and the backstop
    assert await rig.coil(7) is True and siren.status()["state"] == "fault"
    rig.board.stuck.discard(7)
    await _until_coil(rig, 7, False, 10, "the OFF retried after the limit")
    await siren.close()


@rig_test
async def test_siren_off_that_fails_on_cancel_is_retried_until_confirmed(rig: Rig) -> None:
    """Before: deactivate() cancelled the backstop, tried OFF once, and a lost OFF left the siren ON for good."""
    from gateway.alerts.contract import Activation, Cadence

    siren = _short_siren(rig, 8, 60.0)
    result = await siren.activate(Activation("x", "Actual", ("dam",), cadence=Cadence("long", ((30.0, 1.0),), 3)))
    assert result.ok
    rig.board.stuck.add(8)
    off = await siren.deactivate()
    assert not off.ok and off.fault == "readback_mismatch"
    rig.board.stuck.discard(8)
    await _until_coil(rig, 8, False, 10, "the cancelled siren's OFF retried")
    await siren.close()


@rig_test
async def test_siren_deactivate_without_readback_reports_an_unreachable_board(rig: Rig) -> None:
    """Before: with readback: none, an OFF that raised was reported as a successful deactivate."""
    from drivers.broadcast.config import SirenRelayConfig
    from drivers.broadcast.siren import SirenRelay
    from gateway.alerts.contract import Activation, Cadence

    cfg = SirenRelayConfig.model_validate({"type": "modbus_relay_siren", "coil": 9, "max_activation": 60,
                                           "readback": "none",
                                           "board": {"host": rig.board.host, "port": rig.board.port,
                                                     "timeout": 0.5}})
    siren = SirenRelay("s9", cfg)
    assert (await siren.activate(Activation("x", "Actual", ("dam",),
                                            cadence=Cadence("long", ((30.0, 1.0),), 3)))).ok
    rig.board.delay_s = 1.5  # longer than the board timeout: the OFF gets no answer
    off = await siren.deactivate()
    assert not off.ok and off.fault == "board_unreachable", off
    rig.board.delay_s = 0.0
    await _until_coil(rig, 9, False, 10, "OFF after the board answers again")
    await siren.close()
