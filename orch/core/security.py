"""The security seam: how message bodies are sealed on the way out and checked on the way in.

A provider is chosen by the ``security`` setting among those registered through the
``orch_security_providers`` hook. The body a provider seals is the exact JSON text of a
request or reply; what it returns travels beside the body in the envelope's ``security``
object, and :meth:`SecurityProvider.verify` receives the envelope exactly as it arrived.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from orch.core.protocol import Envelope

if TYPE_CHECKING:
    from orch.core.config import Settings


_long_running = False


def mark_long_running(value: bool = True) -> None:
    """Tell providers that this process is a daemon (``orch server`` calls it first).

    A provider may then trade a little latency on rare events for a smaller steady state:
    the x509 provider loads its credentials and checks never-seen certificates in a
    short-lived child process, so the daemon itself never imports ``cryptography``
    (:mod:`orch.security.isolated`). Any provider, built in or not, may read the hint.
    ``value=False`` takes it back — for a process that ran a server in-process and goes on
    as a command (a test suite), so the providers it makes next are a command's again.
    """
    global _long_running
    _long_running = value


def long_running() -> bool:
    """True in a daemon (see :func:`mark_long_running`), False in a CLI run or a fleet."""
    return _long_running


@dataclass(frozen=True)
class Verified:
    """Who a provider says sent a message, after checking it."""

    #: The authenticated caller (``cert=alice``), or None when the provider cannot tell and
    #: the caller named inside the body is taken as is.
    caller: str | None = None
    #: A fingerprint of the signer's credential, for the audit log.
    fingerprint: str | None = None


class SecurityProvider(Protocol):
    """Seals outgoing bodies and verifies incoming envelopes."""

    name: str

    def seal(self, kind: str, body: str) -> Mapping[str, Any]:
        """Return the ``security`` fields to send with ``body`` (``kind`` is request/reply)."""
        ...

    def verify(self, envelope: Envelope) -> Verified:
        """Check an incoming envelope; raise :class:`~orch.core.errors.SecurityError` if bad.

        A provider that authenticates replies must also refuse a reply whose body's
        ``sender`` is not the identity its credential proves: the client trusts ``sender``
        to decide which node answered, and whether that node was addressed at all.
        """
        ...


def verify_reply(provider: SecurityProvider, envelope: Envelope, sender: str) -> Verified:
    """Verify a reply whose body the caller has already decoded and found ``sender`` in.

    A provider that checks the sender a reply names (x509 does: a node may only sign its own
    replies) would otherwise decode the body a second time to find it. Providers may offer
    ``verify_reply(envelope, sender)`` for that — the same checks as ``verify``, minus the
    second decoding; any other provider gets ``verify(envelope)``. ``sender`` must come from
    ``envelope.body`` itself.
    """
    method = getattr(provider, "verify_reply", None)
    if method is None:
        return provider.verify(envelope)
    result: Verified = method(envelope, sender)
    return result


def close_provider(provider: SecurityProvider) -> None:
    """Let a provider persist what it learnt (x509's certificate cache), if it wants to."""
    close = getattr(provider, "close", None)
    if close is not None:
        close()


def reload_provider(provider: SecurityProvider, settings: Settings) -> None:
    """SIGHUP: let a provider re-read its credentials (x509: certificate, key, CA bundle and
    CRL), if it can. It must swap them in whole, so that requests being handled meanwhile see
    the old or the new ones, never a mix; on failure it raises and keeps the old ones."""
    reload = getattr(provider, "reload", None)
    if reload is not None:
        reload(settings)
