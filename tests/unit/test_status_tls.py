"""The status page over TLS with a self-signed pair made here: HTTPS, Secure cookies, `fieldgate status`."""

from __future__ import annotations

import asyncio
import datetime as dt
import http.client
import ipaddress
import json
import logging
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.config import load_site
from gateway.status import StatusConfig, StatusServer
from gateway.status.config import StatusTls
from sim.support import free_port
from tests.unit.cli import fieldgate
from tests.unit.test_status_cli import run_cli
from tests.unit.test_status_server import FakeGateway, Running, users_file

__all__ = ["users_file"]  # the fixture, used by name below

REPO = Path(__file__).resolve().parents[2]


def self_signed_pair(directory: Path, dns: tuple[str, ...] = ("localhost",),
                     ips: tuple[str, ...] = ("127.0.0.1", "::1")) -> tuple[Path, Path]:
    """A self-signed server certificate and its key, as files; returns (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns[0])])
    now = dt.datetime.now(dt.UTC)
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "status-cert.pem", directory / "status-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


@pytest.fixture
def tls_config(tmp_path: Path, users_file: Path) -> StatusConfig:
    cert, key = self_signed_pair(tmp_path)
    return StatusConfig(listen=f"127.0.0.1:{free_port()}", users_file=users_file,
                        tls=StatusTls(cert_file=cert, key_file=key))


@pytest.fixture
def running_tls(tls_config: StatusConfig) -> Iterator[Running]:
    server = Running(tls_config, FakeGateway())
    yield server
    server.stop()


def https(config: StatusConfig) -> http.client.HTTPSConnection:
    assert config.tls is not None
    context = ssl.create_default_context(cafile=str(config.tls.cert_file))
    return http.client.HTTPSConnection("127.0.0.1", config.port, context=context, timeout=10)


def test_page_status_and_login_over_tls_with_a_secure_cookie(running_tls: Running, tls_config: StatusConfig) -> None:
    connection = https(tls_config)
    try:
        connection.request("GET", "/api/status")
        response = connection.getresponse()
        assert response.status == 200 and json.loads(response.read())["gateway"]["id"] == "gw-1"
        origin = f"https://127.0.0.1:{tls_config.port}"
        body = json.dumps({"user": "tech", "password": "correct horse"})
        connection.request("POST", "/login", body, {"Content-Type": "application/json", "Origin": origin})
        response = connection.getresponse()
        response.read()
        cookie = response.getheader("Set-Cookie") or ""
        assert response.status == 200 and "Secure" in [a.strip() for a in cookie.split(";")], cookie
        # The http:// origin of the same host is another origin: refused.
        connection.request("POST", "/login", body, {"Content-Type": "application/json",
                                                     "Origin": f"http://127.0.0.1:{tls_config.port}"})
        response = connection.getresponse()
        assert response.status == 403 and response.read()
    finally:
        connection.close()


def test_plain_http_on_the_tls_port_is_dropped_quietly(running_tls: Running,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="fieldgate.status"):
        answer = running_tls.raw(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert b"HTTP/1.1" not in answer  # at most a TLS alert, then the connection closes
    assert [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info] == []
    connection = https(running_tls.server.config)
    try:
        connection.request("GET", "/healthz")
        assert connection.getresponse().status == 200  # and the server lives on
    finally:
        connection.close()


def test_a_client_that_does_not_trust_the_certificate_is_refused(running_tls: Running) -> None:
    connection = http.client.HTTPSConnection("127.0.0.1", running_tls.port, timeout=10,
                                             context=ssl.create_default_context())  # system CAs only
    with pytest.raises(ssl.SSLCertVerificationError):
        connection.request("GET", "/healthz")
    connection.close()


def test_fieldgate_status_reads_the_tls_page_from_the_site_config(tmp_path: Path, tls_config: StatusConfig,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert tls_config.tls is not None
    site = tmp_path / "site.yaml"
    site.write_text(f"gateway: {{id: gw-1, state_dir: {tmp_path}}}\n"
                    f"status: {{listen: '0.0.0.0:{tls_config.port}', tls: {{cert_file: {tls_config.tls.cert_file}, "
                    f"key_file: {tls_config.tls.key_file}}}}}\n")
    server = Running(tls_config, FakeGateway())
    try:
        assert run_cli(["status", "--config", str(site)]) == 0
        assert capsys.readouterr().out.startswith("gateway gw-1 Test dam")
        (tmp_path / "other").mkdir()
        other, _ = self_signed_pair(tmp_path / "other")
        assert run_cli(["status", "--config", str(site), "--cafile", str(other), "--timeout", "3"]) == 1
        assert "CERTIFICATE_VERIFY_FAILED" in capsys.readouterr().err
    finally:
        server.stop()


def test_unusable_tls_files_are_one_clear_error(tmp_path: Path) -> None:
    config = StatusConfig(listen=f"127.0.0.1:{free_port()}",
                          tls=StatusTls(cert_file=tmp_path / "nope.pem", key_file=tmp_path / "nope.key"))
    server = StatusServer(config, FakeGateway())
    with pytest.raises(OSError, match=r"status.tls: cannot use cert_file .*nope.pem"):
        asyncio.run(server.start())


def test_hosts_are_validated_and_normalised() -> None:
    config = StatusConfig(hosts=["Gauge-12.County.Example.", "10.0.0.5", "::FFFF:10.0.0.6"])
    assert config.hosts == ["gauge-12.county.example", "10.0.0.5", "10.0.0.6"]
    with pytest.raises(ValueError, match="not a host name"):
        StatusConfig(hosts=["evil example"])
    with pytest.raises(ValueError, match="not a host name"):
        StatusConfig(hosts=["box:8080"])


def test_a_configured_host_name_is_served(tmp_path: Path) -> None:
    config = StatusConfig(listen=f"127.0.0.1:{free_port()}", hosts=["gauge-12.county.example"])
    server = Running(config, FakeGateway())
    try:
        assert server.request("GET", "/healthz", headers={"Host": "GAUGE-12.county.example:8443"})[0] == 200
        assert server.request("GET", "/healthz", headers={"Host": "gauge-13.county.example"})[0] == 421
    finally:
        server.stop()


@pytest.mark.parametrize("name", ["reservoir.yaml", "chemical-park.yaml", "forest-tower.yaml"])
def test_example_sites_serving_beyond_loopback_use_tls(name: str) -> None:
    status = load_site(REPO / "config" / name).status
    assert status is not None and not status.loopback_only
    assert status.tls is not None, f"{name}: status.listen {status.listen} without status.tls"


@pytest.mark.parametrize(("listen", "loopback"), [("127.0.0.1:8080", True), ("127.1.2.3:8080", True),
                                                  ("[::1]:8080", True), ("localhost:8080", True),
                                                  ("0.0.0.0:8443", False), ("10.0.0.5:8443", False)])
def test_loopback_only(listen: str, loopback: bool) -> None:
    assert StatusConfig(listen=listen).loopback_only is loopback


def test_the_tls_pair_defaults_are_where_install_puts_them() -> None:
    install = (REPO / "deploy" / "raspberrypi" / "install.sh").read_text()
    postinst = (REPO / "deploy" / "debian" / "postinst").read_text()  # the package's
    tls = StatusTls()
    assert f"STATUS_TLS_DIR={tls.cert_file.parent}" in install
    assert f"TLS_DIR={tls.cert_file.parent}" in postinst
    assert tls.key_file.parent == tls.cert_file.parent
    assert tls.cert_file.name == "cert.pem" and tls.key_file.name == "key.pem"


def test_validate_warns_about_a_lan_page_without_tls_and_unreadable_tls_files(tmp_path: Path) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(f"gateway: {{id: gw, state_dir: {tmp_path}}}\nstatus: {{listen: '0.0.0.0:8080'}}\n")
    run = fieldgate("validate", str(site))
    assert run.returncode == 0 and "status: listen 0.0.0.0:8080 without tls" in run.stdout, run.stdout
    site.write_text(f"gateway: {{id: gw, state_dir: {tmp_path}}}\n"
                    f"status: {{listen: '0.0.0.0:8443', tls: {{cert_file: {tmp_path}/none.pem}}}}\n")
    run = fieldgate("validate", str(site))
    assert run.returncode == 0 and f"status: tls.cert_file {tmp_path}/none.pem: No such file" in run.stdout
