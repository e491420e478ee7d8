"""Software update rules that need no running gateway: the signed bundle and its version policy, hostile
bundles, the resumable transfer, the boot check, and what the site file and a roll-out may say about keys."""

from __future__ import annotations

import base64
import io
import json
import os
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from centre.fleet import Plan, Target
from centre.fleetcli import group_members
from centre.fleetupdate import _start_update, send_chunks
from gateway.alerts.signing import public_key_text
from gateway.commands.envelope import Envelope
from gateway.commands.target import CommandFailed
from gateway.config import ConfigError
from gateway.config.loader import load_site_text
from gateway.fleet import boot, bundle, staging, updates
from gateway.fleet.rollout import RolloutManager
from gateway.fleet.store import RolloutStore, sha256_hex

RELEASE, OTHER = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
KEYS = {"release": public_key_text(RELEASE)}
MAX = 10 * 1024 * 1024


def wheel(tmp: Path, version: str, body: bytes = b"PK fake wheel") -> Path:
    path = tmp / "wh" / f"fieldgate-{version}-py3-none-any.whl"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(body)
    return path


def make(tmp: Path, version: str = "0.2.0", key: Ed25519PrivateKey = RELEASE, **kw: object) -> Path:
    w = wheel(tmp, version)
    out = tmp / f"bundle-{version}.tar"
    out.write_bytes(bundle.build([w], bundle.manifest_for([w], version, **kw), key, "release"))  # type: ignore[arg-type]
    return out


def verify(tmp: Path, path: Path, running: str = "0.1.0", keys: dict[str, str] = KEYS) -> bundle.Manifest:
    return bundle.verify(path, keys, running, tmp / "ready", MAX)


def test_a_signed_newer_release_is_accepted_and_its_wheels_unpacked(tmp_path: Path) -> None:
    manifest = verify(tmp_path, make(tmp_path))
    assert manifest.version == "0.2.0"
    assert (tmp_path / "ready" / "wheels" / "fieldgate-0.2.0-py3-none-any.whl").read_bytes() == b"PK fake wheel"


@pytest.mark.parametrize(("running", "kw", "why"), [
    ("0.3.0", {}, "older than the running 0.3.0"),
    ("0.2.0", {}, "is the running version already"),
    ("0.1.0", {"min_from": "0.1.5"}, "updates from 0.1.5 or later"),
    ("0.1.0", {"python": "3.9"}, "built for Python 3.9"),
    ("0.1.0", {"platform_tag": "linux-riscv64"}, "built for linux-riscv64"),
])
def test_the_version_policy_refuses(tmp_path: Path, running: str, kw: dict[str, object], why: str) -> None:
    with pytest.raises(bundle.UpdateRefused, match=why):
        verify(tmp_path, make(tmp_path, **kw), running)


def test_a_downgrade_needs_the_signed_flag(tmp_path: Path) -> None:
    assert verify(tmp_path, make(tmp_path, "0.0.9", downgrade=True)).downgrade is True
    with pytest.raises(bundle.UpdateRefused, match="downgrade: true"):
        verify(tmp_path, make(tmp_path, "0.0.8"))


def test_a_development_version_may_be_replaced_by_any_signed_release(tmp_path: Path) -> None:
    assert verify(tmp_path, make(tmp_path, "0.0.1"), running="0.1.0.dev3+g123").version == "0.0.1"


def rewrite(path: Path, change: dict[str, bytes | None], extra: list[tarfile.TarInfo] | None = None) -> Path:
    """The bundle with members replaced (None: removed) or added, the signature left as it was."""
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]  # type: ignore[union-attr]
    out = path.with_name(f"bad-{len(list(path.parent.glob('bad-*')))}.tar")
    with tarfile.open(out, "w") as tar:
        for info, data in members:
            body = change.get(info.name, data)
            if body is None:
                continue
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        for info in extra or []:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return out


