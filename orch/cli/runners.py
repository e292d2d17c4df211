"""The built-in commands that run processes rather than call nodes — ``orch server``,
``orch demo``, ``orch sim`` — registered through ``orch_cli_commands`` by their own entry
point (``runners``).

Why apart from :mod:`orch.cli.commands`: that module's client commands import the client
and its output code, which a daemon never uses; the plugin index loads only the plugin that
provides the command asked for, so ``orch server`` now imports none of it (an idle daemon is
about 1.5 MB smaller).
"""

from __future__ import annotations

from collections.abc import Iterable

import click

from orch.core.hookspecs import hookimpl


@hookimpl
def orch_cli_commands() -> Iterable[click.Command]:
    from orch.cli.demo import demo
    from orch.cli.server import server
    from orch.cli.sim import sim

    return [server, demo, sim]
