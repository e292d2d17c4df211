"""A small certificate authority for orch, and the loading of a process's credentials.

Why orch has its own CA: every request is signed by a *client* certificate and every reply by
a *node* certificate, and a server must be able to tell the two apart without any database.
``orch ca`` therefore issues certificates that carry their role in a private, non-critical
X.509 extension (:data:`ROLE_OID`). Fleets managed by Puppet need no new PKI at all: the
Puppet CA and each node's Puppet certificate are adopted as they are (see
:func:`resolve_credential_paths`), and their role comes from the certificate name
(:func:`effective_role`).

This module holds no CLI code (that is :mod:`orch.cli.ca`) and no message handling (that is
:mod:`orch.security.x509`). Its pieces:

* in-memory: :func:`generate_key`, :func:`create_ca`, :func:`issue_certificate`,
  :func:`sign`, :func:`verify_signature`, :func:`certificate_role`, :func:`effective_role`;
* on disk, the CA directory (:func:`init_ca`, :func:`issue`, :func:`list_issued`)::

      DIR/ca.pem                       CA certificate             0644
      DIR/ca.key                       CA private key (PKCS#8)    0600
      DIR/issued/node/<name>.pem       node certificate           0644
      DIR/issued/node/<name>.key       its private key            0600
      DIR/issued/client/<name>.pem     client certificate         0644
      DIR/issued/client/<name>.key     its private key            0600

  Private keys are created with ``os.open(..., 0o600)`` in the target directory and then
  linked (or, with ``force``, renamed) into place, so a key is never readable by anyone else,
  not even for an instant, and never half-written;
* :func:`load_credentials` — the (certificate, private key, CA certificates) a process uses,
  from explicit ``tls_*`` paths or a Puppet ``ssldir``, with errors that say what to do.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fnmatch
import functools
import hashlib
import json
import logging
import os
import secrets
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from orch.core import credentials
from orch.core.credentials import CredentialPaths
from orch.core.errors import ConfigError, OrchError
from orch.core.protocol import valid_name

if TYPE_CHECKING:
    from orch.core.config import Settings

log = logging.getLogger(__name__)

#: The orch role extension: a UUID-based OID (ITU-T X.667, ``2.25.<uuid>``, which needs no
#: registration) plus ``.1``. Its value is a DER UTF8String: ``ca``, ``node`` or ``client``.
#: It is non-critical so that TLS stacks (the broker, OpenSSL) that do not know it still accept
#: the certificate for broker TLS; only orch gives it meaning.
ROLE_OID = x509.ObjectIdentifier("2.25.288075872599121521769374460930241633473.1")
ROLE_CA, ROLE_NODE, ROLE_CLIENT = "ca", "node", "client"
#: Roles a leaf certificate can have (and the sub-directories of ``DIR/issued``).
LEAF_ROLES = (ROLE_NODE, ROLE_CLIENT)
KEY_TYPES = ("ed25519", "rsa", "ecdsa")
RSA_SIZES = (2048, 3072, 4096)
DEFAULT_RSA_BITS = 3072
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

SigningKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | rsa.RSAPublicKey | ec.EllipticCurvePublicKey

_PUBLIC_MODE = 0o644
_PRIVATE_MODE = 0o600
_DIR_MODE = 0o700


class PKIError(OrchError):
    """A CA operation failed (missing CA, file exists, unreadable file); the message says why."""


# -- keys and signatures --------------------------------------------------------------------


def generate_key(key_type: str = "ed25519", rsa_bits: int = DEFAULT_RSA_BITS) -> SigningKey:
    """A new private key. Ed25519 is the default: small certificates, fast signatures."""
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if key_type == "rsa":
        if rsa_bits not in RSA_SIZES:
            raise PKIError(f"RSA keys must have {', '.join(map(str, RSA_SIZES))} bits, "
                           f"not {rsa_bits}")
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    if key_type == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    raise PKIError(f"unknown key type {key_type!r}; choose one of {', '.join(KEY_TYPES)}")


def key_type_of(key: SigningKey | PublicKey | Any) -> str:
    """A short description of a key (``ed25519``, ``rsa-3072``, ``ecdsa-secp256r1``)."""
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"rsa-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"ecdsa-{key.curve.name}"
    return type(key).__name__


def _hash_for(key: SigningKey) -> hashes.SHA256 | None:
    """The digest certificates are signed with: none for Ed25519 (it hashes internally)."""
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def sign(key: SigningKey, data: bytes) -> bytes:
    """Sign ``data``: Ed25519 as is, RSA with PKCS#1 v1.5 + SHA-256, ECDSA with SHA-256.

    PKCS#1 v1.5 (not PSS) is deterministic and what MCollective's and Choria's RSA signatures
    use, so the same key signs the same bytes the same way in every tool.
    """
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    raise PKIError(f"cannot sign with a {key_type_of(key)} key; use ed25519, rsa or ecdsa")


def verify_signature(public_key: Any, signature: bytes, data: bytes) -> bool:
    """True if ``signature`` is ``sign(key, data)`` for the private half of ``public_key``.

    Returns False (never raises) for a wrong signature or an unsupported key type, so that a
    verifier has exactly one failure path to handle.
    """
    try:
        if isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, data)
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        else:
            return False
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


#: Signature checks run through :func:`verifier_for`; ``"auto"`` prefers libsodium (PyNaCl)
#: for Ed25519 when it is installed, ``"cryptography"`` never uses it.
ED25519_BACKENDS = ("auto", "sodium", "cryptography")
_sodium: Any = None  # (ffi, lib) once loaded, False when unavailable


def _load_sodium() -> Any:
    """PyNaCl's compiled libsodium binding, checked once, or False when unusable.

    The cffi module itself (``nacl._sodium``) is used rather than ``nacl.bindings``: it
    imports in 0.4 ms where the wrappers take 4 ms, and a CLI run pays imports on every start.
    A known signature must verify and a damaged one must not before it is trusted.
    """
    global _sodium
    if _sodium is None:
        try:
            from nacl._sodium import ffi, lib  # type: ignore[import-not-found,unused-ignore]

            if lib.sodium_init() < 0:
                raise RuntimeError("sodium_init failed")
            key = ed25519.Ed25519PrivateKey.generate()
            raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                                serialization.PublicFormat.Raw)
            good = key.sign(b"orch")
            bad = bytes([good[0] ^ 1]) + good[1:]
            _sodium = (ffi, lib)
            if not _sodium_verify(raw, good, b"orch") or _sodium_verify(raw, bad, b"orch"):
                raise RuntimeError("libsodium self-test failed")
        except Exception as exc:  # not installed, or a broken build: cryptography does it
            log.debug("libsodium unavailable for Ed25519 (%s); using cryptography", exc)
            _sodium = False
    return _sodium


def _sodium_verify(public_key: bytes, signature: bytes, data: bytes) -> bool:
    """libsodium's ``crypto_sign_open`` over ``signature || data`` (it releases the GIL).

    The length check is essential: ``crypto_sign_open`` takes the first 64 bytes of what it
    is given as the signature, so a shorter signature would borrow bytes of the message.
    """
    if len(signature) != 64 or len(public_key) != 32:
        return False
    ffi, lib = _sodium
    signed = signature + data
    out = ffi.new("unsigned char[]", len(signed))
    out_len = ffi.new("unsigned long long *")
    return bool(lib.crypto_sign_open(out, out_len, signed, len(signed), public_key) == 0)


Verifier = Callable[[bytes, bytes], bool]


def verifier_for(public_key: Any, backend: str = "auto") -> Verifier:
    """A function ``(signature, data) -> bool`` for ``public_key``, the fastest available.

    Same contract as :func:`verify_signature` (False, never an exception, for anything
    wrong). For Ed25519, libsodium through PyNaCl verifies about twice as fast as
    ``cryptography``'s OpenSSL path on this project's machines (bench/test_bench_verify.py
    prints both), so ``auto`` uses it when installed; every other key type, and
    ``backend="cryptography"``, goes through :func:`verify_signature`.
    """
    if backend not in ED25519_BACKENDS:
        raise ValueError(f"unknown Ed25519 backend {backend!r}; choose one of "
                         f"{', '.join(ED25519_BACKENDS)}")
    if isinstance(public_key, ed25519.Ed25519PublicKey) and backend != "cryptography":
        if _load_sodium():
            raw = public_key.public_bytes(serialization.Encoding.Raw,
                                          serialization.PublicFormat.Raw)
            return functools.partial(_sodium_verify, raw)
        if backend == "sodium":
            raise ValueError("the sodium Ed25519 backend needs PyNaCl (pip install pynacl)")
    return functools.partial(verify_signature, public_key)


def ed25519_verifier(raw: bytes, backend: str = "auto") -> Verifier:
    """:func:`verifier_for` an Ed25519 public key given as its 32 raw bytes."""
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    if backend != "cryptography" and _load_sodium():
        return functools.partial(_sodium_verify, bytes(raw))
    return verifier_for(ed25519.Ed25519PublicKey.from_public_bytes(raw), backend)


# -- certificates ---------------------------------------------------------------------------


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
    for role in (ROLE_CLIENT, ROLE_NODE, ROLE_CA):
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


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _validity(
    days: int, start: dt.datetime | None, end: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime]:
    if days <= 0 and end is None:
        raise PKIError("validity must be at least 1 day")
    begin = start if start is not None else _now() - BACKDATE
    finish = end if end is not None else (start or _now()) + dt.timedelta(days=days)
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
        .sign(key, _hash_for(key))
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
) -> tuple[x509.Certificate, SigningKey]:
    """A new node or client certificate for ``name`` signed by the CA (nothing is written).

    Subject CN and SAN DNS are ``name``. Both roles get extendedKeyUsage clientAuth (every orch
    process connects to the broker as a TLS client); nodes also get serverAuth. The role
    marker extension is what orch itself checks. ``valid_from``/``valid_until`` override the
    default window (now minus :data:`BACKDATE` to now plus ``days``); tests use them to make
    expired and not-yet-valid certificates.
    """
    if role not in LEAF_ROLES:
        raise PKIError(f"role must be 'node' or 'client', not {role!r}")
    if not valid_name(name):
        raise PKIError(f"certificate name {name!r} is not valid: use letters, digits, "
                       "'.', '_' and '-' (not starting with '.')")
    key = key or generate_key(key_type, rsa_bits)
    begin, finish = _validity(days, valid_from, valid_until)
    public = key.public_key()
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    if role == ROLE_NODE:
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
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False)
        .add_extension(role_extension(role), critical=False)
        .sign(ca_key, _hash_for(ca_key))
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


# -- files ----------------------------------------------------------------------------------


def _write_file(path: Path, data: bytes, mode: int, *, force: bool) -> None:
    """Write ``data`` to ``path`` created with ``mode``, all at once or not at all.

    The data goes to a fresh temporary file in the same directory, created by ``os.open``
    with ``mode`` and O_EXCL (so a private key is 0600 from its first byte; nothing is
    chmod-ed afterwards), then is hard-linked to ``path`` — which fails if ``path`` exists,
    so nothing is overwritten by accident — or, with ``force``, renamed over it.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if force:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _mkdir(path: Path) -> None:
    try:
        path.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
    except OSError as exc:
        raise PKIError(f"cannot create directory {path}: {exc.strerror}") from None
    if not path.is_dir():
        raise PKIError(f"{path} exists and is not a directory")


