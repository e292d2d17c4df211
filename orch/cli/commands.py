"""The built-in client commands, registered through ``orch_cli_commands`` like any plugin's."""

from __future__ import annotations

import datetime
import sys
from collections.abc import Iterable, Mapping
from typing import Any

import click

from orch.cli import output
from orch.cli.options import (
    EXIT_FAILED,
    EXIT_OK,
    ClientContext,
    OrchCommandError,
    client_options,
)
from orch.core.hookspecs import hookimpl
from orch.core.protocol import value_text


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
    progress = orch.new_progress()
    nodes = orch.known_nodes()
    limit = orch.plan.limit
    if nodes is not None:
        nodes = limit.apply(nodes) if limit is not None else nodes
        progress.expect(nodes)
    try:
        result = orch.client().ping(orch.filter, nodes, on_reply=progress.advance)
    finally:
        progress.done()
    if limit is not None and nodes is None:  # a broadcast: keep the chosen ones of who answered
        kept = set(limit.apply(list(result.replies)))
        result.replies = {n: r for n, r in result.replies.items() if n in kept}
    orch.emit_json(output.result_document(result))
    if not orch.json:
        # The same truth as --json: a node that refused (its policy denies rpcutil, …)
        # is a failure with its reason, not a round-trip time.
        for name in sorted(result.replies, key=lambda n: result.rtt[n]):
            reply = result.replies[name]
            if reply.ok:
                click.echo(f"{name:<40} time={result.rtt[name] * 1000:.2f} ms")
            else:
                click.secho(f"{name:<40} {reply.statuscode.label}: {reply.statusmsg}",
                            fg="red")
        times = [result.rtt[name] * 1000 for name in result.ok]
        click.echo("\n---- ping statistics ----")
        if times:
            click.echo(f"{len(times)} replies max: {max(times):.2f} min: {min(times):.2f} "
                       f"avg: {sum(times) / len(times):.2f}")
        elif not result.replies:
            click.echo("No responses received")
        if result.failed:
            click.secho(f"{len(result.failed)} node(s) failed: {', '.join(result.failed)}",
                        fg="red")
        output.print_problems(result)
    _exit(EXIT_OK if result.succeeded else EXIT_FAILED)


@click.command()
@client_options
def find(orch: ClientContext) -> None:
    """Print the identity of every matching node, one per line.

    Listed identities (-I names, --nodes) are pinged, so only nodes that answer are
    printed. --limit/-1 pick among the nodes found. Exit code 1 when no node matched, or
    when discovery was cut off by its timeout while replies were still arriving (the nodes
    found so far are printed).
    """
    listed = orch.known_nodes()
    cut_short = None
    absent: list[str] = []
    if listed is None:
        found = orch.client().discover(orch.filter)
        nodes, cut_short, absent = list(found), found.cut_short, found.absent
    else:
        nodes = sorted(orch.client().ping(orch.filter, listed).replies)
    if orch.plan.limit is not None:
        nodes = orch.plan.limit.apply(nodes)
    orch.emit_json({"nodes": nodes, "cut_short": cut_short, "absent": absent})
    if not orch.json:
        for name in nodes:
            click.echo(name)
        if absent:
            output.print_absent(absent, err=True)
        if cut_short:
            output.print_cut_short(cut_short)
        if not nodes and orch.client().sent_unsigned:
            from orch.core.client import UNSIGNED_HINT

            click.secho(f"Hint: {UNSIGNED_HINT}", fg="yellow", err=True)
    _exit(EXIT_OK if nodes and not cut_short else EXIT_FAILED)