def test_tampering_and_hostile_members_are_refused(tmp_path: Path) -> None:
    good = make(tmp_path)
    with tarfile.open(good) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    link = tarfile.TarInfo("wheels/evil.whl")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    escape = tarfile.TarInfo("../escape.whl")
    escape.size = 1
    cases = {
        "does not verify": rewrite(good, {"manifest.json": json.dumps({**manifest, "downgrade": True}).encode()}),
        "sha256 differs": rewrite(good, {"wheels/fieldgate-0.2.0-py3-none-any.whl": b"PK other"}),
        "not a plain file": rewrite(good, {}, [link]),
        "unexpected member": rewrite(good, {}, [escape]),
        "no manifest": rewrite(good, {"manifest.sig": None}),
    }
    w = wheel(tmp_path, "0.2.1")
    foreign = cases["not one of fleet.update_keys"] = tmp_path / "other.tar"
    foreign.write_bytes(bundle.build([w], bundle.manifest_for([w], "0.2.1"), OTHER, "other"))
    missing = tarfile.TarInfo("wheels/extra-1.0-py3-none-any.whl")
    missing.size = 3
    cases["differ from the manifest"] = rewrite(good, {}, [missing])
    for why, path in cases.items():
        with pytest.raises(bundle.UpdateRefused, match=why):
            verify(tmp_path, path)
    (tmp_path / "junk.tar").write_bytes(os.urandom(3000))
    with pytest.raises(bundle.UpdateRefused, match="not a readable tar"):
        verify(tmp_path, tmp_path / "junk.tar")
    with pytest.raises(bundle.UpdateRefused, match="trusts no update key"):
        verify(tmp_path, good, keys={})


def test_a_key_from_another_role_does_not_sign_updates(tmp_path: Path) -> None:
    """The update key is its own: the same bytes signed by an operator's key under the release name fail."""
    with pytest.raises(bundle.UpdateRefused, match="does not verify"):
        verify(tmp_path, make(tmp_path, key=OTHER))


def chunk(store: RolloutStore, body: bytes, index: int, max_bytes: int = MAX) -> updates.Transfer:
    pieces = [body[i:i + updates.CHUNK_BYTES] for i in range(0, len(body), updates.CHUNK_BYTES)]
    return updates.receive_chunk(store, sha256_hex(body), index, len(pieces),
                                 base64.b64encode(pieces[index]).decode(), max_bytes)


def test_the_transfer_resumes_with_the_missing_indices_and_checks_the_digest(tmp_path: Path) -> None:
    store = RolloutStore(tmp_path)
    body = os.urandom(updates.CHUNK_BYTES * 4 + 100)
    assert chunk(store, body, 1).missing == [0, 2, 3, 4]
    assert chunk(store, body, 3).missing == [0, 2, 4]
    again = RolloutStore(tmp_path)  # the daemon restarted: the pieces are files
    assert chunk(again, body, 3).missing == [0, 2, 4]
    for index in (0, 2):
        chunk(again, body, index)
    done = chunk(again, body, 4)
    assert done.missing == [] and updates.assemble(again, done).read_bytes() == body
    assert updates.find_bundle(again, sha256_hex(body)) is not None


def test_bad_chunks_get_a_clear_refusal(tmp_path: Path) -> None:
    store = RolloutStore(tmp_path)
    sha = "ab" * 32
    with pytest.raises(CommandFailed, match="not base64"):
        updates.receive_chunk(store, sha, 0, 2, "***", MAX)
    with pytest.raises(CommandFailed, match=r"at most fleet\.max_update_bytes"):
        updates.receive_chunk(store, sha, 0, 10_000, "AAAA", MAX)
    with pytest.raises(CommandFailed, match="holds at most"):
        updates.receive_chunk(store, sha, 0, 2, base64.b64encode(b"x" * (updates.CHUNK_BYTES + 1)).decode(), MAX)
    wrong = updates.receive_chunk(store, sha, 0, 1, base64.b64encode(b"not it").decode(), MAX)
    with pytest.raises(CommandFailed, match="does not match its sha256"):
        updates.assemble(store, wrong)


def test_a_bundle_dropped_in_the_inbox_is_found_by_its_digest(tmp_path: Path) -> None:
    store = RolloutStore(tmp_path)
    store.inbox.mkdir(parents=True)
    body = make(tmp_path).read_bytes()
    (store.inbox / "from-the-technician.tar").write_bytes(body)
    assert updates.find_bundle(store, sha256_hex(body)) == store.inbox / "from-the-technician.tar"
    assert updates.find_bundle(store, "00" * 32) is None