@dataclass(frozen=True)
class CAPaths:
    """Where everything lives in a CA directory (see the module docstring)."""

    root: Path

    @property
    def cert(self) -> Path:
        return self.root / "ca.pem"

    @property
    def key(self) -> Path:
        return self.root / "ca.key"

    def issued_dir(self, role: str) -> Path:
        return self.root / "issued" / role

    def issued(self, role: str, name: str) -> tuple[Path, Path]:
        """(certificate, key) paths of ``name`` issued with ``role``."""
        folder = self.issued_dir(role)
        return folder / f"{name}.pem", folder / f"{name}.key"


@dataclass(frozen=True)
class IssuedCert:
    """What ``orch ca list`` shows about one certificate (and ``issue`` returns)."""

    name: str
    role: str
    serial: str
    not_before: str
    not_after: str
    fingerprint: str
    key_type: str
    cert_path: str
    key_path: str | None
    expired: bool = False
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _describe(cert: x509.Certificate, role: str, cert_path: Path, key_path: Path | None,
              now: dt.datetime | None = None) -> IssuedCert:
    try:
        marked = certificate_role(cert) or f"{role} (unmarked)"
    except ValueError:
        marked = f"{role} (damaged marker)"
    return IssuedCert(
        name=common_name(cert) or cert_path.stem,
        role=marked,
        serial=format(cert.serial_number, "x"),
        not_before=format_time(not_before(cert)),
        not_after=format_time(not_after(cert)),
        fingerprint=fingerprint(cert),
        key_type=key_type_of(cert.public_key()),
        cert_path=str(cert_path),
        key_path=str(key_path) if key_path is not None and key_path.exists() else None,
        expired=not_after(cert) < (now or _now()),
    )


