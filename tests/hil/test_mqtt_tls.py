"""TLS on the rig: a test CA made here, mosquitto with TLS listeners, the real gateway process.

One mosquitto serves a plain listener (the platform-side collector) and three TLS
listeners: a good server certificate with client certificates required (mTLS), an
expired server certificate, and a certificate for another host name. The gateway must
deliver readings through the good one, and for every bad case refuse the connection,
log one clear line naming the cause, keep retrying and not crash.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.config import load_site
from sim.broker import Broker
from sim.gateway_process import GatewayProcess
from sim.modbus import SimServer, SimUnit
from sim.pki import Pki, TestCa, make_pki
from sim.platform import Platform
from sim.support import free_port, wait_for
from tests.hil.rig import RigFile

pytestmark = pytest.mark.hil

# ---- the rig: one broker, four listeners ------------------------------------------------------


@dataclass
class TlsRig:
    pki: Pki
    broker: Broker
    good: int
    expired: int
    wrong_name: int


def _listener(port: int, ca: Path, cert_key: tuple[Path, Path], mtls: bool) -> str:
    cert, key = cert_key
    return (f"listener {port} 127.0.0.1\ncafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
            f"require_certificate {'true' if mtls else 'false'}\n")


@pytest.fixture(scope="module")
def tls_rig(tmp_path_factory: pytest.TempPathFactory, rig: RigFile) -> Iterator[TlsRig]:
    base = tmp_path_factory.mktemp("tls")
    pki = make_pki(base / "pki")
    good, expired, wrong_name = free_port(), free_port(), free_port()
    conf = (_listener(good, pki.ca.cert_path, pki.server, mtls=True)
            + _listener(expired, pki.ca.cert_path, pki.server_expired, mtls=False)
            + _listener(wrong_name, pki.ca.cert_path, pki.server_wrong_name, mtls=False))
    broker = Broker(base / "broker", rig.mosquitto, extra_conf=conf).start()
    for port in (good, expired, wrong_name):
        wait_for(lambda p=port: _open(p), 10, f"TLS listener {port}")
    yield TlsRig(pki, broker, good, expired, wrong_name)
    broker.stop()


def _open(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def tls_collector(tls_rig: TlsRig) -> Iterator[Platform]:
    collector = Platform(tls_rig.broker.port)
    yield collector
    collector.close()


def _site(tmp: Path, modbus_port: int, host: str, port: int, tls: str) -> Path:
    path = tmp / "site.yaml"
    path.write_text(f"""
gateway: {{id: tls-gw, state_dir: {tmp / 'state'}}}
buses:
  - type: modbus_tcp
    name: gauges
    host: 127.0.0.1
    port: {modbus_port}
    devices:
      - name: gauge
        unit_id: 7
        poll_interval: 200ms
        timeout: 500ms
        points:
          - {{id: res.level, table: holding, address: 0, type: float32, unit: m}}
links:
  - type: mqtt
    name: county
    host: {host}
    port: {port}
    reconnect_min: 0.2
    reconnect_max: 1
    tls: {tls}