def trial(state_dir: Path, deadline: float) -> None:
    (state_dir / "fleet").mkdir(parents=True, exist_ok=True)
    boot.state_path(state_dir).write_text(json.dumps({
        "phase": "trial", "kind": "update", "from_slot": "venv", "to_slot": "a", "to_version": "0.2.0",
        "sha256": "cd" * 32, "deadline": deadline, "starts": 0, "history": [], "field_of_a_newer_release": 7}))


def ab_root(tmp: Path) -> Path:
    root = tmp / "ab"
    for slot in ("venv", "a"):
        (root / slot).mkdir(parents=True)
    boot.flip_current(root, "a")
    return root


def test_the_boot_check_counts_starts_and_goes_back_on_the_second(tmp_path: Path) -> None:
    root = ab_root(tmp_path)
    assert boot.check(tmp_path, root) == "no update on trial"
    trial(tmp_path, time.time() + 100)
    assert "start 1" in boot.check(tmp_path, root) and boot.current_slot(root) == "a"
    assert "rolled back to venv" in boot.check(tmp_path, root)
    state = boot.read_state(tmp_path)
    assert state is not None and boot.current_slot(root) == "venv"
    assert state["phase"] == "rolled_back" and state["unreported"] is True and "2 times" in state["reason"]
    assert state["field_of_a_newer_release"] == 7 and state["history"][-1]["phase"] == "rolled_back"
    # The release it went back to journals the rollback once, at its start.
    config = load_site_text(f"gateway: {{id: gw1, state_dir: {tmp_path}}}\n")
    manager = RolloutManager(str(tmp_path / "site.yaml"), config)
    assert manager._pending_events[0]["step"] == "rolled_back" and manager._pending_events[0]["of"] == "update"
    assert RolloutManager(str(tmp_path / "site.yaml"), config)._pending_events == []


def test_the_boot_check_goes_back_past_the_deadline(tmp_path: Path) -> None:
    root = ab_root(tmp_path)
    trial(tmp_path, time.time() - 1)
    assert "not committed before the deadline" in boot.check(tmp_path, root)
    assert boot.current_slot(root) == "venv"


def test_the_boot_check_never_stops_the_start(tmp_path: Path) -> None:
    assert boot.main(["--state-dir", str(tmp_path / "nowhere"), "--root", str(tmp_path)]) == 0
    (tmp_path / "fleet").mkdir()
    boot.state_path(tmp_path).write_text("{torn")
    assert boot.check(tmp_path, tmp_path) == "no update on trial"


def test_update_keys_are_checked_and_a_roll_out_may_not_change_them(tmp_path: Path) -> None:
    base = f"gateway: {{id: gw1, state_dir: {tmp_path}}}\n"
    with pytest.raises(ConfigError, match="update key release"):
        load_site_text(base + "fleet: {update_keys: {release: not-a-key}}\n")
    running = load_site_text(base + f'fleet: {{update_keys: {{release: "{KEYS["release"]}"}}}}\n')
    staged = load_site_text(base + f'fleet: {{update_keys: {{mine: "{public_key_text(OTHER)}"}}}}\n')
    assert "fleet.update_keys" in (staging.refusal(running, staged, "00" * 32, []) or "")
    assert staging.refusal(running, running, "00" * 32, []) is None


def test_groups_name_gateways_once_each(tmp_path: Path) -> None:
    groups = tmp_path / "groups.yaml"
    groups.write_text("north: [res-01, res-02]\nsouth: [res-02, park-01]\n")
    assert group_members(str(groups), ["north", "south"]) == ["res-01", "res-02", "park-01"]
    with pytest.raises(ValueError, match="no group 'east'"):
        group_members(str(groups), ["east"])
    with pytest.raises(ValueError, match="needs --groups"):
        group_members(None, ["north"])


