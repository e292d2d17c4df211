"""Certificates in memory: building CA and leaf certificates, and reading what they say.

Why orch marks roles: every request is signed by a *client* certificate and every reply by
a *node* certificate, and a server must be able to tell the two apart without any database.
``orch ca`` therefore issues certificates that carry their role in a private, non-critical
X.509 extension (:data:`ROLE_OID`); a foreign CA's certificates (Puppet's) get their role
from their name (:func:`effective_role`).
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from orch.core.protocol import valid_name
from orch.security.pki.keys import (
    DEFAULT_RSA_BITS,
    PKIError,
    SigningKey,
    generate_key,
    key_type_of,
)

#: The orch role extension: a UUID-based OID (ITU-T X.667, ``2.25.<uuid>``, which needs no
#: registration) plus ``.1``. Its value is a DER UTF8String: ``ca``, ``node`` or ``client``.
#: It is non-critical so that TLS stacks (the broker, OpenSSL) that do not know it still accept
#: the certificate for broker TLS; only orch gives it meaning.
ROLE_OID = x509.ObjectIdentifier("2.25.288075872599121521769374460930241633473.1")
ROLE_CA, ROLE_NODE, ROLE_CLIENT, ROLE_SERVER = "ca", "node", "client", "server"
#: Roles a leaf certificate can have (and the sub-directories of ``DIR/issued``). A
#: ``server`` certificate is for a broker (or any TLS server): it carries serverAuth only and
#: orch never accepts it as the signer of a request or a reply.
LEAF_ROLES = (ROLE_NODE, ROLE_CLIENT, ROLE_SERVER)
#: Names ``orch ca issue --server localhost`` adds on its own, so that a client connecting to
#: ``amqps://localhost`` or ``amqps://127.0.0.1`` (kombu connects by address) passes the
#: host-name check without any ``--san``.
LOCALHOST_SANS = ("IP:127.0.0.1", "IP:::1")
DEFAULT_CA_DAYS = 3650
DEFAULT_CERT_DAYS = 365
#: New certificates start this long in the past so that a node whose clock is a little behind
#: the CA's accepts them at once (Puppet backdates by a day for the same reason).
BACKDATE = dt.timedelta(hours=1)
#: For a CA orch did not create (Puppet's): certificate names matching one of these patterns are
#: clients, every other certificate is a node. ``*.mcollective`` is the convention MCollective
#: and Choria users already follow (``puppet cert generate alice.mcollective``).
DEFAULT_CLIENT_CERTNAMES = ("*.mcollective",)
#: ``load_credentials`` warns when the process's own certificate expires sooner than this.
EXPIRY_WARNING = dt.timedelta(days=14)


def signing_hash(key: SigningKey) -> hashes.SHA256 | None:
    """The digest certificates are signed with: none for Ed25519 (it hashes internally)."""
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()



def _utf8string(text: str) -> bytes:
    """DER encoding of a short UTF8String (the role extension's value)."""
    raw = text.encode()
    if len(raw) > 127:
        raise ValueError("role value too long")
    return bytes([0x0C, len(raw)]) + raw


def role_extension(role: str) -> x509.UnrecognizedExtension:
    """The extension that marks a certificate as orch ``ca``, ``node`` or ``client``."""
    if role not in (ROLE_CA, *LEAF_ROLES):
        raise PKIError(f"unknown role {role!r}")
    return x509.UnrecognizedExtension(ROLE_OID, _utf8string(role))


def certificate_role(cert: x509.Certificate) -> str | None:
    """The role written in ``cert``'s orch extension, or None when it has none.

    Raises ValueError when the extension is present but is not exactly one of the known
    values: a damaged marker must never be mistaken for an absent one.
    """
    try:
        ext = cert.extensions.get_extension_for_oid(ROLE_OID)
    except x509.ExtensionNotFound:
        return None
    value = ext.value
    raw = value.value if isinstance(value, x509.UnrecognizedExtension) else b""
    for role in (ROLE_CLIENT, ROLE_NODE, ROLE_SERVER, ROLE_CA):
        if raw == _utf8string(role):
            return role
    raise ValueError("the orch role extension has an unknown value")


def is_ca_certificate(cert: x509.Certificate) -> bool:
    """True if ``cert`` says it is a CA (basicConstraints CA:TRUE)."""
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def effective_role(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    client_certnames: Sequence[str] = DEFAULT_CLIENT_CERTNAMES,
) -> str | None:
    """The role ``cert`` (issued by ``issuer``) plays: ``client``, ``node``, ``ca`` or None.

    The rule, in order:

    1. a CA certificate (basicConstraints CA:TRUE) is ``ca`` and may sign nothing;
    2. the orch role extension, when present, decides;
    3. under a CA created by ``orch ca`` (its certificate carries the ``ca`` marker) an
       unmarked certificate has no role (None): it was not issued by ``orch ca issue``;
    4. under any other CA (Puppet's), a certificate whose name matches one of
       ``client_certnames`` (fnmatch patterns, default ``*.mcollective``) is a client and every
       other certificate is a node.

    Raises ValueError when the role extension is damaged.
    """
    if is_ca_certificate(cert):
        return ROLE_CA
    marked = certificate_role(cert)
    if marked is not None:
        return marked
    if certificate_role(issuer) == ROLE_CA:
        return None
    name = common_name(cert) or ""
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in client_certnames):
        return ROLE_CLIENT
    return ROLE_NODE