""")
    return path


def _tls(ca: Path, cert_key: tuple[Path, Path] | None) -> str:
    if cert_key is None:
        return f"{{ca_file: {ca}}}"
    return f"{{ca_file: {ca}, cert_file: {cert_key[0]}, key_file: {cert_key[1]}}}"


def _gauge(site: Path, port: int) -> SimServer:
    points = {p.id: p for b in load_site(site).buses for d in b.devices for p in d.points}
    unit = SimUnit(7)
    unit.set_point(points["res.level"], 31.25)
    return SimServer([unit], port=port).start()


def _tls_attempts(broker: Broker, port: int) -> int:
    log = (broker.workdir / "mosquitto.log").read_text(errors="replace")
    return len(re.findall(rf"New connection from 127\.0\.0\.1:\d+ on port {port}\.", log))


def test_good_certificates_deliver_readings(tmp_path: Path, tls_rig: TlsRig, tls_collector: Platform) -> None:
    modbus_port = free_port()
    site = _site(tmp_path, modbus_port, "127.0.0.1", tls_rig.good, _tls(tls_rig.pki.ca.cert_path, tls_rig.pki.client))
    server = _gauge(site, modbus_port)
    gateway = GatewayProcess(site, tmp_path / "gateway.log").start()
    try:
        wait_for(lambda: any(abs(v - 31.25) < 1e-3 for v in tls_collector.values("res.level")), 30,
                 f"a reading over mTLS; gateway log:\n{gateway.log()}")
        assert "online" in tls_collector.status()
        assert re.search(r"connected to 127\.0\.0\.1:\d+ \(TLSv1\.[23]", gateway.log()), gateway.log()
    finally:
        server.stop()
        assert gateway.stop() == 0, gateway.log()


@dataclass(frozen=True)
class BadCase:
    id: str
    host: str
    listener: str  # attribute of TlsRig
    ca: str  # "ca" or "other_ca"
    client: str | None  # attribute of Pki
    line: str  # regex the gateway log must contain (one clear line)


BAD_CASES = [
    BadCase("wrong-ca", "127.0.0.1", "good", "other_ca", "client",
            r"TLS: broker certificate not signed by the configured CA \S*stranger-ca\.pem"),
    BadCase("expired-server-cert", "127.0.0.1", "expired", "ca", None,
            r"TLS: broker certificate has expired"),
    BadCase("hostname-mismatch", "127.0.0.1", "wrong_name", "ca", None,
            r"TLS: broker certificate does not name '127\.0\.0\.1' \(hostname mismatch"),
    BadCase("hostname-mismatch-dns", "localhost", "wrong_name", "ca", None,
            r"TLS: broker certificate does not name 'localhost' \(hostname mismatch"),
    BadCase("client-cert-from-another-ca", "127.0.0.1", "good", "ca", "client_other_ca",
            r"TLS: broker does not trust our client certificate \S*rig-gw-stranger\.pem"),
    BadCase("no-client-cert", "127.0.0.1", "good", "ca", None,
            r"TLS: broker requires a client certificate and none is configured"),
    BadCase("own-cert-expired", "127.0.0.1", "good", "ca", "client_expired",
            r"configuration error: client certificate \S*rig-gw-expired\.pem expired on "),
]


@pytest.mark.parametrize("case", BAD_CASES, ids=[c.id for c in BAD_CASES])
def test_bad_tls_is_refused_with_a_clear_line_and_retried(tmp_path: Path, tls_rig: TlsRig, case: BadCase) -> None:
    port = getattr(tls_rig, case.listener)
    ca: TestCa = getattr(tls_rig.pki, case.ca)
    client = getattr(tls_rig.pki, case.client) if case.client else None
    site = _site(tmp_path, free_port(), case.host, port, _tls(ca.cert_path, client))
    before = _tls_attempts(tls_rig.broker, port)
    gateway = GatewayProcess(site, tmp_path / "gateway.log").start()
    try:
        wait_for(lambda: re.search(case.line, gateway.log()) is not None, 30,
                 f"the line /{case.line}/ in the gateway log:\n{gateway.log()}")
        if case.id != "own-cert-expired":  # that one is caught before dialling
            wait_for(lambda: _tls_attempts(tls_rig.broker, port) >= before + 3, 30,
                     f"the gateway retrying; log:\n{gateway.log()}")
        assert gateway.proc is not None and gateway.proc.poll() is None, f"gateway exited:\n{gateway.log()}"
        lines = [line for line in gateway.log().splitlines() if re.search(case.line, line)]
        assert len(lines) == 1, f"the cause must be logged once, not every retry: {lines}"
        assert "Traceback" not in gateway.log()
        assert "connected to" not in gateway.log()
    finally:
        assert gateway.stop() == 0, gateway.log()
