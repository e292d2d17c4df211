"""The built-in client commands, registered through ``orch_cli_commands`` like any plugin's."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

import click

from orch.cli import output
from orch.cli.options import ClientContext, OrchCommandError, client_options
from orch.core.hookspecs import hookimpl
from orch.core.protocol import value_text

EXIT_OK, EXIT_FAILED = 0, 1


def _exit(code: int) -> None:
    if code:
        sys.exit(code)


@click.command()
@client_options
def ping(orch: ClientContext) -> None:
    """Ping every matching node and show its round-trip time.

    Returns as soon as the replies stop coming (or, with -I names or --nodes, as soon as
    every listed node answered). Exit code 1 if nobody, or not every listed node, answered,
    or if the timeout ended the broadcast while replies were still arriving.
    """
    progress = output.Progress(enabled=not orch.json)
    nodes = orch.known_nodes()
    if nodes is not None:
        progress.expect(nodes)
    result = orch.client().ping(orch.filter, nodes, on_reply=progress.advance)
    progress.done()
    if orch.json:
        output.print_json(output.result_document(result))
    else:
        for name in sorted(result.replies, key=lambda n: result.rtt[n]):
            click.echo(f"{name:<40} time={result.rtt[name] * 1000:.2f} ms")
        times = [t * 1000 for t in result.rtt.values()]
        click.echo("\n---- ping statistics ----")
        if times:
            click.echo(f"{len(times)} replies max: {max(times):.2f} min: {min(times):.2f} "
                       f"avg: {sum(times) / len(times):.2f}")
        else:
            click.echo("No responses received")
        output.print_problems(result)
    _exit(EXIT_OK if result.replies and not result.missing and not result.error
          and not result.cut_short else EXIT_FAILED)


def _print_rpc_help(orch_ctx: click.Context, agent: str | None, action: str | None) -> None:
    from orch.cli.context import registry as cli_registry
    from orch.ddl.help import action_help, agent_help

    agents = cli_registry().agents()
    if agent is None:
        click.echo(orch_ctx.get_help())
        click.echo("\nInstalled agents: " + ", ".join(sorted(agents)))
        return
    if agent not in agents:
        raise click.UsageError(f"no DDL for agent {agent!r} installed here; installed: "
                               f"{', '.join(sorted(agents))}")
    ddl = agents[agent].ddl()
    if action is None:
        click.echo(agent_help(ddl))
        return
    action_ddl = ddl.action(action)
    if action_ddl is None:
        raise click.UsageError(f"agent {agent!r} has no action {action!r}; its actions: "
                               f"{', '.join(sorted(ddl.actions))}")
    click.echo(action_help(ddl, action_ddl))


def _complete_agent(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    from orch.cli.context import registry as cli_registry

    return [name for name in sorted(cli_registry().agents()) if name.startswith(incomplete)]


def _complete_action(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    from orch.cli.context import registry as cli_registry

    cls = cli_registry().agents().get(ctx.params.get("agent") or "")
    actions = sorted(cls.ddl().actions) if cls else []
    return [name for name in actions if name.startswith(incomplete)]


def _complete_argument(ctx: click.Context, param: click.Parameter,
                       incomplete: str) -> list[str]:
    from orch.cli.context import registry as cli_registry

    cls = cli_registry().agents().get(ctx.params.get("agent") or "")
    action = cls.ddl().action(ctx.params.get("action") or "") if cls else None
    names = [f"{name}=" for name in (action.inputs if action else {})]
    return [name for name in names if name.startswith(incomplete)]


@click.command(add_help_option=False, context_settings={"ignore_unknown_options": True})
@click.argument("agent", required=False, shell_complete=_complete_agent)
@click.argument("action", required=False, shell_complete=_complete_action)
@click.argument("arguments", nargs=-1, type=click.UNPROCESSED,
                shell_complete=_complete_argument)
@click.option("--display", type=click.Choice(output.DISPLAY_CHOICES),
              help="Which replies to show (default: the action's DDL display policy).")
@click.option("-h", "--help", "show_help", is_flag=True,
              help="Show this help, or the generated help of AGENT [ACTION].")
@client_options
@click.pass_context
def rpc(ctx: click.Context, orch: ClientContext, agent: str | None, action: str | None,
        arguments: tuple[str, ...], display: str | None, show_help: bool) -> None:
    """Run AGENT's ACTION with ARGUMENTS on every matching node.

    Arguments are name=value or --name value (a boolean input may be a bare --name).
    Values are typed by the action's DDL (or, without one, read as JSON when they look
    like numbers, booleans, lists or objects). The DDL's summaries follow the results.
    Exit code 0 when every node answered OK, 1 when any failed or did not answer, 2 for
    usage errors.
    """
    if show_help or agent is None or action is None:
        _print_rpc_help(ctx, agent, action)
        if not show_help:
            raise click.UsageError("AGENT and ACTION are required")
        return
    from orch.ddl.arguments import parse_arguments

    client = orch.client()
    ddl = client.action_ddl(agent, action)
    data = parse_arguments(arguments, ddl)
    progress = output.Progress(enabled=not orch.json)

    def show(reply: Any, result: Any) -> None:
        progress.advance()

    result = client.call(agent, action, data, filter=orch.filter, nodes=orch.known_nodes(),
                         on_discovered=progress.expect, on_reply=show)
    progress.done()
    from orch.ddl.aggregate import summarize

    summaries = (summarize(ddl, result.replies.values(), client.registry.aggregate_functions())
                 if ddl is not None else [])
    if orch.json:
        output.print_json(output.result_document(result, summaries))
    elif result.expected == []:
        hint = "" if ddl is not None else (
            f" (and agent {agent!r} is not installed here: is its name right?)")
        raise OrchCommandError(
            f"No request sent: no node matching the filter hosts agent {agent!r}{hint}")
    else:
        for name in sorted(result.replies):
            reply = result.replies[name]
            if output.should_display(reply, display, ddl):
                output.print_reply(reply, ddl, orch.verbose)
        output.print_summaries(summaries)
        output.print_summary(result, orch.verbose)
    _exit(EXIT_OK if result.succeeded else EXIT_FAILED)


@click.command()
@client_options
def find(orch: ClientContext) -> None:
    """Print the identity of every matching node, one per line.

    Listed identities (-I names, --nodes) are pinged, so only nodes that answer are
    printed. Exit code 1 when no node matched, or when discovery was cut off by its
    timeout while replies were still arriving (the nodes found so far are printed).
    """
    listed = orch.known_nodes()
    cut_short = None
    if listed is None:
        found = orch.client().discover(orch.filter)
        nodes, cut_short = list(found), found.cut_short
    else:
        nodes = sorted(orch.client().ping(orch.filter, listed).replies)
    if orch.json:
        output.print_json({"nodes": nodes, "cut_short": cut_short})
    else:
        for name in nodes:
            click.echo(name)
        if cut_short:
            output.print_cut_short(cut_short)
    _exit(EXIT_OK if nodes and not cut_short else EXIT_FAILED)


@click.command()
@click.argument("fact")
@client_options
def facts(orch: ClientContext, fact: str) -> None:
    """Show how the values of FACT are distributed over the matching nodes.

    FACT may be a dotted path into nested facts (os.family). -v lists the nodes of each value.
    """
    result = orch.client().call("rpcutil", "get_fact", {"fact": fact}, filter=orch.filter,
                                nodes=orch.known_nodes())
    groups = result.group_by("value")
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    if orch.json:
        output.print_json({
            "fact": fact,
            "values": [{"value": result.replies[names[0]].data.get("value"),
                        "count": len(names), "nodes": names} for _, names in ordered],
            "failed": result.failed, "missing": result.missing, "error": result.error,
            "cut_short": result.cut_short, "stats": output.stats_document(result),
        })
    else:
        click.echo(f"Report for fact: {fact}\n")
        width = max((len(value) for value in groups), default=0)
        for value, names in ordered:
            click.echo(f"        {value:<{width}}  found {len(names)} times")
            if orch.verbose:
                for name in names:
                    click.echo(f"            {name}")
        click.echo()
        output.print_summary(result)
    _exit(EXIT_OK if result.succeeded else EXIT_FAILED)


@click.command()
@click.argument("node")
@client_options
def inventory(orch: ClientContext, node: str) -> None:
    """Show NODE's agents, facts, classes and daemon statistics."""
    result = orch.client().call("rpcutil", "inventory", nodes=[node])
    reply = result.replies.get(node)
    if orch.json:
        output.print_json(output.result_document(result))
    elif reply is None:
        raise OrchCommandError(f"no response from {node}" +
                               (f": {result.error}" if result.error else ""))
    elif not reply.ok:
        raise OrchCommandError(f"{node}: {reply.statuscode.label}: {reply.statusmsg}")
    else:
        data = reply.data
        click.echo(f"Inventory for {node}:\n")
        click.echo(f"   orch version: {data.get('version')}")
        click.echo(f"   collective:   {data.get('main_collective')}")
        stats = data.get("stats", {})
        click.echo(f"   uptime:       {stats.get('uptime', 0):.0f}s   requests: "
                   f"{stats.get('total', 0)} total, {stats.get('replies', 0)} replied, "
                   f"{stats.get('failed', 0)} failed, {stats.get('dropped', 0)} dropped")
        for title, items in (("Agents", data.get("agents", [])),
                             ("Classes", data.get("classes", []))):
            click.echo(f"\n   {title}:")
            for item in items or ["(none)"]:
                click.echo(f"        {item}")
        click.echo("\n   Facts:")
        for key, value in sorted(output.flatten(data.get("facts", {})).items()):
            click.echo(f"        {key} => {value_text(value)}")
    _exit(EXIT_OK if result.succeeded else EXIT_FAILED)