def init_ca(
    directory: str | os.PathLike[str],
    *,
    common_name: str | None = None,
    key_type: str = "ed25519",
    rsa_bits: int = DEFAULT_RSA_BITS,
    days: int = DEFAULT_CA_DAYS,
    force: bool = False,
) -> IssuedCert:
    """Create a CA in ``directory`` (``ca.pem`` 0644, ``ca.key`` 0600).

    Refuses when a CA (either file) is already there unless ``force``: replacing a CA makes
    every certificate it issued worthless, so it must never happen by accident.
    """
    paths = CAPaths(Path(directory))
    if not force:
        existing = [p for p in (paths.cert, paths.key) if p.exists()]
        if existing:
            raise PKIError(f"a CA already exists in {paths.root} ({existing[0].name}); "
                           "pass --force to replace it (every certificate it issued will "
                           "stop working)")
    name = common_name or (f"orch CA {socket.gethostname().split('.')[0] or 'localhost'} "
                           f"{_now():%Y-%m-%d}")
    cert, key = create_ca(name, key_type, days=days, rsa_bits=rsa_bits)
    _mkdir(paths.root)
    _store_pair(paths.cert, certificate_pem(cert), paths.key, private_key_pem(key), force)
    log.info("created CA %r in %s", name, paths.root)
    return _describe(cert, ROLE_CA, paths.cert, paths.key)


