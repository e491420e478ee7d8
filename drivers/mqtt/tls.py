"""TLS for the MQTT link: build the context, and say in one line why a handshake failed.

OpenSSL's messages are precise but cryptic ("unable to get local issuer certificate");
a technician on a hillside needs the cause and the file to look at. ``explain()`` maps
each known failure to a sentence naming the configured CA, certificate or host.
"""

from __future__ import annotations

import datetime as dt
import re
import ssl
from dataclasses import dataclass
from pathlib import Path

from drivers.mqtt.credentials import TlsFiles
from gateway.credentials import CredentialError

# OpenSSL X509_V_ERR_* codes (include/openssl/x509_vfy.h), stable across 1.1 and 3.x.
_NOT_SIGNED_BY_CA = {2, 7, 18, 19, 20, 21}
_EXPIRED = 10
_NOT_YET_VALID = 9
_NAME_MISMATCH = {62, 63, 64}
_REVOKED = 23


@dataclass(frozen=True, slots=True)
class Failure:
    """Why one connection attempt failed: a stable ``kind`` (for tests and metrics) and the sentence."""

    kind: str
    text: str

    @property
    def cause(self) -> str:
        """The sentence without the clock reading it may quote: the same cause a minute later is the same cause."""
        return _CLOCK_READING.sub("…", self.text)


def _utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


_CLOCK_READING = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC")  # what _utc_now() writes


def _refuse_passphrase() -> bytes:
    raise CredentialError("encrypted")


def build_context(files: TlsFiles, *, check_hostname: bool, min_version: str) -> ssl.SSLContext:
    """An SSLContext for the broker; raises CredentialError with a clear sentence for bad files."""
    if files.ca is None:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    else:
        # Only the configured CA is trusted: the system store must not vouch for the county broker.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            context.load_verify_locations(cafile=str(files.ca))
        except (ssl.SSLError, ValueError) as exc:
            raise CredentialError(f"CA certificate file {files.ca} holds no usable PEM certificate ({exc})") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_3 if min_version == "1.3" else ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = check_hostname
    if files.cert is not None:
        _check_own_certificate(files.cert)
        try:
            context.load_cert_chain(str(files.cert), str(files.key) if files.key else None, password=_refuse_passphrase)
        except CredentialError:
            raise CredentialError(
                f"client key {files.key or files.cert} is encrypted with a passphrase; install an unencrypted key "
                "protected by file permissions or a systemd credential"
            ) from None
        except ssl.SSLError as exc:
            if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
                raise CredentialError(
                    f"client key {files.key} does not belong to client certificate {files.cert}"
                ) from None
            raise CredentialError(
                f"client certificate {files.cert} or key {files.key or files.cert} is not usable PEM ({exc})"
            ) from None
    return context


def _check_own_certificate(path: Path) -> None:
    """Our certificate expired (or this box's clock is wrong): say so before the broker does."""
    from cryptography import x509  # only a site with a client certificate pays for it (~7 MB resident)

    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError:
        raise CredentialError(f"client certificate {path} is not a PEM certificate") from None
    now = dt.datetime.now(dt.UTC)
    if cert.not_valid_after_utc < now:
        raise CredentialError(
            f"client certificate {path} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC "
            f"(this box's clock says {_utc_now()}); install a renewed certificate"
        )
    if cert.not_valid_before_utc > now:
        raise CredentialError(
            f"client certificate {path} is not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC; "
            f"this box's clock says {_utc_now()} — check time sync"
        )


