"""orch-service's hook implementations: the only place orch looks.

Registered in ``setup.cfg`` under the ``orch`` entry-point group (``service =
orch_service.plugin``). Hooks run in every ``orch`` command, so they only pick classes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from orch.plugin import agent_or_simulation, hookimpl

if TYPE_CHECKING:
    import click


@hookimpl
def orch_settings() -> Mapping[str, type]:
    """Declare ``plugins.service``, so orch checks and documents it (docs/service.md)."""
    from orch_service.config import ServicePluginConfig

    return ServicePluginConfig.declaration()


@hookimpl
def orch_agents(settings: Any) -> Iterable[type[Any]]:
    """The real agent, or its simulation (``ServiceAgent.simulation()``, what ``orch sim`` and
    ``orch demo`` host) when ``plugins.service.provider`` is ``simulated``."""
    from orch_service.agent import ServiceAgent
    from orch_service.config import ServicePluginConfig

    simulated = ServicePluginConfig.from_settings(settings).provider == "simulated"
    return agent_or_simulation(ServiceAgent, simulated)


@hookimpl
def orch_agent_names() -> Iterable[str]:
    """The agent above, by name: a command calling another agent does not import this
    plugin."""
    return ["service"]


@hookimpl
def orch_cli_commands() -> Iterable[click.Command]:
    from orch_service.commands import service

    return [service]
