"""The authorization seam: after a request is authenticated, may this caller run this action?

A server asks the authorizer named by the ``authorization`` setting (found through the
``orch_authorizers`` hook) before every action. A denial is answered ``aborted`` with the
reason, and audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from orch.core.filter import FilterEngine, NodeView
from orch.core.protocol import Request


@dataclass(frozen=True)
class Decision:
    allowed: bool
    #: Why, for the caller and the audit log (e.g. "denied by policy rpcutil.policy line 3").
    reason: str


class Authorizer(Protocol):
    """Decides whether an authenticated caller may run a request's action on this node."""

    def authorize(
        self, request: Request, caller: str, node: NodeView, filters: FilterEngine
    ) -> Decision:
        """Return the decision. ``caller`` is the authenticated caller (``cert=alice``).

        ``filters`` evaluates fact/class terms and compound expressions against ``node``,
        for policies that depend on the node's facts. Must not raise.
        """
        ...
