"""The revocation list a verifier checks every message against, as plain data.

Why apart from :mod:`orch.security.pki.revocation` (which parses and checks CRL files with
``cryptography``): a daemon that loads its CRL in a short-lived child process
(:mod:`orch.security.isolated`) receives this object back and checks each message against it
without importing ``cryptography`` itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RevocationList:
    """The serials revoked by each trusted CA, and a name for this state (its digest)."""

    #: SHA-256 (hex) of a CA certificate's DER → the serial numbers it revoked.
    revoked: Mapping[str, frozenset[int]] = field(default_factory=dict)
    #: "" without a CRL; else ``crl:<sha256 of the file>``: part of the certificate cache's
    #: scope, so a new CRL makes every cached certificate be checked anew.
    state: str = ""
    path: str = ""
    #: When the earliest of its CRLs is due for renewal (epoch seconds; inf for none): from
    #: then on loading it warns, so remembering it (orch.security.owncache) must stop.
    due: float = math.inf

    def is_revoked(self, anchor: str, serial: int) -> bool:
        return serial in self.revoked.get(anchor, frozenset())

    def __len__(self) -> int:
        return sum(len(s) for s in self.revoked.values())