@click.command()
@click.argument("fact")
@client_options
def facts(orch: ClientContext, fact: str) -> None:
    """Show how the values of FACT are distributed over the matching nodes.

    FACT may be a dotted path into nested facts (os.family). -v lists the nodes of each value.
    """
    result = orch.call("rpcutil", "get_fact", {"fact": fact}, progress=orch.new_progress())
    groups = result.group_by("value")
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    orch.emit_json({
        "fact": fact,
        "values": [{"value": result.replies[names[0]].data.get("value"),
                    "count": len(names), "nodes": names} for _, names in ordered],
        "failed": result.failed, "missing": result.missing, "error": result.error,
        "cut_short": result.cut_short, "stats": output.stats_document(result),
    })
    if not orch.json:
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
@click.argument("nodes", nargs=-1)
@click.option("--template", metavar="TEXT",
              help="Print TEXT once per node, with {identity}, {version}, {collective}, "
                   "{agents}, {classes} and {facts[role]}-style fields (mco's --script).")
@click.option("--from-inventory", is_flag=True,
              help="Read what the nodes last registered from the inventory store instead of "
                   "asking them (stale nodes included and marked; no daemon statistics).")
@client_options
def inventory(orch: ClientContext, nodes: tuple[str, ...], template: str | None,
              from_inventory: bool) -> None:
    """Show the agents, facts, classes and daemon statistics of NODES, or of every node the
    filters select (-F, -C, -I …); --json or --template for a machine form of the fleet.
    --from-inventory answers from the inventory store without sending anything."""
    if from_inventory:
        _inventory_from_store(orch, nodes, template)
        return
    listed = orch.known_nodes()
    targets = listed
    if nodes and listed is None and orch.filter:
        # Named nodes and a filter: only the named nodes the filter selects.
        targets = sorted(set(nodes) & set(orch.client().discover(orch.filter)))
    elif nodes:
        targets = sorted(set(nodes) | set(listed or []))
    result = orch.call("rpcutil", "inventory", nodes=targets, progress=orch.new_progress())
    orch.emit_json(output.result_document(result))
    if not orch.json:
        if not result.replies:
            who = (f"no response from {', '.join(result.missing)}" if result.missing
                   else "no node matches the filter" if result.expected == []
                   else "no node answered")
            raise OrchCommandError(who + (f": {result.error}" if result.error else ""))
        for name in sorted(result.replies):
            reply = result.replies[name]
            if not reply.ok:
                click.secho(f"{name}: {reply.statuscode.label}: {reply.statusmsg}", fg="red")
            elif template is not None:
                click.echo(render_template(template, name, reply.data))
            else:
                print_inventory(name, reply.data)
        if len(result.expected or []) > 1 or result.missing or result.failed:
            output.print_summary(result, orch.verbose)
    _exit(EXIT_OK if result.succeeded else EXIT_FAILED)


def render_template(template: str, name: str, data: Mapping[str, Any]) -> str:
    """One node through ``--template`` (``str.format`` fields; a bad field is a usage error)."""
    fields = {"identity": name, "version": data.get("version"),
              "collective": data.get("main_collective"),
              "agents": " ".join(data.get("agents", [])),
              "classes": " ".join(data.get("classes", [])),
              "facts": output.flatten(data.get("facts", {}))}
    try:
        return template.format(**fields)
    except (KeyError, IndexError, ValueError, AttributeError) as exc:
        raise click.BadParameter(f"{template!r}: {exc!r} (fields: "
                                 f"{', '.join(fields)})", param_hint="--template") from None


