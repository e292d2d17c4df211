"""orch-package's hook implementations: the only place orch looks.

Registered in ``setup.cfg`` under the ``orch`` entry-point group (``service =
orch_package.plugin``). Hooks run in every ``orch`` command, so they only pick classes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from orch.plugin import agent_or_simulation, hookimpl

if TYPE_CHECKING:
    import click


@hookimpl
def orch_settings() -> Mapping[str, type]:
    """Declare ``plugins.package``, so orch checks and documents it (docs/package.md)."""
    from orch_package.config import PackagePluginConfig

    return PackagePluginConfig.declaration()


@hookimpl
def orch_agents(settings: Any) -> Iterable[type[Any]]:
    """The real agent, or its simulation (``PackageAgent.simulation()``, what ``orch sim`` and
    ``orch demo`` host) when ``plugins.package.provider`` is ``simulated``."""
    from orch_package.agent import PackageAgent
    from orch_package.config import PackagePluginConfig

    simulated = PackagePluginConfig.from_settings(settings).provider == "simulated"
    return agent_or_simulation(PackageAgent, simulated)


@hookimpl
def orch_agent_names() -> Iterable[str]:
    """The agent above, by name: a command calling another agent does not import this
    plugin."""
    return ["package"]


@hookimpl
def orch_cli_commands() -> Iterable[click.Command]:
    from orch_package.commands import package

    return [package]