def _store_pair(cert_path: Path, cert_data: bytes, key_path: Path, key_data: bytes,
                force: bool) -> None:
    """Write a key (0600) and its certificate (0644); undo the key if the certificate fails."""
    try:
        _write_file(key_path, key_data, _PRIVATE_MODE, force=force)
    except FileExistsError:
        raise PKIError(f"{key_path} already exists; pass --force to replace it") from None
    except OSError as exc:
        raise PKIError(f"cannot write {key_path}: {exc.strerror}") from None
    try:
        _write_file(cert_path, cert_data, _PUBLIC_MODE, force=force)
    except OSError as exc:
        if not force:
            with contextlib.suppress(OSError):
                key_path.unlink()
        if isinstance(exc, FileExistsError):
            raise PKIError(f"{cert_path} already exists; pass --force to replace it") from None
        raise PKIError(f"cannot write {cert_path}: {exc.strerror}") from None


def load_ca(directory: str | os.PathLike[str]) -> tuple[x509.Certificate, SigningKey]:
    """The CA certificate and key of a CA directory, with errors that say what to do."""
    paths = CAPaths(Path(directory))
    if not paths.cert.exists() and not paths.key.exists():
        raise PKIError(f"no CA in {paths.root} (no ca.pem/ca.key); create one with "
                       f"`orch ca init --dir {paths.root}`")
    try:
        cert = load_certificate_file(paths.cert, "CA certificate")
        key = load_private_key_file(paths.key, "CA private key")
    except ConfigError as exc:
        raise PKIError(str(exc)) from None
    if not _same_public_key(cert.public_key(), key.public_key()):
        raise PKIError(f"{paths.key} is not the key of {paths.cert}")
    return cert, key


