"""A reload that fails for any reason keeps the running config and says why (issue #11 item 9).

The daemon-level test with a real process is tests/adversarial/test_reload_hostile_config.py;
these pin the pieces: every failure becomes reasons, never an exception out of the reload path.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway import daemon
from gateway.commands import CommandFailed
from gateway.config import load_site_text
from gateway.control import GatewayControl
from gateway.systemd import LivenessSupervisor

GOOD = "gateway: {id: gw, state_dir: /tmp/fieldgate-reload}\n"


def supervisor() -> LivenessSupervisor:
    return LivenessSupervisor.from_env({})  # no systemd here: notifications are no-ops


@pytest.mark.parametrize("failure", [RecursionError("maximum recursion depth exceeded"), MemoryError(),
                                     RuntimeError("a loader defect")])
def test_an_unexpected_failure_is_a_refusal_with_a_reason(failure: BaseException, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(path: str) -> None:
        raise failure

    monkeypatch.setattr(daemon, "load_site", broken)
    config, reasons = daemon.load_for_reload(str(tmp_path / "site.yaml"))
    assert config is None
    assert reasons == [f"{tmp_path / 'site.yaml'}: could not be loaded: {type(failure).__name__}: {failure}"]


def test_the_reload_command_says_why_it_was_refused(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(GOOD + "loop: &x [*x]\n")
    reloads = daemon.Reloads(str(site), supervisor())
    with pytest.raises(CommandFailed) as caught:
        asyncio.run(reloads.command())
    assert str(caught.value) == (f"reload refused, keeping the running configuration: {site}:2:11: alias *x is "
                                 "inside the value &x it names (a recursive alias never ends)")
    assert not reloads.accepted.is_set()


def test_an_accepted_reload_command_hands_the_new_config_to_the_daemon(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(GOOD)
    reloads = daemon.Reloads(str(site), supervisor())
    assert asyncio.run(reloads.command()) == {"reloading": True, "config": str(site)}
    assert reloads.accepted.is_set()
    taken = reloads.take()
    assert taken is not None and taken.gateway.id == "gw" and not reloads.accepted.is_set()


def test_without_the_daemon_the_command_says_nothing_reloads_it(tmp_path: Path) -> None:
    # Before, the command sent this process SIGHUP: under `make demo` (no handler) that ended it.
    from gateway.app import Gateway

    control = GatewayControl(Gateway(load_site_text(f"gateway: {{id: gw, state_dir: {tmp_path}}}\n")))
    with pytest.raises(CommandFailed, match="not started by `fieldgate run`"):
        asyncio.run(control.reload_config())
