"""The CA directory on disk: creating a CA, issuing certificates into it, listing them::

    DIR/ca.pem                       CA certificate             0644
    DIR/ca.key                       CA private key (PKCS#8)    0600
    DIR/issued/node/<name>.pem       node certificate           0644
    DIR/issued/node/<name>.key       its private key            0600
    DIR/issued/client/<name>.pem     client certificate         0644
    DIR/issued/client/<name>.key     its private key            0600
    DIR/issued/server/<name>.pem     server (broker) certificate 0644
    DIR/issued/server/<name>.key     its private key            0600
    DIR/index.json                   every serial ever issued, with its state (the ledger)
    DIR/archive/<serial>.pem         certificates that were replaced
    DIR/crl.pem                      the certificate revocation list (``orch ca crl``)

Private keys are created with ``os.open(..., 0o600)`` in the target directory and then
linked (or, with ``force``, renamed) into place, so a key is never readable by anyone else,
not even for an instant, and never half-written.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from orch.core.errors import ConfigError
from orch.core.protocol import valid_name
from orch.security.pki.certs import (
    DEFAULT_CA_DAYS,
    DEFAULT_CERT_DAYS,
    LEAF_ROLES,
    LOCALHOST_SANS,
    ROLE_CA,
    ROLE_SERVER,
    certificate_pem,
    certificate_role,
    common_name,
    create_ca,
    fingerprint,
    format_time,
    issue_certificate,
    not_after,
    not_before,
    private_key_pem,
    sans_of,
    utc_now,
)
from orch.security.pki.credentials import (
    load_certificate_file,
    load_private_key_file,
    same_public_key,
)
from orch.security.pki.files import PRIVATE_MODE, PUBLIC_MODE, mkdir, write_file
from orch.security.pki.keys import (
    DEFAULT_RSA_BITS,
    RSA_SIZES,
    PKIError,
    SigningKey,
    key_type_of,
)
from orch.security.pki.ledger import REVOKED, VALID, Ledger, Record

log = logging.getLogger(__name__)



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

    @property
    def archive(self) -> Path:
        return self.root / "archive"

    @property
    def crl(self) -> Path:
        return self.root / "crl.pem"


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
    #: ``valid``, ``replaced`` or ``revoked`` (see :mod:`orch.security.pki.ledger`).
    state: str = VALID
    revoked_at: str | None = None
    #: Its subjectAltNames (``DNS:…``, ``IP:…``).
    sans: tuple[str, ...] = ()

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
        expired=not_after(cert) < (now or utc_now()),
        sans=tuple(sans_of(cert)),
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
                           f"{utc_now():%Y-%m-%d}")
    cert, key = create_ca(name, key_type, days=days, rsa_bits=rsa_bits)
    mkdir(paths.root)
    _store_pair(paths.cert, certificate_pem(cert), paths.key, private_key_pem(key), force)
    log.info("created CA %r in %s", name, paths.root)
    return _describe(cert, ROLE_CA, paths.cert, paths.key)


def _store_pair(cert_path: Path, cert_data: bytes, key_path: Path, key_data: bytes,
                force: bool) -> None:
    """Write a key (0600) and its certificate (0644); undo the key if the certificate fails."""
    try:
        write_file(key_path, key_data, PRIVATE_MODE, force=force)
    except FileExistsError:
        raise PKIError(f"{key_path} already exists; pass --force to replace it") from None
    except OSError as exc:
        raise PKIError(f"cannot write {key_path}: {exc.strerror}") from None
    try:
        write_file(cert_path, cert_data, PUBLIC_MODE, force=force)
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
    if not same_public_key(cert.public_key(), key.public_key()):
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
    sans: Sequence[str] = (),
) -> IssuedCert:
    """Issue a node, client or server certificate into ``DIR/issued/<role>/<name>.pem`` and
    ``.key``, and record it in the ledger.

    ``key_type`` defaults to the CA's own key type, ``rsa_bits`` to the CA's RSA key size
    (or 3072). Refuses to replace an existing certificate or key of the
    same role and name unless ``force``; a replaced certificate is kept in the ledger (state
    ``replaced``, PEM in ``DIR/archive``) — it stays valid until it expires or is revoked.
    ``sans`` adds subjectAltNames (``DNS:name``, ``IP:address``); ``--server localhost``
    gets ``IP:127.0.0.1`` and ``IP:::1`` without asking.
    """
    if role not in LEAF_ROLES:
        raise PKIError(f"role must be 'node', 'client' or 'server', not {role!r}")
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
    for other in LEAF_ROLES:
        if other != role and paths.issued(other, name)[0].exists():
            log.warning("a %s certificate named %r exists too; the two are distinct",
                        other, name)
    if role == ROLE_SERVER and name == "localhost":
        sans = [*sans, *LOCALHOST_SANS]
    ledger = Ledger.load(paths.root)
    previous = current_certificate(cert_path) if force else None
    if key_type is None:
        key_type = key_type_of(ca_key).split("-")[0]
    if rsa_bits is None:
        ca_bits = ca_key.key_size if isinstance(ca_key, rsa.RSAPrivateKey) else 0
        rsa_bits = ca_bits if ca_bits in RSA_SIZES else DEFAULT_RSA_BITS
    cert, key = issue_certificate(ca_cert, ca_key, name, role, days=days, key_type=key_type,
                                  rsa_bits=rsa_bits, valid_from=valid_from,
                                  valid_until=valid_until, sans=sans)
    mkdir(paths.issued_dir(role).parent)  # each level 0700, not just the last one
    mkdir(paths.issued_dir(role))
    if previous is not None:
        _archive(paths, ledger, previous, role)
    _store_pair(cert_path, certificate_pem(cert), key_path, private_key_pem(key), force)
    ledger.add(cert, role)
    ledger.save()
    log.info("issued %s certificate %r serial %x", role, name, cert.serial_number)
    return _describe(cert, role, cert_path, key_path)


def current_certificate(cert_path: Path) -> x509.Certificate | None:
    """The certificate now at ``cert_path`` (about to be replaced), None if none/unreadable."""
    try:
        return x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (OSError, ValueError):
        return None


def _archive(paths: CAPaths, ledger: Ledger, cert: x509.Certificate, role: str) -> None:
    """Keep a certificate that is being replaced: its PEM in the archive, ``replaced`` (or
    still ``revoked``) in the ledger."""
    mkdir(paths.archive)
    serial = format(cert.serial_number, "x")
    try:
        write_file(paths.archive / f"{serial}.pem", certificate_pem(cert), PUBLIC_MODE,
                    force=True)
    except OSError as exc:
        raise PKIError(f"cannot keep the replaced certificate in {paths.archive}: "
                       f"{exc.strerror}") from None
    record = ledger.add(cert, role)
    if record.state != REVOKED:
        ledger.set_state(serial, "replaced")


def list_issued(directory: str | os.PathLike[str]) -> list[IssuedCert]:
    """Every certificate under ``DIR/issued`` (nodes, clients, servers, by name), then every
    replaced or revoked one the ledger remembers, each with its state.

    A file that cannot be read or parsed is listed with ``error`` set rather than hiding the
    rest of the list.
    """
    paths = CAPaths(Path(directory))
    if not paths.cert.exists():
        raise PKIError(f"no CA in {paths.root} (no ca.pem); create one with "
                       f"`orch ca init --dir {paths.root}`")
    found: list[IssuedCert] = []
    now = utc_now()
    ledger = Ledger.load(paths.root)
    for role in LEAF_ROLES:
        folder = paths.issued_dir(role)
        if not folder.is_dir():
            continue
        for cert_path in sorted(folder.glob("*.pem")):
            key_path = cert_path.with_suffix(".key")
            try:
                cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
                found.append(_with_state(_describe(cert, role, cert_path, key_path, now),
                                         ledger))
            except (OSError, ValueError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else str(exc)
                found.append(IssuedCert(
                    name=cert_path.stem, role=role, serial="", not_before="", not_after="",
                    fingerprint="", key_type="", cert_path=str(cert_path),
                    key_path=str(key_path) if key_path.exists() else None,
                    error=f"cannot read: {reason}"))
    current = {c.serial for c in found}
    for record in sorted(ledger.records.values(), key=lambda r: (r.role, r.name, r.not_before)):
        if record.serial not in current:
            found.append(_from_record(record, paths, now))
    return found


def _with_state(info: IssuedCert, ledger: Ledger) -> IssuedCert:
    record = ledger.records.get(info.serial)
    if record is None or record.state == VALID:
        return info
    return replace(info, state=record.state, revoked_at=record.revoked_at)


def _from_record(record: Record, paths: CAPaths, now: dt.datetime) -> IssuedCert:
    """A certificate that is no longer the current one of its name, from the ledger."""
    archived = paths.archive / f"{record.serial}.pem"
    expires = dt.datetime.strptime(record.not_after, "%Y-%m-%dT%H:%M:%SZ").replace(
        tzinfo=dt.UTC)
    return IssuedCert(
        name=record.name, role=record.role, serial=record.serial,
        not_before=record.not_before, not_after=record.not_after,
        fingerprint=record.fingerprint, key_type="",
        cert_path=str(archived) if archived.exists() else "", key_path=None,
        expired=expires < now, state=record.state, revoked_at=record.revoked_at)


def issued_json(certs: Iterable[IssuedCert]) -> str:
    """``orch ca list --json``: a JSON list, one object per certificate."""
    return json.dumps([c.to_json() for c in certs], indent=2)