@click.command()
@click.option("--json", "json_output", is_flag=True, help="Print JSON.")
def plugins(json_output: bool) -> None:
    """List installed plugins, their versions and the hooks each implements, then every
    broker URL scheme: the plugin serving it, what it needs installed, whether it is."""
    from orch.cli.context import registry as cli_registry
    from orch.core.requirements import install_hint, transport_statuses

    registry = cli_registry()
    infos = sorted(registry.infos.values(), key=lambda i: i.name)
    statuses = transport_statuses(registry)
    if json_output:
        output.print_json([{"name": i.name, "distribution": i.distribution,
                            "version": i.version, "hooks": list(i.hooks),
                            "error": i.error,
                            "transports": [_scheme_json(s) for s in statuses
                                           if s.plugin == i.name]} for i in infos])
        return
    name_width = max((len(i.name) for i in infos), default=0)
    dist_width = max((len(f"{i.distribution} {i.version}") for i in infos), default=0)
    for info in infos:
        head = f"{info.name:<{name_width}}  {f'{info.distribution} {info.version}':<{dist_width}}"
        if info.error:
            click.echo(f"{head}  " + click.style(f"BROKEN: {info.error}", fg="red"))
        else:
            click.echo(f"{head}  {', '.join(info.hooks)}")
    if not statuses:
        return
    click.echo("\nTransports (broker URL schemes):")
    rows = [(f"{s.scheme}://", s.plugin,
             ", ".join(dict.fromkeys(r.package for r in s.requirements)) or "(none declared)")
            for s in statuses]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for status, row in zip(statuses, rows, strict=True):
        line = "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths,
                                                                         strict=True))
        if status.available:
            click.echo(f"{line}  available")
        else:
            why = "; ".join(u.reason for u in status.unmet)
            fix = install_hint(u.requirement.package for u in status.unmet)
            click.echo(f"{line}  " + click.style(f"MISSING: {why}; {fix}", fg="red"))


def _scheme_json(status: Any) -> dict[str, Any]:
    return {"scheme": status.scheme, "available": status.available,
            "requires": [{"module": r.module, "package": r.package}
                         for r in status.requirements],
            "missing": [{"module": u.requirement.module, "package": u.requirement.package,
                         "reason": u.reason} for u in status.unmet]}


@hookimpl
def orch_cli_commands() -> Iterable[click.Command]:
    # server, demo and sim come from orch.cli.runners (so a daemon imports none of this).
    return [ping, rpc, find, facts, inventory, plugins]
