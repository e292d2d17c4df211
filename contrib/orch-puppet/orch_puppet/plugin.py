"""orch-puppet's hook implementations: the only place orch looks.

Registered in ``setup.cfg`` under the ``orch`` entry-point group (``puppet =
orch_puppet.plugin``). Each hook only builds objects; nothing runs until orch uses them
(hooks run in every ``orch`` command, so they must stay cheap).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from orch.plugin import hookimpl

if TYPE_CHECKING:
    import click
    from orch.plugin import Agent, FactSource, Settings


@hookimpl
def orch_settings() -> Mapping[str, type]:
    """Declare the ``plugins.puppet`` section (documented in docs/puppet.md)."""
    from orch_puppet.config import PuppetPluginConfig

    return PuppetPluginConfig.declaration()


@hookimpl
def orch_agents(settings: Settings) -> Iterable[type[Agent]]:
    from orch_puppet.agent import PuppetAgent

    return [PuppetAgent]


@hookimpl
def orch_agent_names() -> Iterable[str]:
    """The agent above, by name: a command calling another agent does not import this
    plugin."""
    return ["puppet"]


@hookimpl
def orch_fact_sources(settings: Settings) -> Iterable[FactSource]:
    """facter's facts, when ``plugins.puppet.facts_enabled`` is true (off by default)."""
    from orch_puppet.config import PuppetPluginConfig

    config = PuppetPluginConfig.from_settings(settings)
    if not config.facts_enabled:
        return []
    from orch_puppet.facts import FacterSource

    # The daemon hands the source its node's refresh through FacterSource.watch.
    return [FacterSource.from_config(config, settings.identity)]


@hookimpl
def orch_aggregate_functions() -> Mapping[str, Callable[..., Any]]:
    """``puppet_run_status``: the DDL's summary of ``last_run_status`` ("never ran" named)."""
    from orch_puppet.aggregates import RunStatusSummary

    return {"puppet_run_status": RunStatusSummary}


@hookimpl
def orch_cli_commands() -> Iterable[click.Command]:
    from orch_puppet.commands import puppet

    return [puppet]


@hookimpl
def orch_api_routes() -> Iterable[Any]:
    """``GET /api/v1/puppet/summary`` for ``orch api`` (imports Starlette only then)."""
    from orch_puppet.api import routes

    return routes()
