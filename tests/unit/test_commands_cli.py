"""`fieldgate command keygen | sign | verify` end to end, on real files."""

from __future__ import annotations

import argparse
import json
import re
import stat
from pathlib import Path

import pytest

from gateway.commands.cli import add_subcommands


def fieldgate(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="fieldgate")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    code: int = args.handler(args)
    return code


@pytest.fixture
def keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, str]:
    assert fieldgate("command", "keygen", "--key-id", "ops-1", "--out", str(tmp_path)) == 0
    printed = capsys.readouterr().out
    public = re.search(r"^ +key: (\S+)", printed, re.MULTILINE)
    assert public is not None
    return tmp_path / "ops-1.key", public.group(1)


def site(tmp_path: Path, public: str) -> Path:
    (tmp_path / "ops-1.pub").write_text(public + "\n")
    path = tmp_path / "site.yaml"
    path.write_text(
        "gateway: {id: res-01}\n"
        "commands:\n"
        "  allow: [ping, write_point]\n"
        "  write_points: [siren.coil]\n"
        "  issuers:\n"
        "    ops-1: {key_file: ops-1.pub, number: 3, allow: [ping, write_point]}\n")
    return path


def test_keygen_makes_a_private_key_only_the_owner_reads_and_never_overwrites(
        tmp_path: Path, keys: tuple[Path, str]) -> None:
    private, public = keys
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert len(public) == 44
    assert fieldgate("command", "keygen", "--key-id", "ops-1", "--out", str(tmp_path)) == 1


def test_sign_then_verify_against_the_site_config(tmp_path: Path, keys: tuple[Path, str],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    private, public = keys
    config = site(tmp_path, public)
    out = tmp_path / "cmd.json"
    assert fieldgate("command", "sign", "--key", str(private), "--key-id", "ops-1", "--gateway", "res-01",
                     "--cmd", "write_point", "--args", '{"point":"siren.coil","value":true}', "--out", str(out)) == 0
    body = json.loads(out.read_bytes())
    assert body["cmd"] == "write_point" and body["exp"] - body["iat"] == 300 and len(body["sig"]) == 88
    assert fieldgate("command", "verify", "--config", str(config), str(out)) == 0
    assert "ok: command" in capsys.readouterr().out

    body["args"]["point"] = "pump.main"
    out.write_text(json.dumps(body))
    assert fieldgate("command", "verify", "--config", str(config), str(out)) == 1
    assert "bad_signature" in capsys.readouterr().err


def test_verify_reports_expiry_and_allowlist(tmp_path: Path, keys: tuple[Path, str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    private, public = keys
    config = site(tmp_path, public)
    out = tmp_path / "cmd.json"
    fieldgate("command", "sign", "--key", str(private), "--key-id", "ops-1", "--gateway", "res-01", "--cmd", "ping",
              "--issued-at", "1700000000", "--out", str(out))
    assert fieldgate("command", "verify", "--config", str(config), "--now", "1700000100", str(out)) == 0
    assert fieldgate("command", "verify", "--config", str(config), "--now", "1700009999", str(out)) == 1
    assert "expired" in capsys.readouterr().err
    fieldgate("command", "sign", "--key", str(private), "--key-id", "ops-1", "--gateway", "res-01", "--cmd", "status",
              "--out", str(out))
    assert fieldgate("command", "verify", "--config", str(config), str(out)) == 1
    assert "not_allowed" in capsys.readouterr().err


def test_compact_sign_and_verify(tmp_path: Path, keys: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    private, public = keys
    config = site(tmp_path, public)
    capsys.readouterr()
    assert fieldgate("command", "sign", "--key", str(private), "--key-id", "ops-1", "--gateway", "res-01",
                     "--cmd", "ping", "--compact", "--gateway-number", "1001", "--issuer-number", "3") == 0
    hex_text = capsys.readouterr().out.strip()
    assert len(bytes.fromhex(hex_text)) <= 77
    (tmp_path / "ping.hex").write_text(hex_text)
    assert fieldgate("command", "verify", "--config", str(config), "--gateway-number", "1001",
                     str(tmp_path / "ping.hex")) == 0
    assert fieldgate("command", "verify", "--config", str(config), "--gateway-number", "1002",
                     str(tmp_path / "ping.hex")) == 1
    assert "wrong_gateway" in capsys.readouterr().err
    assert fieldgate("command", "verify", "--public-key", public, "--key-id", "ops-1", "--gateway", "res-01",
                     "--issuer-number", "3", "--gateway-number", "1001", str(tmp_path / "ping.hex")) == 0


def test_sign_refuses_bad_input(tmp_path: Path, keys: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    private, _ = keys
    base = ["command", "sign", "--key", str(private), "--key-id", "ops-1", "--gateway", "res-01", "--cmd", "ping"]
    assert fieldgate(*base, "--args", "[1]") == 1
    assert fieldgate(*base, "--args", "{") == 1
    assert fieldgate(*base, "--compact") == 1
    assert fieldgate(*base, "--nonce-bytes", "40") == 1
    assert fieldgate(*base[:3], str(tmp_path / "missing.key"), *base[4:]) == 1
    assert "cannot sign" in capsys.readouterr().err
