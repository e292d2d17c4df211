"""A small certificate authority for orch, and the loading of a process's credentials.

Why orch has its own CA: every request is signed by a *client* certificate and every reply by
a *node* certificate, and a server must be able to tell the two apart without any database.
``orch ca`` therefore issues certificates that carry their role in a private, non-critical
X.509 extension (:data:`ROLE_OID`). Fleets managed by Puppet need no new PKI at all: the
Puppet CA and each node's Puppet certificate are adopted as they are (see
:func:`resolve_credential_paths`), and their role comes from the certificate name
(:func:`effective_role`).

This package holds no CLI code (that is :mod:`orch.cli.ca`) and no message handling (that is
:mod:`orch.security.x509`). Its modules, one idea each:

* :mod:`~orch.security.pki.keys` — keys and signatures (:func:`generate_key`, :func:`sign`,
  :func:`verify_signature`, :func:`verifier_for`);
* :mod:`~orch.security.pki.certs` — certificates in memory (:func:`create_ca`,
  :func:`issue_certificate`, :func:`certificate_role`, :func:`effective_role`, ...);
* :mod:`~orch.security.pki.store` — the CA directory on disk (:func:`init_ca`,
  :func:`issue`, :func:`list_issued`);
* :mod:`~orch.security.pki.ledger` — the CA's record of every serial and its state;
* :mod:`~orch.security.pki.lifecycle` — :func:`revoke`, :func:`write_crl`, :func:`renew`,
  :func:`expiring`;
* :mod:`~orch.security.pki.revocation` — building and checking CRLs
  (:func:`load_revocation`);
* :mod:`~orch.security.pki.credentials` — :func:`load_credentials`, the (certificate,
  private key, CA certificates) a process uses, with errors that say what to do.

This module re-exports their public names, so ``from orch.security import pki`` is the one
import callers need.
"""

from __future__ import annotations

from cryptography import x509

from orch.security.pki.certs import (
    BACKDATE,
    DEFAULT_CA_DAYS,
    DEFAULT_CERT_DAYS,
    DEFAULT_CLIENT_CERTNAMES,
    EXPIRY_WARNING,
    LEAF_ROLES,
    LOCALHOST_SANS,
    ROLE_CA,
    ROLE_CLIENT,
    ROLE_NODE,
    ROLE_OID,
    ROLE_SERVER,
    certificate_pem,
    certificate_role,
    chains_to,
    common_name,
    create_ca,
    effective_role,
    fingerprint,
    format_time,
    is_ca_certificate,
    issue_certificate,
    not_after,
    not_before,
    parse_sans,
    private_key_pem,
    role_extension,
    sans_of,
)
from orch.security.pki.credentials import (
    CredentialPaths,
    Credentials,
    load_ca_file,
    load_certificate_file,
    load_credentials,
    load_private_key_file,
    resolve_credential_paths,
    resolve_crl_path,
)
from orch.security.pki.keys import (
    DEFAULT_RSA_BITS,
    ED25519_BACKENDS,
    KEY_TYPES,
    RSA_SIZES,
    PKIError,
    PublicKey,
    SigningKey,
    Verifier,
    ed25519_verifier,
    generate_key,
    key_type_of,
    sign,
    verifier_for,
    verify_signature,
)
from orch.security.pki.lifecycle import (
    DEFAULT_CRL_DAYS,
    CRLWritten,
    expiring,
    parse_duration,
    renew,
    revoke,
    write_crl,
)
from orch.security.pki.revocation import REASONS, RevocationList, load_revocation
from orch.security.pki.store import (
    CAPaths,
    IssuedCert,
    init_ca,
    issue,
    issued_json,
    list_issued,
    load_ca,
)

__all__ = [
    "BACKDATE",
    "DEFAULT_CA_DAYS",
    "DEFAULT_CERT_DAYS",
    "DEFAULT_CLIENT_CERTNAMES",
    "DEFAULT_CRL_DAYS",
    "DEFAULT_RSA_BITS",
    "ED25519_BACKENDS",
    "EXPIRY_WARNING",
    "KEY_TYPES",
    "LEAF_ROLES",
    "LOCALHOST_SANS",
    "REASONS",
    "ROLE_CA",
    "ROLE_CLIENT",
    "ROLE_NODE",
    "ROLE_OID",
    "ROLE_SERVER",
    "RSA_SIZES",
    "CAPaths",
    "CRLWritten",
    "CredentialPaths",
    "Credentials",
    "IssuedCert",
    "PKIError",
    "PublicKey",
    "RevocationList",
    "SigningKey",
    "Verifier",
    "certificate_pem",
    "certificate_role",
    "chains_to",
    "common_name",
    "create_ca",
    "ed25519_verifier",
    "effective_role",
    "expiring",
    "fingerprint",
    "format_time",
    "generate_key",
    "init_ca",
    "is_ca_certificate",
    "issue",
    "issue_certificate",
    "issued_json",
    "key_type_of",
    "list_issued",
    "load_ca",
    "load_ca_file",
    "load_certificate_file",
    "load_credentials",
    "load_private_key_file",
    "load_revocation",
    "not_after",
    "not_before",
    "parse_duration",
    "parse_sans",
    "private_key_pem",
    "renew",
    "resolve_credential_paths",
    "resolve_crl_path",
    "revoke",
    "role_extension",
    "sans_of",
    "sign",
    "verifier_for",
    "verify_signature",
    "write_crl",
    "x509",
]
