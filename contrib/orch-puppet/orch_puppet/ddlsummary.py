"""The DDL's aggregate summaries of a call, computed as ``orch rpc`` computes them.

``orch rpc puppet status`` ends with the summaries ``puppet.json`` declares ("Summary of
Enabled: enabled = 3, disabled = 1"); ``orch puppet status`` used to tally the same outputs
itself, under other titles and labels ("Summary of Enabled: true = 3") — one fleet, two
readings (issue 8, item 13). The subcommands now print the DDL's summaries with orch's own
``output.print_summaries`` and put them in ``--json``'s ``aggregates``, so the two commands
cannot drift apart again.

``orch.plugin`` exports the printing and the :class:`output.Summary` it takes, but not the
function that computes them (``orch.ddl.aggregate.summarize``); this module computes them
from public parts — the action's DDL (:meth:`Client.action_ddl`) and the installed
aggregate functions (``client.registry.aggregate_functions()``) — with the same rules: one
summary per output (a later aggregate over an output replaces an earlier one), OK replies
only, and a function that is missing or fails leaves its summary out, never the call.
"""

from __future__ import annotations

import logging

from orch.plugin import CallResult, Client, output

log = logging.getLogger(__name__)


def ddl_summaries(client: Client, agent: str, action: str,
                  result: CallResult) -> list[output.Summary]:
    """The summaries the DDL of ``agent.action`` declares, over ``result``'s OK replies."""
    ddl = client.action_ddl(agent, action)
    if ddl is None:
        return []
    functions = client.registry.aggregate_functions()
    ok = [reply for reply in result.replies.values() if reply.ok]
    summaries: dict[str, output.Summary] = {}
    for spec in ddl.aggregate:
        factory = functions.get(spec.function)
        if factory is None:
            log.warning("no aggregate function %r installed; summary of %s skipped",
                        spec.function, spec.output)
            continue
        try:
            aggregator = factory(*spec.args)
            for reply in ok:
                aggregator.add(reply.data.get(spec.output))
            declared = ddl.outputs.get(spec.output)
            summaries[spec.output] = output.Summary(
                spec.function, spec.output, declared.label if declared else spec.output,
                aggregator.result(), tuple(aggregator.lines()))
        except Exception as exc:  # a summary must not lose the call's results
            log.warning("aggregate %s(%s) failed: %s", spec.function, spec.output, exc)
    return list(summaries.values())
