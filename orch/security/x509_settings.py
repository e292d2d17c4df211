"""The ``x509`` plugin's settings section, declared through ``orch_settings``.

Its own module so that declaring it (which every ``orch server`` start does) imports no
cryptography. ``cert_cache`` and ``client_certnames`` were orch's own settings before
plugins declared theirs, so the old top-level names still work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orch.core import convert
from orch.core.sections import setting

SECTION = "x509"
#: Where Ed25519 signatures are checked: libsodium when installed, or always cryptography.
ED25519_BACKENDS = ("auto", "sodium", "cryptography")


def _days(value: Any) -> float:
    """A number of days, 0 or more and under a century."""
    if isinstance(value, bool):
        raise ValueError("expected a number of days, 0 or more")
    try:
        days = float(value)
    except (TypeError, ValueError):
        raise ValueError("expected a number of days, 0 or more") from None
    if not 0 <= days < 36500:
        raise ValueError("expected a number of days, 0 or more")
    return days


@dataclass(frozen=True)
class X509Settings:
    """``plugins: {x509: {…}}``."""

    cert_cache: str | None = setting(
        None, convert.optional_path,
        "With `security: x509`: where certificates already verified are remembered, so that "
        "a new process does not parse and chain-check every node's certificate again. Used "
        "only if it is a directory owned by you with mode 0700; `off` disables it. See "
        "[security.md](security.md#the-certificate-cache).", aliases=("cert_cache",),
        default_doc="`x509` in the cache directory (`$ORCH_CACHE_DIR`, else "
                    "`$XDG_CACHE_HOME/orch` or `~/.cache/orch`)")
    client_certnames: list[str] = setting(
        lambda: ["*.mcollective"], convert.string_list,
        "With `security: x509` and a CA not made by `orch ca` (an adopted Puppet CA): "
        "certificate names (fnmatch patterns) that are clients; every other certificate is a "
        "node. See [security.md](security.md).", aliases=("client_certnames",))
    ed25519: str = setting(
        "auto", convert.choice(*ED25519_BACKENDS),
        "Where Ed25519 signatures are checked: `auto` (libsodium through PyNaCl when "
        "installed, else cryptography), `sodium` or `cryptography`.")
    expiry_warning_days: float = setting(
        14.0, _days,
        "How many days before this process's own certificate expires it starts warning in its "
        "log (at start, on SIGHUP and every 6 hours). See "
        "[security.md](security.md#rotation-and-renewal).", default_doc="`14`")
