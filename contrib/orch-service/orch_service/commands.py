"""``orch service NAME ACTION``: the ``mco service`` workflow, added through ``orch_cli_commands``.

Only wiring: who is addressed, the confirmation and the batches are
:mod:`orch_service.fleetcall`; the summary is "running: 48, stopped: 2 (web-07, web-19)".
Exit codes follow orch's: 0 when every addressed node did what was asked, 1 when any failed
or stayed silent (or the operator said no), 2 for usage errors.
"""

from __future__ import annotations

import sys
import time

import click

from orch_service.config import DESTRUCTIVE, ServicePluginConfig
from orch_service.fleetcall import (
    BatchPlan,
    call_in_batches,
    groups,
    needs_confirmation,
    summary_line,
    targets,
)
from orch_service.orchapi import (
    CallResult,
    Client,
    ClientContext,
    OrchCommandError,
    client_options,
    output,
)

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
@click.option("--batch", "batch_size", type=click.IntRange(min=1), metavar="N",
              help="Send the request to N nodes at a time.")
@click.option("--batch-sleep", type=click.FloatRange(min=0), default=1.0, show_default=True,
              metavar="SECONDS", help="Pause between batches.")
@click.option("--limit", type=click.IntRange(min=1), metavar="N",
              help="Address at most N of the matching nodes (the first N by name).")
@client_options
def service(orch: ClientContext, name: str, action: str, yes: bool, batch_size: int | None,
            batch_sleep: float, limit: int | None) -> None:
    """Run ACTION (status, start, stop, restart, reload) on service NAME across the fleet.

    \b
    orch service nginx status -C role::web
    orch service nginx restart -F environment=staging --batch 5
    orch service cron stop -I web-007 --yes

    Nodes refuse changing actions unless their plugins.service.allow names the service
    (or says all). Stopping a service on more nodes than plugins.service.confirm_above
    (default 1) asks first; --yes does not. Takes orch's filters (-F -C -I -A -W -S),
    --nodes, --json and the broker and security options.
    """
    from orch_service.names import NAME_HELP, valid_name

    if not valid_name(name):
        raise click.BadParameter(f"{name!r} is not a service name ({NAME_HELP})",
                                 param_hint="NAME")
    config = ServicePluginConfig.from_settings(orch.settings)
    settings = orch.settings
    if action == "status" and settings.timeout is None:
        settings = settings.with_values({"timeout": QUICK_TIMEOUT}, "orch service")
    with Client(settings) as client:
        started = time.monotonic()
        chosen = targets(orch, client, AGENT, limit)
        discovery = time.monotonic() - started
        if needs_confirmation(action in DESTRUCTIVE, len(chosen.nodes), config.confirm_above,
                              yes):
            _confirm(f"{action} {name} on {len(chosen.nodes)} nodes?")
        progress = output.Progress(enabled=not orch.json)
        progress.expect(chosen.nodes)

        def batch(number: int, nodes: list[str]) -> None:
            if not orch.json:
                click.echo(f"batch {number}: {len(nodes)} node(s)", err=True)

        result = call_in_batches(client, AGENT, action, {"service": name}, chosen.nodes,
                                 BatchPlan(batch_size, batch_sleep, batch),
                                 on_reply=progress.advance)
        progress.done()
    result.discovery_seconds = discovery
    result.cut_short = chosen.cut_short
    states = groups(result, "status")
    if orch.json:
        document = output.result_document(result)
        document["summary"] = {"status": states, "left_out_by_limit": chosen.left_out}
        output.print_json(document)
    else:
        _print(result, action, orch.verbose)
        click.echo(f"\n{name}: {summary_line(states) or 'no status reported'}")
        if action != "status":
            changed = groups(result, "changed")
            click.echo(f"changed: {len(changed.get('True', []))}, unchanged: "
                       f"{len(changed.get('False', []))}")
        if chosen.left_out:
            click.echo(f"--limit left out {chosen.left_out} matching node(s)")
        click.echo()
        output.print_summary(result, orch.verbose)
    if not result.succeeded:
        sys.exit(1)


def _confirm(question: str) -> None:
    """Ask on the terminal; no answer (no terminal, end of input) is a no."""
    try:
        agreed = click.confirm(question, default=False, err=True)
    except click.Abort:
        agreed = False
    if not agreed:
        raise OrchCommandError("nothing done: not confirmed (pass --yes to skip the question)")


def _print(result: CallResult, action: str, verbose: bool) -> None:
    width = max((len(n) for n in result.replies), default=0)
    for name, reply in sorted(result.replies.items()):
        if not reply.ok:
            click.secho(f"{name:<{width}}  {reply.statusmsg}", fg="red")
        elif verbose or action != "status":
            line = reply.data.get("message") or reply.data.get("status", "")
            click.echo(f"{name:<{width}}  {line}")
