"""``orch service NAME ACTION``: the ``mco service`` workflow, added through ``orch_cli_commands``.

Only wiring: who is addressed and how many at a time are orch's shared options (``--limit``,
``-1``, ``--batch``, ``--batch-sleep``, applied by ``ClientContext.call``); the
confirmation is orch's :func:`~orch.plugin.call_fleet`; the summary is "running: 48,
stopped: 2 (web-07, web-19)".
Exit codes follow orch's: 0 when every addressed node did what was asked, 1 when any failed
or stayed silent (or the operator said no), 2 for usage errors.
"""

from __future__ import annotations

import sys

import click
from orch.plugin import (
    CallResult,
    Client,
    ClientContext,
    ask_above,
    call_fleet,
    client_options,
    output,
)

from orch_service.config import DESTRUCTIVE, ServicePluginConfig

AGENT = "service"
ACTIONS = ("status", "start", "stop", "restart", "reload")
#: Seconds to wait for status replies when no --timeout is given (the DDL's 60 s is for
#: actions that run commands).
QUICK_TIMEOUT = 10.0


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("name", metavar="NAME")
@click.argument("action", type=click.Choice(ACTIONS), metavar="ACTION")
@click.option("-y", "--yes", is_flag=True,
              help="Do not ask before stopping a service on many nodes.")
@client_options
def service(orch: ClientContext, name: str, action: str, yes: bool) -> None:
    """Run ACTION (status, start, stop, restart, reload) on service NAME across the fleet.

    \b
    orch service nginx status -C role::web
    orch service nginx restart -F environment=staging --batch 5 --batch-sleep 10
    orch service nginx restart --limit 10%
    orch service cron stop -I web-007 --yes

    Nodes refuse changing actions unless their plugins.service.allow names the service
    (or says all). Stopping a service on more nodes than plugins.service.confirm_above
    (default 1) asks first; --yes does not. Takes orch's filters (-F -C -I -A -W -S),
    --nodes, --limit, -1, --batch, --batch-sleep, --json and the broker and security
    options.
    """
    from orch_service.names import NAME_HELP, valid_name

    if not valid_name(name):
        raise click.BadParameter(f"{name!r} is not a service name ({NAME_HELP})",
                                 param_hint="NAME")
    config = ServicePluginConfig.from_settings(orch.settings)
    settings = orch.settings
    if action == "status" and settings.timeout is None:
        settings = settings.with_values({"timeout": QUICK_TIMEOUT}, "orch service")
    ask = None
    if action in DESTRUCTIVE and not yes:
        ask = ask_above(config.confirm_above, lambda count: f"{action} {name} on {count} nodes?")
    with Client(settings, orch.registry) as client:
        called = call_fleet(orch, client, AGENT, action, {"service": name}, ask)
    result = called.result
    states = output.groups(result, "status")
    if orch.json or orch.output_file:
        document = output.result_document(result)
        document["summary"] = {"status": states, "left_out_by_limit": called.left_out}
        orch.emit_json(document)
    if not orch.json:
        _print(result, action, orch.verbose)
        click.echo(f"\n{name}: {output.summary_line(states) or 'no status reported'}")
        if action != "status":
            click.echo(output.changed_line(result))
        if called.left_out:
            click.echo(f"--limit left out {called.left_out} matching node(s)")
        click.echo()
        output.print_summary(result, orch.verbose)
    if not result.succeeded:
        sys.exit(1)


def _print(result: CallResult, action: str, verbose: bool) -> None:
    width = max((len(n) for n in result.replies), default=0)
    for name, reply in sorted(result.replies.items()):
        if not reply.ok:
            click.secho(f"{name:<{width}}  {reply.statusmsg}", fg="red")
        elif verbose or action != "status":
            line = reply.data.get("message") or reply.data.get("status", "")
            click.echo(f"{name:<{width}}  {line}")