def _chain(exc: BaseException) -> list[BaseException]:
    """exc and what it wraps (aiomqtt re-raises SSL errors as MqttError ``from None``; __context__ keeps them)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 8:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def explain(exc: BaseException, host: str, port: int, files: TlsFiles | None, min_version: str = "1.2") -> Failure:
    """One sentence for one failed connection attempt."""
    for item in _chain(exc):
        if isinstance(item, ssl.SSLCertVerificationError):
            code = getattr(item, "verify_code", None)
            message = getattr(item, "verify_message", None) or str(item)
            return _verify_failure(code if isinstance(code, int) else -1, str(message), host, files)
    text = " / ".join(str(item) for item in _chain(exc) if str(item))
    return _from_text(text, host, port, files, min_version)


def _verify_failure(code: int, message: str, host: str, files: TlsFiles | None) -> Failure:
    ca = files.ca if files is not None else None
    trust = f"the configured CA {ca}" if ca is not None else "any CA in the system trust store"
    lowered = message.lower()
    if code in _NOT_SIGNED_BY_CA or "issuer certificate" in lowered or "self-signed" in lowered:
        return Failure("broker_untrusted", f"TLS: broker certificate not signed by {trust} ({message})")
    if code == _EXPIRED or "expired" in lowered:
        return Failure("broker_expired", f"TLS: broker certificate has expired (this box's clock says {_utc_now()})")
    if code == _NOT_YET_VALID or "not yet valid" in lowered:
        return Failure("broker_not_yet_valid",
                       f"TLS: broker certificate is not yet valid; this box's clock says {_utc_now()} "
                       "— check time sync")
    if code in _NAME_MISMATCH or "mismatch" in lowered:
        return Failure("hostname_mismatch",
                       f"TLS: broker certificate does not name '{host}' (hostname mismatch); "
                       "connect by a name the certificate lists")
    if code == _REVOKED:
        return Failure("broker_revoked", "TLS: broker certificate has been revoked")
    return Failure("tls_verify", f"TLS: broker certificate rejected: {message}")


# Alerts the broker sends when it refuses *our* side of the handshake, and other socket-level causes.
_TEXT_CAUSES: tuple[tuple[str, str, str], ...] = (
    ("alert certificate expired", "client_expired", "TLS: broker rejected our client certificate {cert}: expired"),
    ("alert unknown ca", "client_untrusted",
     "TLS: broker does not trust our client certificate {cert} (signed by a CA the broker does not know)"),
    ("alert certificate required", "client_cert_required",
     "TLS: broker requires a client certificate and {cert_state}"),
    ("alert bad certificate", "client_rejected", "TLS: broker rejected our client certificate {cert}"),
    ("alert certificate unknown", "client_rejected", "TLS: broker rejected our client certificate {cert}"),
    ("alert certificate revoked", "client_revoked", "TLS: broker says our client certificate {cert} is revoked"),
    ("alert protocol version", "tls_version", "TLS: broker does not accept TLS {min_version} or newer"),
    ("unsupported protocol", "tls_version", "TLS: broker does not accept TLS {min_version} or newer"),
    ("alert handshake failure", "tls_handshake",
     "TLS: broker refused the handshake (no common cipher, or a client certificate is required)"),
    ("wrong version number", "not_tls", "TLS: {host}:{port} does not speak TLS (a plain MQTT listener?)"),
    ("record layer failure", "not_tls", "TLS: {host}:{port} does not speak TLS (a plain MQTT listener?)"),
    ("eof occurred in violation of protocol", "tls_eof",
     "TLS: broker closed the connection during the handshake"),
    ("connection refused", "refused", "connection refused by {host}:{port} (broker down or wrong port)"),
    ("name or service not known", "dns", "cannot resolve host '{host}' (DNS or no network)"),
    ("temporary failure in name resolution", "dns", "cannot resolve host '{host}' (DNS or no network)"),
    ("network is unreachable", "unreachable", "network unreachable to {host}:{port}"),
    ("no route to host", "unreachable", "no route to {host}:{port}"),
    ("not authorized", "login", "broker refused the login (not authorized: check username/password/token)"),
    ("bad user name or password", "login", "broker refused the login (bad username or password)"),
    ("timed out", "timeout", "no answer from {host}:{port} (timed out)"),
)


_SSL_REASON = re.compile(r"\[SSL: [A-Z0-9_]+\] ([^(/]+?)\s*\(_ssl\.c:\d+\)")


def _short(text: str) -> str:
    """OpenSSL's reason without the library noise: '[SSL: X] tlsv1 alert unknown ca (_ssl.c:2580)' → the words."""
    reasons = _SSL_REASON.findall(text)
    return str(reasons[-1]) if reasons else text


def _from_text(text: str, host: str, port: int, files: TlsFiles | None, min_version: str) -> Failure:
    lowered = text.lower()
    cert = str(files.cert) if files is not None and files.cert is not None else "(none configured)"
    cert_state = "none is configured (set tls.cert_file/cert_credential)" if cert == "(none configured)" \
        else f"did not accept {cert}"
    for needle, kind, template in _TEXT_CAUSES:
        if needle in lowered:
            detail = template.format(cert=cert, cert_state=cert_state, host=host, port=port, min_version=min_version)
            plain = kind in {"refused", "timeout", "dns", "unreachable"}
            return Failure(kind, detail if plain else f"{detail} ({_short(text)})")
    return Failure("other", text or "connection failed")
