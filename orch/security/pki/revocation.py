"""Certificate revocation lists: the CA writes one, every orch process checks against one.

Why a CRL and not a database: a node must refuse a revoked client's requests without asking
anyone, exactly as it checks a certificate's chain. The CA publishes a signed list of revoked
serial numbers (``orch ca crl`` writes ``DIR/crl.pem``; a Puppet CA keeps its own in
``ssl/crl.pem``), the operator copies it where the ``tls_crl`` setting points, and a daemon
re-reads it on SIGHUP.

A CRL file may hold several CRLs (Puppet 6+ writes one for the intermediate CA and one for the
root): each must be signed by one of the trusted CA certificates, and applies to the
certificates that CA issued. A CRL whose ``nextUpdate`` has passed is still used (an old list
is better than none), with a warning in the log.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from orch.core.errors import ConfigError
from orch.security.pki.certs import format_time, signing_hash, utc_now
from orch.security.pki.keys import SigningKey
from orch.security.revoked import RevocationList

log = logging.getLogger(__name__)

#: A CRL file larger than this is refused before parsing (a million serials fit easily).
MAX_CRL_BYTES = 64 * 1024 * 1024
_PEM_CRL = re.compile(rb"-----BEGIN X509 CRL-----.*?-----END X509 CRL-----", re.DOTALL)
#: RFC 5280 reason codes ``orch ca revoke --reason`` accepts.
REASONS = {
    "unspecified": x509.ReasonFlags.unspecified,
    "key-compromise": x509.ReasonFlags.key_compromise,
    "superseded": x509.ReasonFlags.superseded,
    "cessation-of-operation": x509.ReasonFlags.cessation_of_operation,
    "affiliation-changed": x509.ReasonFlags.affiliation_changed,
}


def build_crl(
    ca_cert: x509.Certificate,
    ca_key: SigningKey,
    revoked: Iterable[tuple[int, dt.datetime, str]],
    number: int,
    days: int,
) -> x509.CertificateRevocationList:
    """A CRL signed by the CA listing ``revoked`` (serial, revocation time, reason name)."""
    now = utc_now()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + dt.timedelta(days=days))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            ca_cert.public_key()), critical=False)  # type: ignore[arg-type]
    )
    for serial, when, reason in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
        flag = REASONS.get(reason)
        if flag is not None and flag is not x509.ReasonFlags.unspecified:
            entry = entry.add_extension(x509.CRLReason(flag), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(ca_key, signing_hash(ca_key))


def crl_pem(crl: x509.CertificateRevocationList) -> bytes:
    return crl.public_bytes(serialization.Encoding.PEM)


def parse_crls(data: bytes, where: str) -> list[x509.CertificateRevocationList]:
    """Every CRL in ``data`` (PEM blocks, or one DER CRL); ConfigError naming ``where``."""
    try:
        blocks = _PEM_CRL.findall(data)
        if blocks:
            return [x509.load_pem_x509_crl(block) for block in blocks]
        return [x509.load_der_x509_crl(data)]
    except ValueError as exc:
        raise ConfigError(f"CRL (tls_crl) {where} is not a PEM or DER CRL: {exc}") from None


def _fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def load_revocation(path: str | Path | None,
                    anchors: Sequence[x509.Certificate]) -> RevocationList:
    """The revocation list in ``path`` checked against ``anchors``; empty without a path.

    Raises ConfigError (with what to do) when the file cannot be read or parsed, or holds a
    CRL that none of the trusted CA certificates signed: a process told to check revocation
    must not quietly run without it.
    """
    if path is None or str(path) == "":
        return RevocationList()
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CRL_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"CRL (tls_crl) {path} does not exist: copy the CA's crl.pem there "
                          "(`orch ca crl --dir DIR` writes DIR/crl.pem; Puppet keeps "
                          "ssl/crl.pem), or unset tls_crl") from None
    except OSError as exc:
        raise ConfigError(f"cannot read CRL (tls_crl) {path}: {exc.strerror}") from None
    if len(data) > MAX_CRL_BYTES:
        raise ConfigError(f"CRL (tls_crl) {path} is larger than {MAX_CRL_BYTES} bytes")
    revoked: dict[str, set[int]] = {}
    now = utc_now()
    due = math.inf
    for crl in parse_crls(data, str(path)):
        signer = next((a for a in anchors if a.subject == crl.issuer
                       and crl.is_signature_valid(a.public_key())),  # type: ignore[arg-type]
                      None)
        if signer is None:
            raise ConfigError(f"CRL (tls_crl) {path} was not signed by a trusted CA (it names "
                              f"issuer {crl.issuer.rfc4514_string()!r}); use the CRL of the "
                              "CA in tls_ca")
        next_update = getattr(crl, "next_update_utc", None) or (
            crl.next_update.replace(tzinfo=dt.UTC) if crl.next_update else None)
        if next_update is not None:
            due = min(due, next_update.timestamp())
        if next_update is not None and next_update < now:
            log.warning("CRL %s (issuer %s) was due for renewal at %s; using it anyway — "
                        "publish a new one (`orch ca crl`)", path, crl.issuer.rfc4514_string(),
                        format_time(next_update))
        revoked.setdefault(_fingerprint(signer), set()).update(r.serial_number for r in crl)
    state = "crl:" + hashlib.sha256(data).hexdigest()
    return RevocationList({k: frozenset(v) for k, v in revoked.items()}, state, str(path),
                          due)
