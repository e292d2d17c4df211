"""The credentials a process uses: its certificate, its private key, the CA certificate(s).

From explicit ``tls_*`` paths or a Puppet ``ssldir`` (:func:`resolve_credential_paths`), loaded
and cross-checked once at start-up (:func:`load_credentials`) with errors that say what to do.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from orch.core import credentials
from orch.core.credentials import CredentialPaths
from orch.core.errors import ConfigError
from orch.security.pki.certs import (
    EXPIRY_WARNING,
    chains_to,
    common_name,
    format_time,
    not_after,
    not_before,
    utc_now,
)
from orch.security.pki.keys import SigningKey, key_type_of

if TYPE_CHECKING:
    from orch.core.config import Settings

log = logging.getLogger(__name__)


class Credentials(NamedTuple):
    """A process's certificate, its private key, and the trusted CA certificate(s).

    ``ca`` is a tuple because a CA file may hold a chain: Puppet 6+ writes the intermediate
    and the root CA into ``certs/ca.pem``. Every certificate in it is trusted.
    """

    certificate: x509.Certificate
    key: SigningKey
    ca: tuple[x509.Certificate, ...]


def resolve_credential_paths(settings: Settings) -> CredentialPaths:
    """:func:`orch.core.credentials.resolve_credential_paths`, with this provider's name."""
    return credentials.resolve_credential_paths(settings, "security provider x509")


def _read(path: Path, what: str, hint: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist: {hint}") from None
    except PermissionError:
        raise ConfigError(f"cannot read {what} {path}: permission denied; run orch as the user "
                          "that owns it (private keys are readable by their owner only)"
                          ) from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a directory, not a PEM file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None


def load_certificate_file(path: Path, what: str, hint: str = "check the path") -> x509.Certificate:
    """The first certificate of a PEM file; ConfigError naming the file otherwise."""
    data = _read(path, what, hint)
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise ConfigError(f"{what} {path} is not a PEM certificate: {exc}") from None


def load_ca_file(path: Path, what: str = "CA certificate",
                 hint: str = "check the path") -> tuple[x509.Certificate, ...]:
    """Every certificate of a PEM file (a CA bundle); ConfigError naming the file otherwise."""
    data = _read(path, what, hint)
    try:
        certs = tuple(x509.load_pem_x509_certificates(data))
    except ValueError as exc:
        raise ConfigError(f"{what} {path} is not a PEM certificate: {exc}") from None
    return certs


def load_private_key_file(path: Path, what: str, hint: str = "check the path") -> SigningKey:
    """An unencrypted PEM private key (PKCS#8 or Puppet's PKCS#1 RSA), never logged."""
    data = _read(path, what, hint)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ConfigError(f"{what} {path} is encrypted; orch needs an unencrypted key "
                          "(protected by its file mode 0600)") from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(f"{what} {path} is not a PEM private key") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
                      | ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{what} {path} is a {key_type_of(key)} key; orch signs with "
                          "ed25519, rsa or ecdsa keys")
    with contextlib.suppress(OSError):
        if path.stat().st_mode & 0o007:
            log.warning("private key %s is readable by all users; make it mode 0600", path)
    return key


def same_public_key(a: Any, b: Any) -> bool:
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        return bool(a.public_bytes(*spki) == b.public_bytes(*spki))
    except (AttributeError, ValueError, TypeError):
        return False


def load_credentials(settings: Settings, *, clock_skew: float | None = None) -> Credentials:
    """Load and cross-check this process's certificate, private key and CA certificate(s).

    Checked here, once, so that a misconfigured process stops at start-up with one clear
    message instead of having every message rejected later: the key belongs to the
    certificate; the certificate was issued by (one of) the CA certificate(s); it is within
    its validity dates (a warning when it expires within 14 days).
    """
    paths = resolve_credential_paths(settings)
    puppet = settings.ssldir is not None
    identity = settings.identity
    if puppet:
        cert_hint = (f"there is no Puppet certificate for certname {identity!r}: run "
                     "`puppet agent -t` (or `puppet ssl bootstrap`) on this host, or set "
                     "identity to the Puppet certname (for a user, e.g. alice.mcollective)")
    else:
        cert_hint = credentials.SETUP_HINT.format(identity=identity)
    cert = load_certificate_file(paths.cert, "certificate (tls_cert)", cert_hint)
    key = load_private_key_file(paths.key, "private key (tls_key)", cert_hint)
    ca = load_ca_file(paths.ca, "CA certificate (tls_ca)",
                      "copy the CA's ca.pem here (orch ca init writes DIR/ca.pem; Puppet "
                      "writes ssl/certs/ca.pem)")
    name = common_name(cert) or "?"
    if not same_public_key(cert.public_key(), key.public_key()):
        raise ConfigError(f"private key {paths.key} does not belong to certificate "
                          f"{paths.cert} ({name!r}); use the .key issued with it")
    if chains_to(cert, ca) is None:
        raise ConfigError(
            f"certificate {paths.cert} ({name!r}) was not issued by the CA in {paths.ca} "
            f"(it names issuer {cert.issuer.rfc4514_string()!r}); use the ca.pem of the CA "
            "that issued it, or issue a new certificate from this CA")
    skew = dt.timedelta(seconds=settings.clock_skew if clock_skew is None else clock_skew)
    now = utc_now()
    if not_after(cert) + skew < now:
        raise ConfigError(f"certificate {paths.cert} ({name!r}) expired at "
                          f"{format_time(not_after(cert))}; issue a new one "
                          f"(`orch ca issue --dir DIR ... --force`)")
    if not_before(cert) - skew > now:
        raise ConfigError(f"certificate {paths.cert} ({name!r}) is not valid before "
                          f"{format_time(not_before(cert))}; check this host's clock")
    if not_after(cert) - now < EXPIRY_WARNING:
        log.warning("certificate %s (%r) expires at %s; issue a new one soon", paths.cert,
                    name, format_time(not_after(cert)))
    log.debug("x509 credentials from %s: certificate %s (%r), CA %s", paths.source,
              paths.cert, name, paths.ca)
    return Credentials(cert, key, ca)


def resolve_crl_path(settings: Settings) -> Path | None:
    """:func:`orch.core.credentials.resolve_crl_path` (kept here for existing callers)."""
    return credentials.resolve_crl_path(settings)
