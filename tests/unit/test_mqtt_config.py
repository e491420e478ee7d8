"""MQTT link config, secrets from files or systemd credentials, TLS context errors, failure sentences."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from pydantic import ValidationError

from drivers.mqtt import credentials
from drivers.mqtt.config import MqttLinkConfig, MqttTls
from drivers.mqtt.credentials import CredentialError, TlsFiles
from drivers.mqtt.tls import build_context, explain
from sim.pki import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def link(**kw: object) -> MqttLinkConfig:
    return MqttLinkConfig.model_validate({"type": "mqtt", "host": "broker", **kw})


def test_file_or_credential_not_both() -> None:
    with pytest.raises(ValidationError, match="either ca_file or ca_credential"):
        MqttTls(ca_file=Path("/x"), ca_credential="tls-ca.pem")
    with pytest.raises(ValidationError, match="client key needs a client certificate"):
        MqttTls(key_credential="tls-key.pem")
    with pytest.raises(ValidationError, match="either password_file or password_credential"):
        link(password_file="/x", password_credential="pw")
    with pytest.raises(ValidationError, match="username once"):
        link(username="a", username_file="/x")
    with pytest.raises(ValidationError):
        MqttTls(ca_credential="../etc/passwd")  # a credential is a name, never a path


def test_credentials_resolve_from_the_credentials_directory(tmp_path: Path, pki: Pki) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "tls-ca.pem").write_bytes(pki.ca.cert_path.read_bytes())
    (creds / "tls-cert.pem").write_bytes(pki.client[0].read_bytes())
    (creds / "tls-key.pem").write_bytes(pki.client[1].read_bytes())
    (creds / "mqtt-password").write_text("s3cret\n")
    config = link(tls={"ca_credential": "tls-ca.pem", "cert_credential": "tls-cert.pem",
                       "key_credential": "tls-key.pem"},
                  username="gw", password_credential="mqtt-password")
    env = {"CREDENTIALS_DIRECTORY": str(creds)}
    files = credentials.tls_files(config, env)
    assert files == TlsFiles(creds / "tls-ca.pem", creds / "tls-cert.pem", creds / "tls-key.pem")
    assert credentials.login(config, env) == ("gw", "s3cret")
    assert credentials.problems(config, env) == []
    context = build_context(files, check_hostname=True, min_version="1.2")
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2 and context.verify_mode == ssl.CERT_REQUIRED


def test_credential_without_systemd_is_a_clear_problem() -> None:
    config = link(tls={"ca_credential": "tls-ca.pem"})
    [problem] = credentials.problems(config, {})
    assert "credential 'tls-ca.pem' is configured but $CREDENTIALS_DIRECTORY is not set" in problem


def test_missing_and_empty_files_are_named(tmp_path: Path, pki: Pki) -> None:
    config = link(tls={"ca_file": str(pki.ca.cert_path), "cert_file": str(pki.client[0]),
                       "key_file": str(tmp_path / "gone.key")})
    assert credentials.problems(config, {}) == [f"client key file {tmp_path / 'gone.key'} does not exist"]
    (tmp_path / "empty").write_text("")
    assert credentials.problems(link(password_file=str(tmp_path / "empty")), {}) == \
        [f"password file {tmp_path / 'empty'} is empty"]
    assert credentials.problems(link(username_file=str(tmp_path)), {}) == [f"username file {tmp_path} is a directory"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file, so unreadable cannot be made [not-in-ci]")
def test_unreadable_key_is_named(tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    key.write_text("x")
    key.chmod(0)
    with pytest.raises(CredentialError, match="not readable by this user"):
        credentials.check_readable("client key", key)


def test_bad_tls_files_give_one_sentence(tmp_path: Path, pki: Pki) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(CredentialError, match=r"CA certificate file .*junk\.pem holds no usable PEM"):
        build_context(TlsFiles(junk, None, None), check_hostname=True, min_version="1.2")
    with pytest.raises(CredentialError, match=r"client key .*rig-gw-stranger\.key does not belong to client cert"):
        build_context(TlsFiles(pki.ca.cert_path, pki.client[0], pki.client_other_ca[1]),
                      check_hostname=True, min_version="1.2")
    key = serialization.load_pem_private_key(pki.client[1].read_bytes(), None)
    locked = tmp_path / "locked.key"
    locked.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.BestAvailableEncryption(b"pw")))
    with pytest.raises(CredentialError, match="encrypted with a passphrase"):
        build_context(TlsFiles(pki.ca.cert_path, pki.client[0], locked), check_hostname=True, min_version="1.2")
    with pytest.raises(CredentialError, match=r"client certificate .*rig-gw-expired\.pem expired on"):
        build_context(TlsFiles(pki.ca.cert_path, *pki.client_expired), check_hostname=True, min_version="1.2")


@pytest.mark.parametrize("message, kind, words", [
    ("connection closed before CONNACK: failed to receive on socket: [SSL: SSLV3_ALERT_CERTIFICATE_EXPIRED] "
     "sslv3 alert certificate expired (_ssl.c:2580)", "client_expired",
     "broker rejected our client certificate /c.pem: expired (sslv3 alert certificate expired)"),
    ("[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)", "not_tls", "does not speak TLS"),
    ("[Errno 111] Connection refused", "refused", "connection refused by broker:8883 (broker down or wrong port)"),
    ("[Errno -2] Name or service not known", "dns", "cannot resolve host 'broker'"),
    ("Operation timed out", "timeout", "no answer from broker:8883"),
    ("[code:135] Not authorized", "login", "broker refused the login"),
    ("something new", "other", "something new"),
])
def test_failure_sentences(message: str, kind: str, words: str) -> None:
    failure = explain(OSError(message), "broker", 8883, TlsFiles(Path("/ca.pem"), Path("/c.pem"), Path("/k.pem")))
    assert failure.kind == kind
    assert words in failure.text


def test_verify_errors_are_read_from_the_wrapped_ssl_error() -> None:
    """aiomqtt raises MqttError(str(exc)) from None; the SSL error stays reachable as __context__."""
    import aiomqtt

    try:
        try:
            raise ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
                                               "unable to get local issuer certificate")
        except OSError as exc:
            raise aiomqtt.MqttError(str(exc)) from None
    except aiomqtt.MqttError as wrapped:
        failure = explain(wrapped, "broker", 8883, TlsFiles(Path("/etc/ca.pem"), None, None))
    # Constructed in Python the error has no verify_code; the message still decides.
    assert failure.kind == "broker_untrusted"
    assert "broker certificate not signed by the configured CA /etc/ca.pem" in failure.text
