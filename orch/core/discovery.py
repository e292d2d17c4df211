"""The discovery seam: finding which nodes a filter selects before a call is sent.

Knowing the expected set up front is what lets a call return the moment the last reply
arrives, and name every node that stayed silent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from orch.core.client import Client


class DiscoveryMethod(Protocol):
    """One way of finding nodes (the live fleet, an inventory, PuppetDB …)."""

    def discover(
        self, client: Client, filter: Mapping[str, Sequence[Any]], agent: str
    ) -> list[str]:
        """Return the identities selected by ``filter`` that host ``agent``, sorted.

        Use ``client.settings.discovery_timeout`` as the upper bound on how long it takes.
        """
        ...