def test_build_update_signs_a_wheelhouse_the_gateway_accepts(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from cryptography.hazmat.primitives import serialization

    from gateway.cli import main

    wheel(tmp_path, "0.3.0")
    (tmp_path / "wh" / "dep-1.0-py3-none-any.whl").write_bytes(b"PK dep")
    key = tmp_path / "release.key"
    key.write_bytes(RELEASE.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    out = tmp_path / "fieldgate-0.3.0.tar"
    assert main(["fleet", "build-update", "--wheelhouse", str(tmp_path / "wh"), "--version", "0.3.0", "--key",
                 str(key), "--key-name", "release", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["sha256"] == sha256_hex(out.read_bytes()) and printed["files"] == 2
    assert verify(tmp_path, out).files.keys() == {"fieldgate-0.3.0-py3-none-any.whl", "dep-1.0-py3-none-any.whl"}
    assert main(["fleet", "build-update", "--wheelhouse", str(tmp_path / "wh"), "--version", "0.4.0", "--key",
                 str(key), "--key-name", "release", "--out", str(tmp_path / "no.tar")]) == 2
    assert "no fieldgate-0.4.0 wheel" in capsys.readouterr().err


class GatewayThatVerifiesSlowly:
    """In place of the MQTT link (centre.fleet.FleetLink): answers as a gateway does, each chunk at once with
    what is still missing, but the chunk that completes the bundle and update_apply only after verifying
    the bundle for ``verify_s`` (minutes for 200 MiB on a slow card)."""

    def __init__(self, total: int, verify_s: float) -> None:
        self.total, self.verify_s = total, verify_s
        self.have: set[int] = set()
        self.replies: dict[int, tuple[float, dict[str, Any]]] = {}  # command id -> (ready at, reply)

    def send(self, envelope: Envelope) -> None:
        verified = {"verified": True, "version": "0.2.0"}
        if envelope.cmd == "update_chunk":
            self.have.add(int(envelope.args["index"]))
            missing = sorted(set(range(self.total)) - self.have)
            result = {"missing": missing[:64], "missing_count": len(missing), **({} if missing else verified)}
            delay = 0.0 if missing else self.verify_s
        else:
            result, delay = verified, self.verify_s
        self.replies[envelope.id] = (time.monotonic() + delay, {"status": "ok", "result": result})

    def wait_reply(self, gateway: str, command_id: int, timeout: float) -> dict[str, Any] | None:
        ready_at, reply = self.replies.pop(command_id)
        wait = ready_at - time.monotonic()
        time.sleep(max(0.0, min(wait, timeout)))
        return reply if wait <= timeout else None


def test_the_centre_waits_for_the_bundle_to_verify_not_the_chunk_reply_timeout() -> None:
    """Before: every reply had the 30 s chunk timeout (here 0.05 s against 0.3 s of verifying), so a big
    bundle on a slow card came back "update_chunk: no reply" although the gateway verified it."""
    body = os.urandom(2 * updates.CHUNK_BYTES + 100)
    plan = Plan(RELEASE, "ops", reply_timeout=0.05)
    target = Target("gw1", body)
    link = GatewayThatVerifiesSlowly(total=3, verify_s=0.3)
    last = send_chunks(link, plan, target)  # type: ignore[arg-type]
    assert last.get("verified") is True, last
    assert target.chunks_sent == 3
    _start_update(link, plan, target)  # type: ignore[arg-type]  # chunk 0 (complete already), then apply
    assert (target.outcome, target.reason) == ("pending", "")  # applied: the roll-out records follow
    assert Plan(RELEASE, "ops").verify_reply_timeout == 300.0 + 30.0  # gateway/fleet/config.py's arithmetic


def test_the_centre_follows_an_update_apply_the_gateway_cut_off() -> None:
    """The gateway's update_timeout cut the command off but the update goes on there: the target stays
    pending for the roll-out records (before: "refused" while the gateway went on updating)."""
    body = os.urandom(100)
    link = GatewayThatVerifiesSlowly(total=1, verify_s=0.0)
    cut_off = {"status": "failed", "reason": "timeout", "detail": "no answer within 300 s; the outcome is unknown"}
    send = link.send

    def send_and_cut_off(envelope: Envelope) -> None:
        send(envelope)
        if envelope.cmd == "update_apply":
            link.replies[envelope.id] = (time.monotonic(), cut_off)

    link.send = send_and_cut_off  # type: ignore[method-assign]
    target = Target("gw1", body)
    _start_update(link, Plan(RELEASE, "ops"), target)  # type: ignore[arg-type]
    assert target.outcome == "pending" and "outcome is unknown" in target.reason
