"""The Debian package for real: `make deb` builds it, lintian finds nothing, and in a fresh Debian Bookworm
amd64 root (debootstrap, no network inside) it installs with dpkg -i from the base alone, the daemon runs
the demo site from it, version N+1 installed over N keeps the site file, the keys and the journal with its
backlog (delivered by N+1), remove keeps the site's data and purge deletes it.

Why a root and not this machine's own dpkg: installing creates a system user, /etc/fieldgate and
/var/lib/fieldgate on a machine that several engineers' test runs share (tests/hil/test_deploy.py looks at
/etc/fieldgate), and remove/purge/upgrade would race with them; a root of the same Debian release is the
same dpkg, maintainer scripts and base, thrown away afterwards. No systemd runs as PID 1 here, so the daemon
is started as the installed unit says (ExecStart=, User=, Environment=); `systemd-analyze verify` checks
the installed unit. The arm64 twin of this is `make arm64-check` (deploy/raspberrypi/README.md).

The tests build with gzip -1 (11 s for the ~370 MB tree); the release build uses xz -6 (6 min), otherwise the
same package.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from gateway.journal.batch import owed_seqs

pytestmark = [
    pytest.mark.hil, pytest.mark.slow, pytest.mark.timeout(1200),
    pytest.mark.skipif(os.geteuid() != 0, reason="dpkg in a debootstrap root needs root (CI runs as root)"),
    pytest.mark.skipif(any(shutil.which(t) is None for t in ("dpkg-deb", "debootstrap", "unshare")),
                       reason="needs dpkg-deb, debootstrap and unshare (.ci/run installs them)"),
]

REPO = Path(__file__).resolve().parents[2]
DEBIAN = REPO / "deploy" / "debian"
ARCH = "amd64"


@dataclass(frozen=True)
class Builds:
    old: Path
    new: Path


def build(out: Path, revision: int, arch: str = ARCH) -> Path:
    env = dict(os.environ, DEB_REVISION=str(revision), OUT=str(out), DEB_COMPRESS="gzip", DEB_COMPRESS_LEVEL="1")
    done = subprocess.run(["make", "--no-print-directory", "deb", f"ARCH={arch}", f"DEB_REVISION={revision}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (deb,) = out.glob(f"fieldgate_*-{revision}_{arch}.deb")
    return deb


def lintian_tags(deb: Path) -> list[str]:
    """Errors and warnings lintian finds (the ones it must not are overridden, with reasons, in
    deploy/debian/lintian-overrides)."""
    if shutil.which("lintian") is None:
        pytest.skip("lintian not installed (.ci/run installs it)")
    done = subprocess.run(["lintian", "--fail-on", "none", str(deb)], capture_output=True, text=True, timeout=900)
    return [line for line in done.stdout.splitlines() if re.match(r"^[EW]: ", line)]


@pytest.fixture(scope="module")
def debs(tmp_path_factory: pytest.TempPathFactory) -> Builds:
    out = tmp_path_factory.mktemp("dist")
    return Builds(build(out, 1), build(out, 2))


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "root"
    done = subprocess.run([str(DEBIAN / "bookworm-root.sh"), ARCH, str(path)], capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    yield path
    shutil.rmtree(path, ignore_errors=True)


def in_root(root: Path, script: str, timeout: float = 300, **env: str) -> str:
    """``script`` run by sh inside ``root`` (loopback only); its output, which must end in success."""
    done = subprocess.run([str(DEBIAN / "run-in-root.sh"), str(root), *(f"{k}={v}" for k, v in env.items())],
                          input="set -eu\nexport PATH=/usr/sbin:/usr/bin:/sbin:/bin\n" + script,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done.stdout


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_package_is_lintian_clean(debs: Builds) -> None:
    assert lintian_tags(debs.old) == []


def test_the_arm64_package_builds_from_aarch64_wheels_and_is_lintian_clean(tmp_path: Path) -> None:
    deb = build(tmp_path, 1, "arm64")
    assert subprocess.run(["dpkg-deb", "--field", str(deb), "Architecture"], capture_output=True, text=True,
                          check=True).stdout.strip() == "arm64"
    listing = subprocess.run(["dpkg-deb", "--contents", str(deb)], capture_output=True, text=True,
                             check=True).stdout
    assert "aarch64-linux-gnu.so" in listing and "x86_64-linux-gnu.so" not in listing
    assert lintian_tags(deb) == []


def test_the_package_holds_what_the_box_needs(debs: Builds) -> None:
    def field(name: str) -> str:
        return subprocess.run(["dpkg-deb", "--field", str(debs.old), name], capture_output=True, text=True,
                              check=True).stdout.strip()

    assert field("Package") == "fieldgate" and field("Architecture") == ARCH
    assert re.fullmatch(r"\d+\.\d+\.\d+-1", field("Version"))
    assert "python3.11" in field("Depends")
    listing = subprocess.run(["dpkg-deb", "--contents", str(debs.old)], capture_output=True, text=True,
                             check=True).stdout
    paths = {line.split()[5].removeprefix(".") for line in listing.splitlines()}
    for needed in ("/lib/systemd/system/fieldgate.service", "/lib/udev/rules.d/99-fieldgate-rs485.rules",
                   "/etc/fieldgate/site.example.yaml", "/opt/fieldgate/venv/bin/fieldgate",
                   "/opt/fieldgate/venv/pyvenv.cfg", "/opt/fieldgate/models/baseline-fire-smoke.onnx",
                   "/opt/fieldgate/config/devices/radar-level.yaml", "/usr/bin/fieldgate"):
        assert needed in paths, needed
    assert not any("__pycache__" in p for p in paths)
    assert any(re.search(r"/site-packages/numpy/", p) for p in paths)  # the vision extra is in
    control = subprocess.run(["dpkg-deb", "--ctrl-tarfile", str(debs.old)], capture_output=True, check=True)
    listing = subprocess.run(["tar", "-t"], input=control.stdout, capture_output=True, check=True).stdout.decode()
    assert {"./conffiles", "./postinst", "./prerm", "./postrm", "./md5sums"} <= set(listing.split())
    conffiles = subprocess.run(["dpkg-deb", "--info", str(debs.old), "conffiles"], capture_output=True,
                               text=True, check=True).stdout.split()
    assert conffiles == ["/etc/fieldgate/site.example.yaml"]


def test_installs_offline_and_runs_the_demo_site(debs: Builds, tmp_path: Path) -> None:
    work = tmp_path / "check"
    done = subprocess.run([str(DEBIAN / "check-in-root.sh"), ARCH, str(debs.old)], capture_output=True,
                          text=True, timeout=900, env=dict(os.environ, WORK=str(work), DEMO_SECONDS="15"))
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]
    checks = re.findall(r"^CHECK (.+): ok$", done.stdout, re.M)
    assert len(checks) >= 8 and any(c.startswith("demo site") for c in checks), done.stdout[-3000:]
    figures = dict(re.findall(r"^FIGURE (\w+)=(\S+)$", done.stdout, re.M))
    assert int(figures["readings_at_broker"]) >= 10
    shutil.rmtree(work, ignore_errors=True)


BROKER = """printf 'listener 18830 127.0.0.1\\nallow_anonymous true\\n' >/tmp/mosquitto.conf
mosquitto -c /tmp/mosquitto.conf >/tmp/mosquitto.log 2>&1 &
"""


def run_demo_site(seconds: int, broker: bool) -> str:
    """The installed demo site with its simulator for ``seconds``, as the unit's user; a clean stop."""
    return f"""{BROKER if broker else ""}
/opt/fieldgate/venv/bin/python3 -m sim.modbus /etc/fieldgate/site.yaml --animate >/tmp/sim.log 2>&1 &
sleep 4
setpriv --reuid=fieldgate --regid=fieldgate --init-groups /opt/fieldgate/venv/bin/fieldgate run \\
    /etc/fieldgate/site.yaml >>/tmp/gateway.log 2>&1 &
gw=$!
sleep {seconds}
kill -TERM $gw
wait $gw
"""


