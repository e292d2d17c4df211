"""Which certificate, key and CA files this process uses: the ``tls_*`` settings, or a
Puppet ``ssldir``.

Several plugins need the same answer — the transport for broker TLS, the x509 security
provider for signing, ``orch ca show`` — so it lives in the core, and no plugin imports
another for it. Only paths are resolved here; reading and checking the files is the job of
whoever uses them (this module imports no cryptography).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from orch.core.config import Settings
from orch.core.errors import ConfigError


class CredentialPaths(NamedTuple):
    """The three files a process uses, and where the choice came from (for messages)."""

    cert: Path
    key: Path
    ca: Path
    source: str


SETUP_HINT = (
    "set tls_cert, tls_key and tls_ca (--tls-cert/--tls-key/--tls-ca, ORCH_TLS_* or the "
    "config file), or ssldir to adopt a Puppet CA; with orch's own CA run "
    "`orch ca init --dir DIR` once, then `orch ca issue --dir DIR --node {identity}` for a "
    "server or `orch ca issue --dir DIR --client NAME` for a user"
)


def resolve_credential_paths(settings: Settings, user: str = "TLS") -> CredentialPaths:
    """Which files to load: explicit ``tls_*`` settings win, each missing one comes from
    ``ssldir`` (Puppet layout, certname = ``identity``) when that is set.

    ``user`` names who needs them, for the message. Raises ConfigError naming the setting
    that is missing.
    """
    identity = settings.identity
    ssldir = Path(settings.ssldir) if settings.ssldir else None
    puppet = {
        "tls_cert": ssldir / "certs" / f"{identity}.pem",
        "tls_key": ssldir / "private_keys" / f"{identity}.pem",
        "tls_ca": ssldir / "certs" / "ca.pem",
    } if ssldir else {}
    chosen: dict[str, Path] = {}
    missing: list[str] = []
    for key in ("tls_cert", "tls_key", "tls_ca"):
        explicit = getattr(settings, key)
        if explicit:
            chosen[key] = Path(explicit)
        elif key in puppet:
            chosen[key] = puppet[key]
        else:
            missing.append(key)
    if missing:
        raise ConfigError(f"{user} needs {', '.join(missing)}: "
                          + SETUP_HINT.format(identity=identity))
    explicit_keys = [k for k in ("tls_cert", "tls_key", "tls_ca") if getattr(settings, k)]
    if ssldir is None:
        source = "tls_cert/tls_key/tls_ca"
    elif explicit_keys:
        source = f"ssldir {ssldir} with {', '.join(explicit_keys)} overridden"
    else:
        source = f"Puppet ssldir {ssldir} (certname {identity})"
    return CredentialPaths(chosen["tls_cert"], chosen["tls_key"], chosen["tls_ca"], source)


def resolve_crl_path(settings: Settings) -> Path | None:
    """The CRL to check peers against: ``tls_crl`` when set (``off`` for none), else a
    Puppet ``ssldir``'s own ``crl.pem`` when there is one, else none."""
    explicit = getattr(settings, "tls_crl", None)
    if explicit == "off":
        return None
    if explicit:
        return Path(explicit)
    if settings.ssldir:
        puppet = Path(settings.ssldir) / "crl.pem"
        if puppet.exists():
            return puppet
    return None
