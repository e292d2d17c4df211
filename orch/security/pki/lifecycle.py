"""What happens to certificates after ``issue``: revocation, the CRL, renewal, expiry.

Why a module of its own: these operations read and change the CA's ledger
(:mod:`orch.security.pki.ledger`) and write the CRL (:mod:`orch.security.pki.revocation`),
where :mod:`orch.security.pki.store` only creates files.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from orch.security.pki.certs import (
    LEAF_ROLES,
    format_time,
    not_after,
    not_before,
    sans_of,
    utc_now,
)
from orch.security.pki.files import PUBLIC_MODE, write_file
from orch.security.pki.keys import PKIError
from orch.security.pki.ledger import REVOKED, Ledger, Record
from orch.security.pki.revocation import REASONS, build_crl, crl_pem
from orch.security.pki.store import (
    CAPaths,
    IssuedCert,
    current_certificate,
    issue,
    list_issued,
    load_ca,
)

log = logging.getLogger(__name__)

#: How long a CRL written by ``orch ca crl``/``revoke`` is announced as current.
DEFAULT_CRL_DAYS = 30
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "": 86400}


def parse_duration(text: str) -> dt.timedelta:
    """``30d``, ``12h``, ``2w``, ``90m``, ``45s``, or a plain number of days."""
    match = _DURATION.match(text)
    if match is None:
        raise PKIError(f"{text!r} is not a duration: use a number and a unit, e.g. 30d, 12h, 2w")
    return dt.timedelta(seconds=float(match.group(1)) * _UNIT[match.group(2)])


@dataclass(frozen=True)
class CRLWritten:
    """What ``write_crl`` produced."""

    path: str
    number: int
    revoked: int
    next_update: str


def write_crl(directory: str | os.PathLike[str], days: int = DEFAULT_CRL_DAYS) -> CRLWritten:
    """Write ``DIR/crl.pem``: every revoked serial of the ledger, signed by the CA, with the
    next CRL number. Nodes and clients read it from where their ``tls_crl`` points."""
    if days <= 0:
        raise PKIError("a CRL must be valid for at least 1 day")
    paths = CAPaths(Path(directory))
    ca_cert, ca_key = load_ca(paths.root)
    ledger = Ledger.load(paths.root)
    entries = [(int(r.serial, 16), _parse_time(r.revoked_at), r.reason or "unspecified")
               for r in ledger.revoked()]
    ledger.crl_number += 1
    crl = build_crl(ca_cert, ca_key, entries, ledger.crl_number, days)
    try:
        write_file(paths.crl, crl_pem(crl), PUBLIC_MODE, force=True)
    except OSError as exc:
        raise PKIError(f"cannot write {paths.crl}: {exc.strerror}") from None
    ledger.save()
    log.info("wrote CRL %d (%d revoked) to %s", ledger.crl_number, len(entries), paths.crl)
    return CRLWritten(str(paths.crl), ledger.crl_number, len(entries),
                      format_time(utc_now() + dt.timedelta(days=days)))


def _parse_time(text: str | None) -> dt.datetime:
    if not text:
        return utc_now()
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def _one(ledger: Ledger, paths: CAPaths, name_or_serial: str, role: str | None) -> Record:
    """The ledger record ``name_or_serial`` means, adopting current files the ledger does
    not know yet (certificates issued before the ledger existed)."""
    for each in LEAF_ROLES:
        if role not in (None, each):
            continue
        cert = current_certificate(paths.issued(each, name_or_serial)[0])
        if cert is not None:
            ledger.add(cert, each)
    found = ledger.find(name_or_serial, role)
    if not found:
        raise PKIError(f"no certificate named or numbered {name_or_serial!r} was issued from "
                       f"{paths.root}; see `orch ca list --dir {paths.root}`")
    current = [r for r in found if r.state != "replaced"] if len(found) > 1 else found
    roles = {r.role for r in found}
    if len(roles) > 1:
        raise PKIError(f"{name_or_serial!r} names certificates of several roles "
                       f"({', '.join(sorted(roles))}); say which with --node, --client or "
                       "--server, or give the serial")
    if len(current) != 1:
        serials = ", ".join(r.serial for r in found)
        raise PKIError(f"{name_or_serial!r} names several certificates ({serials}); give the "
                       "serial of the one to revoke")
    return current[0]


def revoke(directory: str | os.PathLike[str], name_or_serial: str, *,
           role: str | None = None, reason: str = "unspecified",
           crl_days: int = DEFAULT_CRL_DAYS) -> tuple[Record, CRLWritten]:
    """Revoke a certificate by name (its current one) or by serial, and rewrite the CRL.

    A name that has an old (replaced) certificate and a current one revokes the current
    one; revoke the old one by its serial.
    """
    if reason not in REASONS:
        raise PKIError(f"unknown reason {reason!r}; choose one of {', '.join(REASONS)}")
    paths = CAPaths(Path(directory))
    load_ca(paths.root)
    ledger = Ledger.load(paths.root)
    record = _one(ledger, paths, name_or_serial, role)
    if record.state == REVOKED:
        raise PKIError(f"{record.role} certificate {record.name!r} serial {record.serial} was "
                       f"already revoked at {record.revoked_at}")
    record = ledger.set_state(record.serial, REVOKED, revoked_at=format_time(utc_now()),
                              reason=reason)
    ledger.save()
    log.info("revoked %s certificate %r serial %s", record.role, record.name, record.serial)
    return record, write_crl(paths.root, crl_days)


def renew(directory: str | os.PathLike[str], name: str, *, role: str | None = None,
          days: int | None = None) -> IssuedCert:
    """A new certificate and key for ``name``, same role and names, replacing the current
    one (which is kept as ``replaced`` and stays valid until it expires or is revoked)."""
    paths = CAPaths(Path(directory))
    roles = [r for r in LEAF_ROLES if role in (None, r) and paths.issued(r, name)[0].exists()]
    if not roles:
        raise PKIError(f"no current certificate named {name!r} in {paths.root}; issue one "
                       f"with `orch ca issue --dir {paths.root} --node|--client|--server "
                       f"{name}`")
    if len(roles) > 1:
        raise PKIError(f"{name!r} has a certificate of each role {', '.join(roles)}; say "
                       "which with --node, --client or --server")
    old = current_certificate(paths.issued(roles[0], name)[0])
    if old is None:
        raise PKIError(f"cannot read the current certificate of {name!r}; issue a new one "
                       "with `orch ca issue ... --force`")
    if days is None:
        lifetime = not_after(old) - not_before(old)
        days = max(1, round(lifetime.total_seconds() / 86400))
    extra = [s for s in sans_of(old) if s != f"DNS:{name}"]
    return issue(paths.root, name, roles[0], days=days, force=True, sans=extra)


def expiring(directory: str | os.PathLike[str], within: dt.timedelta) -> list[IssuedCert]:
    """Current (valid) certificates that expire within ``within`` from now, or already did."""
    horizon = format_time(utc_now() + within)
    return [c for c in list_issued(directory)
            if c.state == "valid" and not c.error and c.not_after <= horizon
            and Path(c.cert_path).parent.parent.name == "issued"]