# A backlog: the demo site polled with the county broker down, so every reading waits in the journal.
MAKE_BACKLOG = """
dpkg -i /tmp/{old}
cp /etc/fieldgate/site.example.yaml /etc/fieldgate/site.yaml
echo '# edited on site' >>/etc/fieldgate/site.yaml
for c in tls-ca.pem tls-cert.pem tls-key.pem command-keys.pem; do echo "key $c" >/etc/fieldgate/credentials/$c; done
"""


def backlog(root: Path, tmp: Path) -> int:
    """Records waiting for a link, read from a copy (opening the live files as root would leave root-owned
    -shm/-wal files the daemon's user could not open)."""
    copy = tmp / "journal-copy"
    shutil.rmtree(copy, ignore_errors=True)
    copy.mkdir()
    for part in (root / "var/lib/fieldgate").glob("journal.sqlite*"):
        shutil.copy2(part, copy / part.name)
    with sqlite3.connect(copy / "journal.sqlite") as db:
        return len(owed_seqs(db))  # either schema: the old package's file or the new one's


def test_upgrade_keeps_site_keys_and_backlog_then_remove_and_purge(debs: Builds, root: Path, tmp_path: Path) -> None:
    for deb in (debs.old, debs.new):
        shutil.copy2(deb, root / "tmp" / deb.name)
    in_root(root, MAKE_BACKLOG.format(old=debs.old.name) + run_demo_site(12, broker=False))
    kept = [root / "etc/fieldgate/site.yaml", root / "etc/fieldgate/status-tls/key.pem",
            root / "etc/fieldgate/status-tls/cert.pem",
            *sorted((root / "etc/fieldgate/credentials").iterdir()), root / "var/lib/fieldgate/journal.sqlite"]
    before = {p: sha256(p) for p in kept}
    waiting = backlog(root, tmp_path)
    assert waiting >= 4, waiting  # at least the first reading of each of the 4 points
    cert = x509.load_pem_x509_certificate((root / "etc/fieldgate/status-tls/cert.pem").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)  # the status page's pair, made by postinst

    upgrade = in_root(root, f"dpkg -i /tmp/{debs.new.name}\n"
                            "echo VERSION=$(dpkg-query -W -f='${Version}' fieldgate)\n"
                            "stat -c '%U:%G %a %n' /etc/fieldgate /etc/fieldgate/credentials /var/lib/fieldgate "
                            "/opt/fieldgate/releases\n"
                            "echo CURRENT=$(readlink /opt/fieldgate/releases/current)\n"
                            "ls /etc/systemd/system/multi-user.target.wants/\n")
    assert re.search(r"^VERSION=\d+\.\d+\.\d+-2$", upgrade, re.M), upgrade
    assert {p: sha256(p) for p in kept} == before  # site file, keys, TLS pair, journal: untouched
    # /etc/fieldgate group-writable: a configuration roll-out replaces site.yaml (docs/fleet.md)
    assert "root:fieldgate 770 /etc/fieldgate" in upgrade and "root:root 700 /etc/fieldgate/credentials" in upgrade
    # The update slots, and current back on the packaged release after the upgrade
    assert "fieldgate:fieldgate 755 /opt/fieldgate/releases" in upgrade and "CURRENT=../venv" in upgrade
    assert "fieldgate:fieldgate 750 /var/lib/fieldgate" in upgrade and "fieldgate.service" in upgrade
    assert (root / "etc/fieldgate/site.yaml").read_text().endswith("# edited on site\n")

    in_root(root, run_demo_site(15, broker=True))  # N+1 with the broker up
    assert backlog(root, tmp_path) == 0  # N+1 delivered what N had journalled

    in_root(root, "dpkg -r fieldgate\n")
    assert not (root / "opt/fieldgate").exists() and not (root / "lib/systemd/system/fieldgate.service").exists()
    assert (root / "var/lib/fieldgate/journal.sqlite").exists() and (root / "etc/fieldgate/site.yaml").exists()
    assert all((root / "etc/fieldgate/credentials" / p.name).exists() for p in kept if "credentials" in str(p))
    in_root(root, "dpkg -P fieldgate\n")
    assert not (root / "var/lib/fieldgate").exists() and not (root / "etc/fieldgate").exists()
    status = in_root(root, "dpkg-query -W -f='${db:Status-Abbrev}' fieldgate 2>&1 || true\n")
    assert "ii" not in status
