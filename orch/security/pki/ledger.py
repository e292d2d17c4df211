"""The CA's ledger, ``DIR/index.json``: every certificate it issued, whatever became of it.

Why: the files under ``DIR/issued`` are only the *current* certificate of each name, so once
``orch ca issue --force`` or ``orch ca renew`` replaced one, the old serial — still valid, and
perhaps still in use — would be forgotten. The ledger keeps each serial with its state:

* ``valid`` — issued, not replaced, not revoked;
* ``replaced`` — a newer certificate of the same role and name exists (its PEM is kept in
  ``DIR/archive/<serial>.pem``); it stays trusted until it expires or is revoked;
* ``revoked`` — listed in the CRL from then on.

It also holds the number of the last CRL written (CRLs must carry increasing numbers). The
file is rewritten atomically; ``orch ca`` is run by one operator at a time.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from cryptography import x509

from orch.security.pki.certs import common_name, fingerprint, format_time, not_after, not_before
from orch.security.pki.files import PUBLIC_MODE, write_file
from orch.security.pki.keys import PKIError

log = logging.getLogger(__name__)

FORMAT = 1
VALID, REPLACED, REVOKED = "valid", "replaced", "revoked"


@dataclass(frozen=True)
class Record:
    """One issued certificate in the ledger."""

    serial: str
    role: str
    name: str
    not_before: str
    not_after: str
    fingerprint: str
    state: str = VALID
    #: When it was revoked (``2025-01-31T12:00:00Z``) and why (a RFC 5280 reason name).
    revoked_at: str | None = None
    reason: str | None = None

    @classmethod
    def of(cls, cert: x509.Certificate, role: str) -> Record:
        return cls(serial=format(cert.serial_number, "x"), role=role,
                   name=common_name(cert) or "?", not_before=format_time(not_before(cert)),
                   not_after=format_time(not_after(cert)), fingerprint=fingerprint(cert))


@dataclass
class Ledger:
    """``DIR/index.json`` loaded: records by serial, and the last CRL number."""

    path: Path
    records: dict[str, Record]
    crl_number: int = 0

    @classmethod
    def load(cls, root: Path) -> Ledger:
        path = root / "index.json"
        try:
            document = json.loads(path.read_text())
        except FileNotFoundError:
            return cls(path, {})
        except (OSError, ValueError) as exc:
            raise PKIError(f"cannot read the CA's ledger {path}: {exc}; restore it from a "
                           "backup (it lists every certificate issued and revoked)") from None
        try:
            if document.get("format") != FORMAT:
                raise ValueError(f"unknown format {document.get('format')!r}")
            records = {r["serial"]: Record(**r) for r in document["certificates"]}
            number = int(document.get("crl_number", 0))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise PKIError(f"the CA's ledger {path} is damaged ({exc}); restore it from a "
                           "backup") from None
        return cls(path, records, number)

    def save(self) -> None:
        document: dict[str, Any] = {
            "format": FORMAT, "crl_number": self.crl_number,
            "certificates": [asdict(r) for r in self.records.values()]}
        try:
            write_file(self.path, (json.dumps(document, indent=1) + "\n").encode(), PUBLIC_MODE,
                       force=True)
        except OSError as exc:
            raise PKIError(f"cannot write the CA's ledger {self.path}: {exc.strerror}") from None

    def add(self, cert: x509.Certificate, role: str) -> Record:
        record = self.records.get(format(cert.serial_number, "x")) or Record.of(cert, role)
        self.records[record.serial] = record
        return record

    def set_state(self, serial: str, state: str, **changes: Any) -> Record:
        record = replace(self.records[serial], state=state, **changes)
        self.records[serial] = record
        return record

    def revoked(self) -> Iterator[Record]:
        return (r for r in self.records.values() if r.state == REVOKED)

    def find(self, name_or_serial: str, role: str | None = None) -> list[Record]:
        """Records whose serial (hex, any case, optional ``0x``) or name is the argument."""
        text = name_or_serial.lower().removeprefix("0x")
        by_serial = [r for r in self.records.values() if r.serial == text.lstrip("0") or
                     r.serial == text]
        if by_serial:
            return by_serial
        return [r for r in self.records.values() if r.name == name_or_serial
                and (role is None or r.role == role)]
