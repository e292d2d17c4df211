"""``puppet_run_status``: the DDL summary of ``last_run_status``, with "never ran" named.

A node that never completed a run reports ``last_run_status: ""``; orch's generic
``summary`` would count it under an empty label (a line reading ``   = 1``). Declared by
the DDL (``puppet.json``) and registered through ``orch_aggregate_functions``, so
``orch rpc puppet status`` and ``orch puppet status`` both print "never ran = 1". A client
without orch-puppet installed that meets this DDL leaves the summary out (and says so in
its log), as it does for any aggregate function it lacks.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

NEVER_RAN = "never ran"


class RunStatusSummary:
    """How many nodes' last run ended in each status; ``""`` counts as :data:`NEVER_RAN`."""

    def __init__(self, *_args: Any) -> None:
        self.counts: Counter[str] = Counter()

    def add(self, value: Any) -> None:
        if value is None:
            return  # the node did not return the output
        self.counts[str(value) or NEVER_RAN] += 1

    def ordered(self) -> list[tuple[str, int]]:
        """Most nodes first; ties by name, so every command prints the same lines."""
        return sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))

    def result(self) -> dict[str, Any]:
        return {"counts": dict(self.ordered())}

    def lines(self) -> list[str]:
        width = max((len(key) for key in self.counts), default=0)
        return [f"{key:>{width}} = {count}" for key, count in self.ordered()]
