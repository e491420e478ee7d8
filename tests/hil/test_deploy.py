"""deploy/raspberrypi for real: the unit file through systemd-analyze, install.sh and uninstall.sh run by bash.

The scripts run into a tmp root (--root), and as dry runs against the live system with guard commands
first on PATH that record any call, so a dry run that executes is caught. The unit file's settings and
the udev rules are parsed in tests/unit/test_deploy.py.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_deploy import INSTALL, REPO, UNINSTALL, UNIT

pytestmark = pytest.mark.hil
MAX_EXPOSURE = 2.5


def verifiable_copy(tmp_path: Path) -> Path:
    # The venv does not exist on a build machine; verify checks the binary exists, so point
    # ExecStart at one that does and keep every other line as shipped.
    true = shutil.which("true")
    assert true is not None
    text = UNIT.read_text().replace("/opt/fieldgate/releases/current/bin/fieldgate", true, 1)
    text = text.replace("/opt/fieldgate/venv/bin/python", true, 1)
    copy = tmp_path / "fieldgate.service"
    copy.write_text(text)
    return copy


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    done = subprocess.run(
        ["systemd-analyze", "verify", str(verifiable_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0 and done.stderr.strip() == "", done.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_security_exposure_is_at_most_2_5(tmp_path: Path) -> None:
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(verifiable_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    match = re.search(r"Overall exposure level for fieldgate\.service: (\d+(?:\.\d+)?)", done.stdout)
    assert match, done.stdout + done.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE

# --- install.sh / uninstall.sh ---------------------------------------------------------


def run_script(script: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def planned_commands(output: str) -> list[str]:
    return [line[2:] for line in output.splitlines() if line.startswith("+ ")]


def tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.lstat().st_mode) for p in sorted(root.rglob("*"))}


def test_dry_run_into_a_root_changes_nothing_and_plans_the_layout(tmp_path: Path) -> None:
    done = run_script(INSTALL, "--root", str(tmp_path), "--dry-run")
    assert done.returncode == 0, done.stderr
    assert list(tmp_path.iterdir()) == []
    plan = planned_commands(done.stdout)
    assert f"install -d -m 0750 {tmp_path}/var/lib/fieldgate" in plan
    assert f"install -d -m 0700 {tmp_path}/etc/fieldgate/credentials" in plan
    assert any(c.endswith(f"{tmp_path}/etc/systemd/system/fieldgate.service") for c in plan)
    assert any(c.endswith(f"{tmp_path}/etc/udev/rules.d/99-fieldgate-rs485.rules") for c in plan)
    assert not any(c.startswith(("apt-get", "useradd", "systemctl")) for c in plan)


def test_install_into_a_root_then_uninstall_keeps_data_unless_purged(tmp_path: Path) -> None:
    for _ in range(2):  # a second run upgrades in place
        done = run_script(INSTALL, "--root", str(tmp_path))
        assert done.returncode == 0, done.stderr
    files = tree(tmp_path)
    assert files["etc/systemd/system/fieldgate.service"] == 0o644
    assert files["etc/udev/rules.d/99-fieldgate-rs485.rules"] == 0o644
    assert files["etc/fieldgate"] == 0o770  # a roll-out replaces site.yaml (the unit keeps the keys read-only)
    assert files["opt/fieldgate/releases"] == 0o755
    assert os.readlink(tmp_path / "opt/fieldgate/releases/current") == "../venv"
    assert files["etc/fieldgate/credentials"] == 0o700
    assert files["var/lib/fieldgate"] == 0o750
    assert files["etc/fieldgate/site.example.yaml"] == 0o640
    assert (tmp_path / "etc/systemd/system/fieldgate.service").read_text() == UNIT.read_text()

    site = tmp_path / "etc/fieldgate/site.yaml"
    site.write_text("gateway: {id: x}\n")
    journal = tmp_path / "var/lib/fieldgate/journal.db"
    journal.write_bytes(b"undelivered")
    done = run_script(UNINSTALL, "--root", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "etc/systemd/system/fieldgate.service").exists()
    assert not (tmp_path / "etc/udev/rules.d/99-fieldgate-rs485.rules").exists()
    assert not (tmp_path / "opt/fieldgate").exists()
    assert site.read_text() == "gateway: {id: x}\n" and journal.read_bytes() == b"undelivered"

    done = run_script(UNINSTALL, "--root", str(tmp_path), "--purge")
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "etc/fieldgate").exists() and not (tmp_path / "var/lib/fieldgate").exists()


GUARDED = ("apt-get", "useradd", "usermod", "userdel", "systemctl", "udevadm", "install", "ln", "rm", "pip")


@pytest.fixture
def guard_path(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """PATH with commands that record being called: a dry run must call none of them."""
    bin_dir, calls = tmp_path / "guard-bin", tmp_path / "calls"
    bin_dir.mkdir()
    calls.mkdir()
    for name in GUARDED:
        guard = bin_dir / name
        guard.write_text(f'#!/bin/sh\ntouch "{calls}/{name}"\nexit 97\n')
        guard.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}, calls


def test_live_dry_run_offline_plans_every_step_and_runs_none(
    tmp_path: Path, guard_path: tuple[dict[str, str], Path]
) -> None:
    env, calls = guard_path
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    (wheelhouse / "fieldgate-0.1.0-py3-none-any.whl").write_bytes(b"")
    done = run_script(INSTALL, "--dry-run", "--offline", str(wheelhouse), "--vision", env=env)
    assert done.returncode == 0, done.stderr
    assert list(calls.iterdir()) == []
    plan = planned_commands(done.stdout)
    assert any(c.startswith("usermod --append --groups dialout\\,audio fieldgate") for c in plan)
    assert "python3 -m venv /opt/fieldgate/venv" in plan or Path("/opt/fieldgate/venv/bin/python").exists()
    pip = [c for c in plan if c.startswith("/opt/fieldgate/venv/bin/pip install")]
    assert pip == [
        f"/opt/fieldgate/venv/bin/pip install --no-index --find-links {wheelhouse} --upgrade fieldgate\\[vision\\]"
    ]
    assert "systemctl enable fieldgate.service" in plan
    assert any(c.endswith("/etc/systemd/system/fieldgate.service") for c in plan)


def test_live_dry_run_online_uses_apt(guard_path: tuple[dict[str, str], Path]) -> None:
    env, calls = guard_path
    done = run_script(INSTALL, "--dry-run", env=env)
    assert done.returncode == 0, done.stderr
    assert list(calls.iterdir()) == []
    plan = planned_commands(done.stdout)
    apt = [c for c in plan if c.startswith("apt-get install")]
    assert len(apt) == 1 and "python3-systemd" in apt[0] and "python3-venv" in apt[0]
    assert any(c.startswith(f"/opt/fieldgate/venv/bin/pip install --upgrade {REPO}") for c in plan)
    # The status page's self-signed pair, unless this machine already has one (then it is kept).
    openssl = [c for c in plan if c.startswith("openssl req -x509")]
    if Path("/etc/fieldgate/status-tls/key.pem").exists():
        assert openssl == [] and "keeping the status page TLS pair" in done.stdout
    else:
        assert len(openssl) == 1 and "-keyout /etc/fieldgate/status-tls/key.pem" in openssl[0]
        assert "chmod 0640 /etc/fieldgate/status-tls/key.pem" in plan
        assert "chown root:fieldgate /etc/fieldgate/status-tls/key.pem" in plan


def test_live_uninstall_dry_run_purge(guard_path: tuple[dict[str, str], Path]) -> None:
    env, calls = guard_path
    done = run_script(UNINSTALL, "--dry-run", "--purge", env=env)
    assert done.returncode == 0, done.stderr
    assert list(calls.iterdir()) == []
    plan = planned_commands(done.stdout)
    assert "rm -rf /opt/fieldgate" in plan
    assert "rm -rf /etc/fieldgate /var/lib/fieldgate" in plan


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--offline", "/nonexistent/wheelhouse"], "is not a directory"),
        (["--offline", "EMPTY"], "holds no fieldgate-*.whl"),
        (["--root", "relative/dir"], "absolute path"),
        (["--root", "/nonexistent/root"], "does not exist"),
        (["--frobnicate"], "unknown option"),
        (["--offline"], "needs a wheelhouse"),
    ],
)
def test_install_refuses_bad_arguments_clearly(tmp_path: Path, args: list[str], message: str) -> None:
    args = [str(tmp_path) if a == "EMPTY" else a for a in args]
    done = run_script(INSTALL, "--dry-run", *args)
    assert done.returncode == 2
    assert message in done.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_scripts_are_shellcheck_clean() -> None:
    # -x: follow the `source` of common.sh, the helpers both scripts share.
    # The Debian package's build, maintainer and check scripts too.
    debian = REPO / "deploy" / "debian"
    package = [*sorted(debian.glob("*.sh")), debian / "postinst", debian / "prerm", debian / "postrm"]
    done = subprocess.run(["shellcheck", "-x", str(INSTALL), str(UNINSTALL), str(INSTALL.parent / "common.sh"),
                           *map(str, package)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout

def test_install_makes_a_self_signed_status_tls_pair_once_that_the_status_page_serves(tmp_path: Path) -> None:
    import http.client
    import ssl

    from cryptography import x509

    from gateway.status import StatusConfig
    from gateway.status.config import StatusTls
    from sim.support import free_port
    from tests.unit.test_status_server import FakeGateway, Running

    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/hostname").write_text("gauge-12\n")
    done = run_script(INSTALL, "--root", str(tmp_path))
    assert done.returncode == 0, done.stderr
    pair = tmp_path / "etc/fieldgate/status-tls"
    files = tree(tmp_path)
    assert (files["etc/fieldgate/status-tls"], files["etc/fieldgate/status-tls/cert.pem"],
            files["etc/fieldgate/status-tls/key.pem"]) == (0o750, 0o644, 0o640)
    cert = x509.load_pem_x509_certificate((pair / "cert.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {"gauge-12", "gauge-12.local", "localhost"}
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    before = (pair / "key.pem").read_bytes()
    assert run_script(INSTALL, "--root", str(tmp_path)).returncode == 0
    assert (pair / "key.pem").read_bytes() == before  # an upgrade keeps the pair (and the trust in it)

    config = StatusConfig(listen=f"127.0.0.1:{free_port()}",
                          tls=StatusTls(cert_file=pair / "cert.pem", key_file=pair / "key.pem"))
    server = Running(config, FakeGateway())
    try:
        context = ssl.create_default_context(cafile=str(pair / "cert.pem"))
        connection = http.client.HTTPSConnection("127.0.0.1", config.port, context=context, timeout=10)
        connection.request("GET", "/healthz")
        assert connection.getresponse().status == 200
        connection.close()
    finally:
        server.stop()


def test_the_boot_check_and_the_daemon_start_at_the_units_optimisation_level(tmp_path: Path) -> None:
    """The unit's ExecStartPre and ExecStart run with PYTHONOPTIMIZE=2 (no docstrings): the boot check built its
    --help from ``__doc__`` and died with AttributeError before it read ``(__doc__ or "")``."""
    from sim.gateway_process import unit_environment

    env = dict(os.environ, **unit_environment(UNIT), PYTHONPATH=str(REPO))
    for module in ("gateway.fleet.boot", "gateway.cli"):
        run = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, env=env,
                             cwd=tmp_path, timeout=60)
        assert run.returncode == 0, (module, run.stderr[-2000:])


def test_a_fleet_update_compiles_byte_code_as_the_running_service_reads_it(tmp_path: Path) -> None:
    """Under the unit's environment the service runs without column tables (PYTHONNODEBUGRANGES=1): a fleet
    update compiles the new release with ``-X no_debug_ranges``; a daemon run without it compiles without it."""
    from sim.gateway_process import unit_environment

    probe = ["-c", "from gateway.fleet.updates import service_byte_code_options as o; print(' '.join(o()))"]
    service = dict(os.environ, **unit_environment(UNIT), PYTHONPATH=str(REPO))
    plain = {k: v for k, v in service.items() if k not in ("PYTHONNODEBUGRANGES", "PYTHONOPTIMIZE")}
    for env, expected in ((service, "-X no_debug_ranges"), (plain, "")):
        run = subprocess.run([sys.executable, *probe], capture_output=True, text=True, env=env, cwd=tmp_path,
                             timeout=60)
        assert run.returncode == 0 and run.stdout.strip() == expected, run.stderr[-2000:]
