"""What one ``orch`` invocation carries in its click context: the plugin registry, and
settings given by whoever invoked the command line in-process.

The command line builds no registry of its own in each command: the root context's ``obj``
holds it. ``orch`` itself starts with none and uses the process's registry; a program or a
test invoking the CLI passes its own (``cli.main(obj=registry)``, ``CliRunner().invoke(cli,
args, obj=registry)``) instead of patching a module global. ``orch demo`` runs its tour's
commands with the simulated fleet's client settings as an :class:`Invocation`'s
``environ``, instead of writing them into the process's environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from orch.core.plugins import PluginRegistry


@dataclass
class Invocation:
    """The root context's ``obj`` when a caller passes more than a registry."""

    registry: PluginRegistry | None = None
    #: ``ORCH_*`` variables layered over the process's environment for this invocation.
    environ: Mapping[str, str] = field(default_factory=dict)


def _invocation(ctx: click.Context | None) -> Invocation:
    from orch.core.plugins import PluginRegistry

    ctx = ctx if ctx is not None else click.get_current_context(silent=True)
    if ctx is None:
        return Invocation()
    root = ctx.find_root()
    if isinstance(root.obj, PluginRegistry):
        root.obj = Invocation(root.obj)
    elif not isinstance(root.obj, Invocation):
        root.obj = Invocation()
    return root.obj


def registry(ctx: click.Context | None = None) -> PluginRegistry:
    """The registry of the current (or given) click invocation."""
    from orch.core.plugins import default_registry

    invocation = _invocation(ctx)
    if invocation.registry is None:
        invocation.registry = default_registry()
    return invocation.registry


def environ(ctx: click.Context | None = None) -> Mapping[str, str]:
    """The environment settings are read from: the process's, with the invocation's
    ``ORCH_*`` values over it."""
    overlay = _invocation(ctx).environ
    return {**os.environ, **overlay} if overlay else os.environ