def common_name(cert: x509.Certificate) -> str | None:
    """The subject's first commonName, or None."""
    try:
        attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except ValueError:
        return None
    if not attrs:
        return None
    value = attrs[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 of the DER certificate, lower-case hex: what the audit log records."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def not_before(cert: x509.Certificate) -> dt.datetime:
    """notBefore as an aware UTC datetime (works with cryptography before and after 42)."""
    value = getattr(cert, "not_valid_before_utc", None)
    return value if value is not None else cert.not_valid_before.replace(tzinfo=dt.UTC)


def not_after(cert: x509.Certificate) -> dt.datetime:
    """notAfter as an aware UTC datetime (works with cryptography before and after 42)."""
    value = getattr(cert, "not_valid_after_utc", None)
    return value if value is not None else cert.not_valid_after.replace(tzinfo=dt.UTC)


def format_time(when: dt.datetime) -> str:
    """``2025-01-31T12:00:00Z``: what error messages and ``orch ca list`` show."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_now() -> dt.datetime:
    """Now, as an aware UTC datetime."""
    return dt.datetime.now(dt.UTC)


def _validity(
    days: int, start: dt.datetime | None, end: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime]:
    if days <= 0 and end is None:
        raise PKIError("validity must be at least 1 day")
    begin = start if start is not None else utc_now() - BACKDATE
    finish = end if end is not None else (start or utc_now()) + dt.timedelta(days=days)
    if finish <= begin:
        raise PKIError("a certificate must end after it begins")
    return begin, finish


def create_ca(
    common_name: str = "orch CA",
    key_type: str = "ed25519",
    *,
    days: int = DEFAULT_CA_DAYS,
    rsa_bits: int = DEFAULT_RSA_BITS,
    key: SigningKey | None = None,
    valid_from: dt.datetime | None = None,
    valid_until: dt.datetime | None = None,
) -> tuple[x509.Certificate, SigningKey]:
    """A new self-signed CA certificate and its key (nothing is written to disk).

    The CA carries the orch ``ca`` role marker; that is how a verifier knows that every
    certificate under it must carry a role marker too.
    """
    key = key or generate_key(key_type, rsa_bits)
    begin, finish = _validity(days, valid_from, valid_until)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(begin)
        .not_valid_after(finish)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(role_extension(ROLE_CA), critical=False)
        .sign(key, signing_hash(key))
    )
    return cert, key


def issue_certificate(
    ca_cert: x509.Certificate,
    ca_key: SigningKey,
    name: str,
    role: str,
    *,
    days: int = DEFAULT_CERT_DAYS,
    key_type: str = "ed25519",
    rsa_bits: int = DEFAULT_RSA_BITS,
    key: SigningKey | None = None,
    valid_from: dt.datetime | None = None,
    valid_until: dt.datetime | None = None,
    sans: Sequence[str] = (),
) -> tuple[x509.Certificate, SigningKey]:
    """A new node, client or server certificate for ``name``, signed by the CA (not written).

    Subject CN and SAN DNS are ``name``, plus ``sans`` (``DNS:name`` or ``IP:address``, see
    :func:`parse_sans`). Nodes and clients get extendedKeyUsage clientAuth (every orch
    process connects to the broker as a TLS client); nodes also get serverAuth; servers get
    serverAuth only. The role marker extension is what orch itself checks.
    ``valid_from``/``valid_until`` override the default window (now minus :data:`BACKDATE`
    to now plus ``days``); tests use them to make expired and not-yet-valid certificates.
    """
    if role not in LEAF_ROLES:
        raise PKIError(f"role must be 'node', 'client' or 'server', not {role!r}")
    if not valid_name(name):
        raise PKIError(f"certificate name {name!r} is not valid: use letters, digits, "
                       "'.', '_' and '-' (not starting with '.')")
    alt_names = parse_sans([f"DNS:{name}", *sans])
    key = key or generate_key(key_type, rsa_bits)
    begin, finish = _validity(days, valid_from, valid_until)
    public = key.public_key()
    usages = [] if role == ROLE_SERVER else [ExtendedKeyUsageOID.CLIENT_AUTH]
    if role in (ROLE_NODE, ROLE_SERVER):
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    ca_public = ca_cert.public_key()
    if not isinstance(ca_public, ed25519.Ed25519PublicKey | rsa.RSAPublicKey
                      | ec.EllipticCurvePublicKey):
        raise PKIError(f"unsupported CA key type {key_type_of(ca_public)}")
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(begin)
        .not_valid_after(finish)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False,
                key_encipherment=isinstance(key, rsa.RSAPrivateKey), data_encipherment=False,
                key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False)
        .add_extension(role_extension(role), critical=False)
        .sign(ca_key, signing_hash(ca_key))
    )
    return cert, key


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def private_key_pem(key: SigningKey) -> bytes:
    """Unencrypted PKCS#8 PEM: the daemon must start unattended; file mode protects it."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def chains_to(
    cert: x509.Certificate, anchors: Iterable[x509.Certificate]
) -> x509.Certificate | None:
    """The anchor that directly issued ``cert`` (name and signature checked), or None.

    Every certificate in the trusted CA file is an anchor, so Puppet's chained ``ca.pem``
    (intermediate CA + root) works: node certificates are issued by the intermediate.
    """
    for anchor in anchors:
        if anchor.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(anchor)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            continue
        return anchor
    return None


