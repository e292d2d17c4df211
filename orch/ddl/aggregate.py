"""Aggregate summaries: the DDL's ``aggregate`` functions applied over all replies.

A function is a factory ``fn(*args) -> Aggregator`` registered through the
``orch_aggregate_functions`` hook; ``args`` are the DDL's extra arguments after the output
name (e.g. ``boolean_summary``'s labels). The summaries follow the per-node results on the
console ("enabled: 48, disabled: 2") and are carried under ``aggregates`` in ``--json``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from orch.core.protocol import Reply
from orch.ddl.model import ActionDDL

log = logging.getLogger(__name__)


class Aggregator(Protocol):
    """Accumulates one output's values over the OK replies."""

    def add(self, value: Any) -> None:
        """Take one node's value of the output (None when the node did not return it)."""
        ...

    def result(self) -> dict[str, Any]:
        """The summary as JSON-compatible data."""
        ...

    def lines(self) -> list[str]:
        """The summary as console lines, without the heading."""
        ...


AggregateFactory = Callable[..., Aggregator]


@dataclass(frozen=True)
class Summary:
    """One computed summary: which function over which output, and its result."""

    function: str
    output: str
    label: str
    result: Mapping[str, Any]
    lines: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"function": self.function, "output": self.output, "result": dict(self.result)}


def summarize(
    action: ActionDDL, replies: Iterable[Reply], functions: Mapping[str, AggregateFactory]
) -> list[Summary]:
    """Apply the aggregates of ``action`` to the OK ``replies``: one summary per output.

    Like Choria, which keys summaries by output, a later aggregate over an output replaces
    an earlier one (a DDL listing two for one output printed two "Summary of" blocks with
    the same title). Summaries are optional extras: an unknown function or a bad argument
    is logged and that summary left out, never failing the call whose results are in.
    """
    ok = [reply for reply in replies if reply.ok]
    summaries: dict[str, Summary] = {}
    for spec in action.aggregate:
        factory = functions.get(spec.function)
        if factory is None:
            log.warning("no aggregate function %r installed; summary of %s skipped",
                        spec.function, spec.output)
            continue
        try:
            aggregator = factory(*spec.args)
            for reply in ok:
                aggregator.add(reply.data.get(spec.output))
            output = action.outputs.get(spec.output)
            summaries[spec.output] = Summary(spec.function, spec.output,
                                             output.label if output else spec.output,
                                             aggregator.result(), tuple(aggregator.lines()))
        except Exception as exc:  # a plugin's aggregate must not lose the call's results
            log.warning("aggregate %s(%s) failed: %s", spec.function, spec.output, exc)
    return list(summaries.values())