def _inventory_from_store(orch: ClientContext, nodes: tuple[str, ...],
                          template: str | None) -> None:
    """``orch inventory --from-inventory``: the nodes as the store has them, through the
    discovery method that reads it (:class:`orch.core.inventory.InventoryReader`), each
    with where it came from and how old it is."""
    import time

    from orch.core.errors import ConfigError

    client = orch.client()
    reader = client.registry.discovery_methods("inventory").get("inventory")
    if reader is None or not hasattr(reader, "records"):
        raise click.UsageError("--from-inventory needs the inventory plugin (no discovery "
                               "method 'inventory' that reads a store is installed)")
    listed = orch.known_nodes()
    if listed is not None:  # plain names (-I NAME, --nodes): those, whatever else is named
        filter: Mapping[str, Any] = {}
        named: list[str] | None = sorted(set(nodes) | set(listed))
    else:  # a filter, and of what it selects the NODES named
        filter, named = orch.filter, sorted(set(nodes)) if nodes else None
    try:
        records = reader.records(client, filter, named)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    now = time.time()
    found = {r.identity for r in records}
    # With a filter, a named node it does not select is left out (as when asking the
    # nodes); without one, a named node the store does not hold is reported.
    absent = [] if filter else [name for name in named or () if name not in found]
    orch.emit_json({
        "source": "inventory",
        "nodes": [{"identity": r.identity, "last_seen": r.last_seen,
                   "age_seconds": round(max(now - r.last_seen, 0.0), 3), "stale": r.stale,
                   "data": _record_data(r)} for r in records],
        "missing": absent,
    })
    if not orch.json:
        for record in records:
            data = _record_data(record)
            if template is not None:
                click.echo(render_template(template, record.identity, data))
            else:
                print_inventory(record.identity, data, _stored_note(record, now))
        if absent:
            click.secho(f"\nNot in the inventory: {', '.join(absent)}", fg="red", bold=True)
        if not records:
            raise OrchCommandError("no node of the inventory matches the filter"
                                   if not absent else "no named node is in the inventory")
    _exit(EXIT_OK if records and not absent else EXIT_FAILED)


def _record_data(record: Any) -> dict[str, Any]:
    """A stored node in the shape of ``rpcutil inventory``'s reply (without ``stats``,
    which only the live daemon knows), so ``--template`` and readers of ``data`` work on
    both."""
    return {"agents": sorted(record.agents), "facts": dict(record.facts),
            "classes": sorted(record.classes), "version": record.version,
            "main_collective": record.collective, "collectives": [record.collective],
            "started": record.started}


def _stored_note(record: Any, now: float) -> str:
    from orch.core.timefmt import duration_text

    when = datetime.datetime.fromtimestamp(record.last_seen).strftime("%Y-%m-%d %H:%M:%S")
    return (f"from the inventory store, registered {when}, "
            f"{duration_text(max(now - record.last_seen, 0.0))} ago"
            + (", STALE: the node has not registered since" if record.stale else ""))


def print_inventory(node: str, data: Mapping[str, Any], source: str | None = None) -> None:
    """One node's inventory; ``source`` says where it came from when not the node itself."""
    click.echo(f"Inventory for {node}" + (f" ({source})" if source else "") + ":\n")
    click.echo(f"   orch version: {data.get('version')}")
    click.echo(f"   collective:   {data.get('main_collective')}")
    if "stats" in data:
        stats = data["stats"]
        click.echo(f"   uptime:       {stats.get('uptime', 0):.0f}s   requests: "
                   f"{stats.get('total', 0)} total, {stats.get('replies', 0)} replied, "
                   f"{stats.get('failed', 0)} failed, {stats.get('dropped', 0)} dropped")
    elif data.get("started"):
        started = datetime.datetime.fromtimestamp(data["started"])
        click.echo(f"   started:      {started.strftime('%Y-%m-%d %H:%M:%S')}")
    for title, items in (("Agents", data.get("agents", [])),
                         ("Classes", data.get("classes", []))):
        click.echo(f"\n   {title}:")
        for item in items or ["(none)"]:
            click.echo(f"        {item}")
    click.echo("\n   Facts:")
    for key, value in sorted(output.flatten(data.get("facts", {})).items()):
        click.echo(f"        {key} => {value_text(value)}")
    click.echo()


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
    from orch.cli.completion import completion
    from orch.cli.config import config
    from orch.cli.rpc import rpc
    from orch.cli.session import session

    return [ping, rpc, find, facts, inventory, plugins, config, completion, session]
