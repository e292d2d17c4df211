"""The ``insecure`` provider: no signatures at all. For development on a trusted laptop only.

Every message is accepted and the caller named in the request is believed. orch logs a
warning each time a process starts with it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from orch.core.hookspecs import hookimpl
from orch.core.protocol import Envelope
from orch.core.security import SecurityProvider, Verified

if TYPE_CHECKING:
    from orch.core.config import Settings

log = logging.getLogger(__name__)


class InsecureProvider:
    """Adds nothing to outgoing messages and accepts every incoming one."""

    name = "insecure"

    _warned = False

    def __init__(self, settings: Settings | None = None) -> None:
        if InsecureProvider._warned:
            return
        InsecureProvider._warned = True
        log.warning(
            "security provider 'insecure': requests and replies are NOT signed; "
            "anyone who can reach the broker can run actions"
        )

    def seal(self, kind: str, body: str) -> Mapping[str, Any]:
        return {}

    def verify(self, envelope: Envelope) -> Verified:
        return Verified()


@hookimpl
def orch_security_providers() -> Mapping[str, Callable[[Settings], SecurityProvider]]:
    return {"insecure": InsecureProvider}
