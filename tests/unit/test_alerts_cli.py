"""`fieldgate alert` and `fieldgate rules test` through their argparse entry points."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from gateway.alerts import cli as alert_cli
from gateway.rules import cli as rules_cli


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fieldgate")
    sub = parser.add_subparsers(dest="command", required=True)
    alert_cli.add_subcommands(sub)
    rules_cli.add_subcommands(sub)
    args = parser.parse_args(argv)
    return int(args.handler(args))


def test_two_person_flow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = {}
    for name in ("zhang", "li"):
        assert run(["alert", "keygen", "--operator", name, "--out", str(tmp_path)]) == 0
        keys[name] = capsys.readouterr().out.strip().splitlines()[-1].strip()
    site = tmp_path / "site.yaml"
    site.write_text("broadcast:\n  operators:\n" + "".join(f"    {k}\n" for k in keys.values()))
    req = str(tmp_path / "req.json")
    assert run(["alert", "draft", "--status", "Actual", "--event", "洪水", "--zone", "dam", "--out", req]) == 0
    # Signing with the wrong status typed is refused.
    assert run(["alert", "sign", req, "--operator", "zhang", "--key", str(tmp_path / "zhang.key"),
                "--confirm", "Exercise"]) == 2
    assert run(["alert", "sign", req, "--operator", "zhang", "--key", str(tmp_path / "zhang.key"),
                "--confirm", "Actual"]) == 0
    assert run(["alert", "verify", req, str(site)]) == 1  # one signature is not enough for Actual
    assert run(["alert", "sign", req, "--operator", "li", "--key", str(tmp_path / "li.key"),
                "--confirm", "Actual"]) == 0
    assert run(["alert", "verify", req, str(site)]) == 0
    capsys.readouterr()
    assert run(["alert", "cap", req]) == 0
    assert "<status>Actual</status>" in capsys.readouterr().out


def test_rules_test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("rules:\n  - {type: threshold, id: hi, point: lvl, above: 10}\n")
    csv = tmp_path / "s.csv"
    csv.write_text("time,point,value\n0,lvl,9\n60,lvl,11\n")
    assert run(["rules", "test", str(site), "--replay", str(csv)]) == 0
    assert "RAISED" in capsys.readouterr().out
    site.write_text("rules:\n  - {type: threshold, id: hi, point: lvl}\n")
    assert run(["rules", "test", str(site), "--replay", str(csv)]) == 2
    assert "invalid rules" in capsys.readouterr().err


def test_bad_request_file_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert run(["alert", "cap", str(bad)]) == 2
    assert "error" in capsys.readouterr().err
