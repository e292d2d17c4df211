"""The discovery seam: finding which nodes a filter selects before a call is sent.

Knowing the expected set up front is what lets a call return the moment the last reply
arrives, and name every node that stayed silent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from orch.core.client import Client
    from orch.core.result import CallResult


class Discovered(list[str]):
    """The identities a discovery found: a sorted list that can say it is incomplete.

    A method that knows its answer is partial — broadcast discovery ended by its timeout
    while replies were still arriving — returns one with :attr:`cut_short` set to why, so
    the call (and the exit code) can say so instead of reporting success on a part of the
    fleet. Methods may return a plain list; the client wraps it.
    """

    def __init__(self, nodes: Iterable[str] = (), cut_short: str | None = None,
                 explain: Callable[[Sequence[str]], Mapping[str, str]] | None = None,
                 absent: Sequence[str] = ()) -> None:
        super().__init__(nodes)
        self.cut_short = cut_short
        #: Nodes that answered the same discovery before and not this one (see
        #: :attr:`orch.core.result.CallResult.absent`).
        self.absent = list(absent)
        #: How long the discovery took (set by :meth:`Client.discover`).
        self.seconds = 0.0
        #: Given the nodes that did not answer, a short note on each the method knows
        #: something about ("last seen 2026-11-30 19:50:01"); called only when some node
        #: stayed silent, so it costs nothing when all answer.
        self.explain = explain

    def mark(self, result: CallResult) -> None:
        """Say in ``result`` (a call on these nodes) what this discovery took and knew:
        its time, whether it was cut short, and who answered it before and not now."""
        result.discovery_seconds = self.seconds
        result.cut_short, result.absent = self.cut_short, list(self.absent)


class DiscoveryMethod(Protocol):
    """One way of finding nodes (the live fleet, an inventory, PuppetDB …)."""

    def discover(
        self, client: Client, filter: Mapping[str, Sequence[Any]], agent: str
    ) -> list[str]:
        """Return the identities selected by ``filter`` that host ``agent``, sorted.

        Use ``client.settings.discovery_timeout`` as the upper bound on how long it takes;
        return a :class:`Discovered` with ``cut_short`` set when the list is incomplete.
        """
        ...
