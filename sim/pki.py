"""A test PKI made in-process: the county's CA, a stranger's CA, and the broker's and gateways' certificates
(good, expired, for another host name, from the wrong CA) for mosquitto's TLS listeners."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Key = ec.EllipticCurvePrivateKey


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(path: Path, cert: x509.Certificate, key: Key) -> tuple[Path, Path]:
    path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = path.with_suffix(".key")
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return path.with_suffix(".pem"), key_path


@dataclass
class TestCa:
    """A certificate authority that signs server and client certificates for the rig."""

    __test__ = False  # not a pytest class
    directory: Path
    name: str
    key: Key
    cert: x509.Certificate

    @classmethod
    def create(cls, directory: Path, name: str) -> TestCa:
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        ca = cls(directory, name, key, cert)
        ca.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return ca

    @property
    def cert_path(self) -> Path:
        return self.directory / f"{self.name}-ca.pem"

    def issue(self, stem: str, *, server: bool, dns: tuple[str, ...] = (), ips: tuple[str, ...] = (),
              expired: bool = False) -> tuple[Path, Path]:
        """Sign a leaf certificate; returns (certificate path, key path)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        start, end = ((now - dt.timedelta(days=30), now - dt.timedelta(days=1)) if expired
                      else (now - dt.timedelta(days=1), now + dt.timedelta(days=30)))
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = (
            x509.CertificateBuilder().subject_name(_name(stem)).issuer_name(self.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                           critical=False)
        )
        names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return _write(self.directory / stem, builder.sign(self.key, hashes.SHA256()), key)


@dataclass
class Pki:
    ca: TestCa
    other_ca: TestCa
    server: tuple[Path, Path]
    server_expired: tuple[Path, Path]
    server_wrong_name: tuple[Path, Path]
    client: tuple[Path, Path]
    client_expired: tuple[Path, Path]
    client_other_ca: tuple[Path, Path]


def make_pki(directory: Path) -> Pki:
    ca = TestCa.create(directory, "county")
    other = TestCa.create(directory, "stranger")
    return Pki(
        ca=ca,
        other_ca=other,
        server=ca.issue("broker", server=True, dns=("localhost",), ips=("127.0.0.1",)),
        server_expired=ca.issue("broker-expired", server=True, dns=("localhost",), ips=("127.0.0.1",), expired=True),
        server_wrong_name=ca.issue("broker-elsewhere", server=True, dns=("broker.elsewhere.example",)),
        client=ca.issue("rig-gw", server=False),
        client_expired=ca.issue("rig-gw-expired", server=False, expired=True),
        client_other_ca=other.issue("rig-gw-stranger", server=False),
    )
