"""The DDL's aggregate summaries of a call, computed as ``orch rpc`` computes them.

``orch rpc puppet status`` ends with the summaries ``puppet.json`` declares ("Summary of
Enabled: enabled = 3, disabled = 1"); ``orch puppet status`` used to tally the same outputs
itself, under other titles and labels ("Summary of Enabled: true = 3") — one fleet, two
readings (issue 8, item 13). The subcommands now print the DDL's summaries with orch's own
``output.print_summaries`` and put them in ``--json``'s ``aggregates``, computed by orch's
own :func:`orch.plugin.summarize`, so the two commands cannot drift apart again.
"""

from __future__ import annotations

from orch.plugin import CallResult, Client, Summary, summarize


def ddl_summaries(client: Client, agent: str, action: str,
                  result: CallResult) -> list[Summary]:
    """The summaries the DDL of ``agent.action`` declares, over ``result``'s OK replies."""
    ddl = client.action_ddl(agent, action)
    if ddl is None:
        return []
    return summarize(ddl, result.replies.values(), client.registry.aggregate_functions())
