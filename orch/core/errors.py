"""Exceptions that reach an operator. Each message says what went wrong and what to do."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orch.core.client import CallResult


class OrchError(Exception):
    """Base class of every error orch raises on purpose."""


class ConfigError(OrchError):
    """A setting is unknown or has a bad value; the message names the key and the file."""


class PluginError(OrchError):
    """A plugin is missing, broken, or two plugins claim the same name."""


class ProtocolError(OrchError):
    """A message could not be decoded; it is logged and dropped, never acted on."""


class SecurityError(ProtocolError):
    """A message failed a security check (signature, certificate, time window, replay)."""


class RevokedError(SecurityError):
    """A message was signed with a revoked credential. Unlike other security failures the
    signer is known, so a node audits it as ``revoked`` with the caller and fingerprint."""

    def __init__(self, message: str, caller: str | None = None,
                 fingerprint: str | None = None) -> None:
        super().__init__(message)
        self.caller = caller
        self.fingerprint = fingerprint


class TransportError(OrchError):
    """The broker could not be reached or went away; the message names the broker URL."""


class UnknownAgentError(OrchError):
    """The named agent is not installed here."""


class UnknownActionError(OrchError):
    """The agent has no action of that name."""


class ArgumentError(OrchError):
    """Action arguments failed validation; the message names the argument.

    ``kind`` is ``"missing"`` (a required input was not given) or ``"invalid"`` (anything
    else): the server answers the first with MISSING_DATA and the second with INVALID_DATA.
    """

    def __init__(self, message: str, kind: str = "invalid") -> None:
        super().__init__(message)
        self.kind = kind


class MissingRequirementError(PluginError):
    """A plugin needs a library that is not installed; the message names the pip package."""


class CallInterrupted(KeyboardInterrupt):
    """Ctrl-C during a call: :attr:`result` holds every reply received until then.

    A :class:`KeyboardInterrupt`, so a program that does not look for it stops as before;
    one that does (the CLI) shows what arrived and who is still missing.
    """

    def __init__(self, result: CallResult) -> None:
        super().__init__(f"interrupted after {len(result.replies)} replies")
        self.result = result


def interrupted(exc: BaseException) -> bool:
    """Whether Ctrl-C caused ``exc``: Python wraps a KeyboardInterrupt raised inside some
    import-time machinery (``__set_name__``, ``__init_subclass__``) in a RuntimeError, and
    a loader that catches Exception would take the user's interrupt for a broken plugin and
    carry on with the command."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False
