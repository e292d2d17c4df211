"""What one call produced: :class:`CallResult` (replies, silent nodes, rejections, timings).

Kept apart from the client that fills it, so that renderers, plugins and the batch layer
read results without the machinery of a call. ``orch.core.client`` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orch.core.protocol import Reply, value_text


@dataclass
class CallResult:
    """Everything one call produced: replies, silent nodes, rejected replies, timings."""

    agent: str
    action: str
    request_id: str
    #: The nodes expected to answer, or None when nobody knew in advance (a broadcast).
    expected: list[str] | None
    replies: dict[str, Reply] = field(default_factory=dict)
    #: Seconds from publishing the request to receiving each node's reply.
    rtt: dict[str, float] = field(default_factory=dict)
    #: Replies that failed decoding or verification, with the reason (never shown as results).
    rejected: list[str] = field(default_factory=list)
    discovery_seconds: float = 0.0
    elapsed: float = 0.0
    #: Set when the broker failed mid-call; what was received before is kept.
    error: str | None = None
    #: Set when the nodes that answered are known to be incomplete: a broadcast (or the
    #: broadcast discovery before a call) was ended by its timeout while replies were still
    #: arriving. Says what was cut, at which timeout, how many answered and what to raise.
    cut_short: str | None = None
    #: Verified replies from nodes the request was not addressed to (a request captured and
    #: re-published elsewhere, or a node answering what was not its own): their senders,
    #: listed apart and never counted as results.
    unexpected: list[str] = field(default_factory=list)
    #: Nodes that answered the same broadcast before and stayed silent this time, up to
    #: its timeout (see :mod:`orch.core.answered`): gone, slow, or no longer selected. A
    #: broadcast's only account of who may be missing; it does not make a call fail.
    absent: list[str] = field(default_factory=list)
    #: What discovery knew about nodes that did not answer: ``{identity: note}``.
    notes: dict[str, str] = field(default_factory=dict)
    #: Replies whose data does not match the action's DDL outputs: ``{sender: [problems]}``.
    #: They are still results; the mismatch is flagged, never silently passed.
    warnings: dict[str, list[str]] = field(default_factory=dict)
    #: What may explain a call nobody answered, when the client can tell (it sent unsigned
    #: requests, which a signing fleet ignores).
    hint: str | None = None

    @property
    def missing(self) -> list[str]:
        """Expected nodes that did not answer."""
        if self.expected is None:
            return []
        return sorted(set(self.expected) - set(self.replies))

    @property
    def ok(self) -> list[str]:
        return sorted(name for name, reply in self.replies.items() if reply.ok)

    @property
    def failed(self) -> list[str]:
        return sorted(name for name, reply in self.replies.items() if not reply.ok)

    @property
    def succeeded(self) -> bool:
        """True when at least one node answered, every expected node answered OK, and
        nothing went wrong. A call that matched no node did not succeed, nor one whose
        discovery was cut short (nodes it never asked may exist)."""
        return (bool(self.replies) and not self.failed and not self.missing
                and not self.rejected and not self.unexpected and self.error is None
                and self.cut_short is None)

    def group_by(self, output: str) -> dict[str, list[str]]:
        """``{value: [identities]}`` of one output field over the OK replies."""
        groups: dict[str, list[str]] = {}
        for name in self.ok:
            value = self.replies[name].data.get(output)
            groups.setdefault(value_text(value), []).append(name)
        return groups
