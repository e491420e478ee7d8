"""deploy/raspberrypi, read in-process: the unit file's settings, the udev rules, the scripts' modes.

The unit through systemd-analyze and install.sh/uninstall.sh run by bash are in tests/hil/test_deploy.py.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "raspberrypi"
UNIT = DEPLOY / "fieldgate.service"
RULES = DEPLOY / "99-fieldgate-rs485.rules"
INSTALL = DEPLOY / "install.sh"
UNINSTALL = DEPLOY / "uninstall.sh"


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """systemd unit syntax: [Section], Key=value (keys may repeat), # and ; comments."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], defaultdict(list))
            continue
        assert current is not None, f"line {number}: key outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"line {number}: not Key=value: {raw!r}"
        current[key.strip()].append(value.strip())
    return sections


def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text())


def last(section: dict[str, list[str]], key: str) -> str:
    assert key in section, f"{key}= missing"
    return section[key][-1]


def test_unit_has_the_required_settings() -> None:
    sections = unit()
    service = sections["Service"]
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogSec": "30",
        "Restart": "on-failure",
        "User": "fieldgate",
        "Group": "fieldgate",
        "ProtectSystem": "strict",
        "StateDirectory": "fieldgate",
        "ReadWritePaths": "/var/lib/fieldgate /etc/fieldgate /opt/fieldgate/releases",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "PrivateTmp": "yes",
        "DevicePolicy": "closed",
        "ExecStart": "/opt/fieldgate/releases/current/bin/fieldgate run /etc/fieldgate/site.yaml",
        "ExecStartPre": "/opt/fieldgate/venv/bin/python -m gateway.fleet.boot --state-dir /var/lib/fieldgate "
                        "--root /opt/fieldgate/releases",
        "ExecReload": "/bin/kill -HUP $MAINPID",
    }
    for key, value in expected.items():
        assert last(service, key) == value, key
    # Nothing else writable: the state, the site file's folder (a roll-out replaces the file), the update
    # slots; the keys in the site folder stay read-only.
    assert service["ReadWritePaths"] == ["/var/lib/fieldgate /etc/fieldgate /opt/fieldgate/releases"]
    assert service["ReadOnlyPaths"] == ["-/etc/fieldgate/credentials -/etc/fieldgate/status-tls"]
    assert int(last(service, "TimeoutStopSec")) >= 30  # room to flush the journal
    assert int(last(service, "RestartSec")) > 0
    assert set(last(service, "SupplementaryGroups").split()) == {"dialout", "audio"}
    assert "@system-service" in service["SystemCallFilter"]
    assert set(last(service, "RestrictAddressFamilies").split()) == {
        "AF_UNIX",
        "AF_INET",
        "AF_INET6",
        "AF_NETLINK",
    }
    devices = {entry.split()[0] for entry in service["DeviceAllow"]}
    assert {"char-ttyUSB", "char-ttyAMA", "char-alsa"} <= devices
    credentials = {entry.split(":", 1)[0]: entry.split(":", 1)[1] for entry in service["LoadCredential"]}
    assert set(credentials) == {"tls-ca.pem", "tls-cert.pem", "tls-key.pem", "command-keys.pem"}
    assert all(path.startswith("/etc/fieldgate/credentials/") for path in credentials.values())
    assert last(sections["Install"], "WantedBy") == "multi-user.target"
    assert last(sections["Unit"], "StartLimitIntervalSec") == "0"


def test_unit_and_fleet_agree_on_the_writable_site_folder_and_the_update_slots() -> None:
    """A roll-out replaces the site file in its folder and an update writes the A/B root: both writable;
    the boot check and the daemon use the same A/B root and state directory as the site's defaults."""
    from gateway.config.site import GatewaySection
    from gateway.fleet.config import FleetSection

    service = unit()["Service"]
    binary, _run, site = last(service, "ExecStart").split()
    writable = [Path(p) for p in last(service, "ReadWritePaths").split()]
    root = FleetSection().ab_root
    assert Path(site).parent in writable and root in writable
    assert Path(binary) == root / "current" / "bin" / "fieldgate"
    pre = last(service, "ExecStartPre").split()
    assert pre[:3] == ["/opt/fieldgate/venv/bin/python", "-m", "gateway.fleet.boot"]
    assert not Path(pre[0]).is_relative_to(root)  # the stable side: never replaced by an update
    options = dict(zip(pre[3::2], pre[4::2], strict=True))
    assert options == {"--root": str(root), "--state-dir": str(GatewaySection(id="x").state_dir)}
    assert "/var/lib/fieldgate" in map(str, writable)


def test_unit_parser_rejects_garbage() -> None:
    with pytest.raises(AssertionError):
        parse_unit("Type=notify\n")
    with pytest.raises(AssertionError):
        parse_unit("[Service]\nnot a setting\n")

def test_udev_rules_are_well_formed() -> None:
    token = re.compile(r'^(?P<key>[A-Z_]+(?:\{[^}]+\})?)(?P<op>==|!=|\+=|=)"(?P<value>[^"]*)"$')
    labels, gotos, symlinks = set(), set(), []
    for raw in RULES.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        for part in (p.strip() for p in line.split(",")):
            match = token.match(part)
            assert match, f"malformed udev token {part!r} in {raw!r}"
            key, value = match["key"], match["value"]
            if key == "LABEL":
                labels.add(value)
            elif key == "GOTO":
                gotos.add(value)
            elif key == "SYMLINK":
                symlinks.append(value)
    assert gotos <= labels
    assert symlinks and all(link.startswith("fieldgate/rs485-") for link in symlinks)
    assert "fieldgate/rs485-$env{ID_SERIAL_SHORT}" in symlinks

def test_scripts_are_executable() -> None:
    for script in (INSTALL, UNINSTALL):
        assert os.access(script, os.X_OK), script


def test_every_test_daemon_runs_with_the_units_environment() -> None:
    """sim/gateway_process.py starts the daemon under test with the unit's Environment= (PYTHONOPTIMIZE=2: the
    whole HIL suite runs the daemon as the box's service does, without docstrings and asserts)."""
    from sim.gateway_process import unit_environment

    [line] = parse_unit(UNIT.read_text())["Service"]["Environment"]
    assert unit_environment(UNIT) == dict(word.split("=", 1) for word in line.split())
    assert unit_environment(UNIT)["PYTHONOPTIMIZE"] == "2"
    assert unit_environment(UNIT)["PYTHONNODEBUGRANGES"] == "1"


def test_the_services_byte_code_is_written_as_the_service_reads_it() -> None:
    """Level 2 without column tables (the unit's PYTHONOPTIMIZE=2 and PYTHONNODEBUGRANGES=1, issue 18): the
    package's postinst and install.sh compile it so; the technician's level 0 keeps its column tables."""
    postinst = (REPO / "deploy" / "debian" / "postinst").read_text()
    install = INSTALL.read_text()
    level_2 = [line for text in (postinst, install) for line in text.splitlines() if "compileall" in line
               and "-o 2" in line]
    assert len(level_2) == 2 and all("-X no_debug_ranges -m compileall" in line for line in level_2), level_2
    [level_0] = [line for line in postinst.splitlines() if "compileall" in line and "-o 0" in line]
    assert "no_debug_ranges" not in level_0 and "-o 2" not in level_0
