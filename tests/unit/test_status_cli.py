"""`fieldgate status` against a running status server, and `fieldgate status passwd`."""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.status import StatusConfig, auth
from gateway.status.cli import add_subcommands, base_url
from sim.support import free_port
from tests.unit.test_status_server import FakeGateway, Running


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fieldgate")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


def test_status_prints_the_summary(capsys: pytest.CaptureFixture[str]) -> None:
    server = Running(StatusConfig(listen=f"127.0.0.1:{free_port()}"), FakeGateway())
    try:
        assert run_cli(["status", "--url", f"http://127.0.0.1:{server.port}"]) == 0
        out = capsys.readouterr().out
        assert out.startswith("gateway gw-1 Test dam — up 12.5 s — healthy")
        assert "res.level" in out and "12.5" in out and "devices (1/1 online)" in out
        assert "county  mqtt  connected" in out
        assert run_cli(["status", "--url", f"http://127.0.0.1:{server.port}", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["gateway"]["id"] == "gw-1"
        server.view.snap["loops"] = [{"name": "bus b", "overdue": True}]
        assert run_cli(["status", "--url", f"http://127.0.0.1:{server.port}"]) == 2
        assert "OVERDUE: bus b" in capsys.readouterr().out
    finally:
        server.stop()


def test_status_without_a_daemon_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["status", "--url", f"http://127.0.0.1:{free_port()}", "--timeout", "2"]) == 1
    assert "no answer from" in capsys.readouterr().err


def test_url_from_a_site_config(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(f"gateway: {{id: gw, state_dir: {tmp_path}}}\n")
    assert base_url(None, str(site)) == "http://127.0.0.1:8080"  # no status section yet: the default
    assert base_url("http://box:9000/", str(site)) == "http://box:9000"


def test_passwd_sets_a_verifiable_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    users = tmp_path / "users"
    monkeypatch.setattr(sys, "stdin", io.StringIO("long enough pw\n"))
    assert run_cli(["status", "passwd", "tech", "--file", str(users), "--password-stdin"]) == 0
    assert auth.verify_password("long enough pw", auth.read_users(users)["tech"])
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert run_cli(["status", "passwd", "tech", "--file", str(users), "--password-stdin"]) == 1
    assert auth.verify_password("long enough pw", auth.read_users(users)["tech"])  # unchanged