def issue(
    directory: str | os.PathLike[str],
    name: str,
    role: str,
    *,
    days: int = DEFAULT_CERT_DAYS,
    key_type: str | None = None,
    rsa_bits: int | None = None,
    force: bool = False,
    valid_from: dt.datetime | None = None,
    valid_until: dt.datetime | None = None,
) -> IssuedCert:
    """Issue a node or client certificate into ``DIR/issued/<role>/<name>.pem`` and ``.key``.

    ``key_type`` defaults to the CA's own key type, ``rsa_bits`` to the CA's RSA key size
    (or 3072). Refuses to replace an existing certificate or key of the
    same role and name unless ``force``.
    """
    if role not in LEAF_ROLES:
        raise PKIError(f"role must be 'node' or 'client', not {role!r}")
    if not valid_name(name):
        raise PKIError(f"certificate name {name!r} is not valid: use letters, digits, "
                       "'.', '_' and '-' (not starting with '.')")
    paths = CAPaths(Path(directory))
    ca_cert, ca_key = load_ca(paths.root)
    cert_path, key_path = paths.issued(role, name)
    if not force:
        for path in (cert_path, key_path):
            if path.exists():
                raise PKIError(f"a {role} certificate for {name!r} already exists ({path}); "
                               "pass --force to replace it")
    other = ROLE_CLIENT if role == ROLE_NODE else ROLE_NODE
    if paths.issued(other, name)[0].exists():
        log.warning("a %s certificate named %r exists too; the two are distinct", other, name)
    if key_type is None:
        key_type = key_type_of(ca_key).split("-")[0]
    if rsa_bits is None:
        ca_bits = ca_key.key_size if isinstance(ca_key, rsa.RSAPrivateKey) else 0
        rsa_bits = ca_bits if ca_bits in RSA_SIZES else DEFAULT_RSA_BITS
    cert, key = issue_certificate(ca_cert, ca_key, name, role, days=days, key_type=key_type,
                                  rsa_bits=rsa_bits, valid_from=valid_from,
                                  valid_until=valid_until)
    _mkdir(paths.issued_dir(role).parent)  # each level 0700, not just the last one
    _mkdir(paths.issued_dir(role))
    _store_pair(cert_path, certificate_pem(cert), key_path, private_key_pem(key), force)
    log.info("issued %s certificate %r serial %x", role, name, cert.serial_number)
    return _describe(cert, role, cert_path, key_path)


def list_issued(directory: str | os.PathLike[str]) -> list[IssuedCert]:
    """Every certificate under ``DIR/issued``, nodes first, by name.

    A file that cannot be read or parsed is listed with ``error`` set rather than hiding the
    rest of the list.
    """
    paths = CAPaths(Path(directory))
    if not paths.cert.exists():
        raise PKIError(f"no CA in {paths.root} (no ca.pem); create one with "
                       f"`orch ca init --dir {paths.root}`")
    found: list[IssuedCert] = []
    now = _now()
    for role in LEAF_ROLES:
        folder = paths.issued_dir(role)
        if not folder.is_dir():
            continue
        for cert_path in sorted(folder.glob("*.pem")):
            key_path = cert_path.with_suffix(".key")
            try:
                cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
                found.append(_describe(cert, role, cert_path, key_path, now))
            except (OSError, ValueError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else str(exc)
                found.append(IssuedCert(
                    name=cert_path.stem, role=role, serial="", not_before="", not_after="",
                    fingerprint="", key_type="", cert_path=str(cert_path),
                    key_path=str(key_path) if key_path.exists() else None,
                    error=f"cannot read: {reason}"))
    return found


# -- loading a process's credentials --------------------------------------------------------


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


def _same_public_key(a: Any, b: Any) -> bool:
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
    if not _same_public_key(cert.public_key(), key.public_key()):
        raise ConfigError(f"private key {paths.key} does not belong to certificate "
                          f"{paths.cert} ({name!r}); use the .key issued with it")
    if chains_to(cert, ca) is None:
        raise ConfigError(
            f"certificate {paths.cert} ({name!r}) was not issued by the CA in {paths.ca} "
            f"(it names issuer {cert.issuer.rfc4514_string()!r}); use the ca.pem of the CA "
            "that issued it, or issue a new certificate from this CA")
    skew = dt.timedelta(seconds=settings.clock_skew if clock_skew is None else clock_skew)
    now = _now()
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


def issued_json(certs: Iterable[IssuedCert]) -> str:
    """``orch ca list --json``: a JSON list, one object per certificate."""
    return json.dumps([c.to_json() for c in certs], indent=2)
