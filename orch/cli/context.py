"""The plugin registry of one ``orch`` invocation, carried by the click context.

The command line builds no registry of its own in each command: the root context's ``obj``
holds it. ``orch`` itself starts with none and uses the process's registry; a program or a
test invoking the CLI passes its own (``cli.main(obj=registry)``, ``CliRunner().invoke(cli,
args, obj=registry)``) instead of patching a module global.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from orch.core.plugins import PluginRegistry


def registry(ctx: click.Context | None = None) -> PluginRegistry:
    """The registry of the current (or given) click invocation."""
    from orch.core.plugins import PluginRegistry, default_registry

    ctx = ctx if ctx is not None else click.get_current_context(silent=True)
    if ctx is None:
        return default_registry()
    root = ctx.find_root()
    if not isinstance(root.obj, PluginRegistry):
        root.obj = default_registry()
    return root.obj