def parse_sans(values: Iterable[str]) -> list[x509.GeneralName]:
    """``DNS:name`` / ``IP:address`` strings as subjectAltName entries, duplicates dropped.

    Raises PKIError naming the bad value: a typo here would make a broker certificate that
    fails every client's host-name check.
    """
    import ipaddress

    names: list[x509.GeneralName] = []
    for value in values:
        kind, sep, text = value.partition(":")
        kind = kind.strip().upper()
        text = text.strip()
        entry: x509.GeneralName
        if not sep or not text:
            raise PKIError(f"subject alternative name {value!r} must be DNS:NAME or IP:ADDRESS")
        if kind == "DNS":
            if not valid_name(text.replace("*.", "", 1)) or len(text) > 253:
                raise PKIError(f"DNS name {text!r} is not valid")
            entry = x509.DNSName(text)
        elif kind == "IP":
            try:
                entry = x509.IPAddress(ipaddress.ip_address(text))
            except ValueError:
                raise PKIError(f"{text!r} is not an IP address (in {value!r})") from None
        else:
            raise PKIError(f"subject alternative name {value!r} must start with DNS: or IP:")
        if entry not in names:
            names.append(entry)
    return names


def sans_of(cert: x509.Certificate) -> list[str]:
    """``cert``'s subjectAltName entries as ``DNS:…``/``IP:…`` strings (for ``renew``)."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return ([f"DNS:{n}" for n in ext.get_values_for_type(x509.DNSName)]
            + [f"IP:{a}" for a in ext.get_values_for_type(x509.IPAddress)])
