"""``orch plugin``: start a plugin distribution, and read an installed agent's documentation.

``orch plugin new NAME`` writes a distribution that installs and answers at once (see
:mod:`orch.scaffold`); ``orch plugin doc AGENT`` prints what ``orch rpc AGENT ACTION --help``
prints, for every action at once — both come from the agent's DDL, so documentation and
behaviour cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import click

from orch.core.errors import OrchError
from orch.core.hookspecs import hookimpl


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def plugin() -> None:
    """Write orch plugins: scaffold one, read an installed agent's documentation.

    \b
    orch plugin new disk_usage      create ./orch-disk_usage, ready to pip install
    orch plugin doc rpcutil         every action of an installed agent, from its DDL
    """


@plugin.command()
@click.argument("name")
@click.option("--dir", "parent", default=".", show_default=True, metavar="PARENT",
              type=click.Path(file_okay=False, path_type=Path),
              help="Create orch-NAME inside this directory.")
@click.option("--author", metavar="TEXT", help="Author (default: your user name).")
@click.option("--description", metavar="TEXT", help="One line saying what the agent does.")
@click.option("--license", "license_", metavar="SPDX", default="Apache-2.0",
              show_default=True, help="License of the plugin.")
def new(name: str, parent: Path, author: str | None, description: str | None,
        license_: str) -> None:
    """Create orch-NAME: a pip-installable plugin with the agent NAME.

    It holds setup.cfg (with the `orch` entry point), the agent (orch_NAME/agent.py), its
    DDL (orch_NAME/NAME.json), a test using the orch.testing fixtures and a README.
    Installed, the agent answers `orch rpc NAME echo message=hi` straight away.

    NAME is lower-case letters, digits and '_', starting with a letter. An existing
    orch-NAME directory is never overwritten.
    """
    from orch import scaffold

    try:
        created = scaffold.create(name, parent, author=author, description=description,
                                  license=license_)
    except OrchError as exc:
        raise click.UsageError(str(exc)) from None
    _warn_if_installed(name)
    root = created.root
    click.echo(f"Created {root}/ with the agent {name!r}:")
    for path in created.files:
        click.echo(f"  {path.relative_to(root)}")
    steps = [
        (f"cd {root}", ""),
        ("pip install -e '.[test]'", "registers the agent through the `orch` entry point"),
        (f"orch rpc {name} echo --help", f"generated from {created.package}/{name}.json"),
        ("pytest", f"runs tests/test_{name}.py on simulated nodes"),
        (f"orch rpc {name} echo message=hi", "on your fleet, once installed on the nodes"),
    ]
    width = max(len(command) for command, _ in steps)
    click.echo("\nNext steps:")
    for command, why in steps:
        click.echo(f"  {command:<{width}}  # {why}" if why else f"  {command}")


def _warn_if_installed(name: str) -> None:
    """An agent of that name already installed here would clash with the new one."""
    try:
        from orch.cli.context import registry as cli_registry

        installed = cli_registry().agents()
    except OrchError:
        return
    if name in installed:
        click.secho(f"Warning: an agent named {name!r} is already installed here "
                    f"({installed[name].__module__}); the two cannot be installed together.",
                    fg="yellow", err=True)


@plugin.command()
@click.argument("agent")
@click.option("--config", "config_file", metavar="FILE",
              help="Client config file (default: the client's search, see `orch config "
                   "show`): its agents_dir adds external agents.")
def doc(agent: str, config_file: str | None) -> None:
    """Print an installed AGENT's documentation, generated from its DDL.

    The agent's description and metadata, then each action's usage, inputs, outputs and
    summaries — what `orch rpc AGENT ACTION --help` shows, for every action. External
    agents (agents_dir) are included, as in calls.
    """
    from orch.cli.context import environ
    from orch.cli.context import registry as cli_registry
    from orch.core.clientconfig import load_client_settings
    from orch.ddl.help import action_help, agent_help

    try:
        agents = cli_registry().agents(load_client_settings(config_file, None, environ(),
                                                            cli_registry()))
        if agent not in agents:
            raise click.UsageError(f"no agent {agent!r} is installed here; installed: "
                                   f"{', '.join(sorted(agents)) or 'none'}")
        ddl = agents[agent].ddl()
    except OrchError as exc:
        raise click.UsageError(str(exc)) from None
    sections = [agent_help(ddl)]
    for name in sorted(ddl.actions):
        sections.append(f"{'=' * 72}\n{agent}.{name}\n\n"
                        + action_help(ddl, ddl.actions[name]))
    click.echo("\n\n".join(sections))


@hookimpl
def orch_cli_commands() -> Iterable[click.Command]:
    return [plugin]
