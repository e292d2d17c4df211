"""The ``orch`` click group, whose commands come from plugins.

Commands are looked up lazily, so ``orch --version`` and ``orch --help`` stay fast and a
broken plugin only affects the commands it provides. Apart from :mod:`orch.cli.main` so that
``orch server`` can start without importing click (:mod:`orch.cli.serve`).
"""

from __future__ import annotations

import click

import orch
from orch.cli.main import configure_logging


class PluginGroup(click.Group):
    """A group that adds every command returned by the ``orch_cli_commands`` hook."""

    def _plugin_commands(self, ctx: click.Context,
                         name: str | None = None) -> dict[str, click.Command]:
        from orch.cli.context import registry as cli_registry
        from orch.core.errors import PluginError

        try:
            found = cli_registry(ctx).cli_commands(name)
        except PluginError as exc:
            raise click.UsageError(str(exc)) from None
        return {command.name: command for command in found if command.name}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self._plugin_commands(ctx)))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return (super().get_command(ctx, cmd_name)
                or self._plugin_commands(ctx, cmd_name).get(cmd_name))


@click.group(cls=PluginGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(orch.__version__, prog_name="orch", message="%(prog)s %(version)s")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default=None, envvar="ORCH_LOG_LEVEL",
              help="Logging threshold for messages on stderr (default: warning).")
def cli(log_level: str | None) -> None:
    """orch: choose nodes with a filter, run an action on all of them at once,
    get every reply back.

    \b
    Try it without a broker:   orch demo
    Find nodes:                orch find -F role=web
    Run an action:             orch rpc rpcutil get_fact fact=os.family -C role::db
    Help for one action:       orch rpc AGENT ACTION --help
    """
    configure_logging(log_level or "warning")
