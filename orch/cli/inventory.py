"""``orch registry``, ``orch nodes`` and ``orch jobs``: the inventory's commands (wiring
only; the work is in :mod:`orch.inventory`)."""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Iterable
from typing import Any

import click

from orch.cli import output
from orch.cli.context import registry as cli_registry
from orch.cli.options import ClientContext, OrchCommandError, client_options
from orch.core.config import Settings
from orch.core.errors import OrchError
from orch.core.hookspecs import hookimpl
from orch.core.protocol import value_text


def _with_store(settings: Settings, store: str | None) -> Settings:
    if not store:
        return settings
    section = {**settings.plugin("inventory"), "store": store}
    return settings.with_values({"plugins": {**settings.plugins, "inventory": section}},
                                "--store")


def _open_store(settings: Settings) -> Any:
    from orch.core.errors import ConfigError
    from orch.inventory.settings import InventorySettings

    url = InventorySettings.from_settings(settings).store
    if not url:
        raise ConfigError("no inventory store configured: set plugins.inventory.store in "
                          "the config or pass --store")
    return cli_registry().inventory_store(url, settings)


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


store_option = click.option("--store", metavar="URL",
                            help="Inventory store (default: plugins.inventory.store).")
config_option = click.option("--config", "config_file", envvar="ORCH_CONFIG", metavar="FILE",
                             help="YAML config file [env ORCH_CONFIG].")


@click.command()
@config_option
@store_option
@click.option("--broker", metavar="URL[,URL...]", help="Broker URL(s) [env ORCH_BROKER].")
@click.option("--collective", metavar="NAME", help="Collective to serve (default: orch).")
@click.option("--security", metavar="PROVIDER", help="Security provider (default x509).")
@click.option("--tls-cert", metavar="FILE", help="Certificate (PEM).")
@click.option("--tls-key", metavar="FILE", help="Its private key (PEM).")
@click.option("--tls-ca", metavar="FILE", help="CA certificate (PEM).")
@click.option("--ssldir", metavar="DIR", help="Adopt a Puppet ssl directory instead.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              help="Logging threshold (default: info).")
def registry(config_file: str | None, store: str | None, log_level: str | None,
             **flags: str | None) -> None:
    """Run the registry daemon: store every node's registration in the inventory, mark
    silent nodes stale and expire them, until SIGTERM or SIGINT.

    Several registries may share one PostgreSQL store.
    """
    from orch.core.config import load_settings
    from orch.inventory.registry import Registry

    registry = cli_registry()
    try:
        settings = _with_store(load_settings(config_file, {**flags, "log_level": log_level},
                                             registry=registry), store)
        # The orch group set up the handler (and quieted kombu); set the daemon's level.
        logging.getLogger().setLevel(settings.log_level.upper())
        daemon = Registry(settings, registry)
    except OrchError as exc:
        raise click.UsageError(str(exc)) from None
    daemon.run()


@click.command()
@store_option
@click.option("--fact", "facts", multiple=True, metavar="NAME",
              help="Show this fact as a column (repeatable).")
@click.option("--full", is_flag=True,
              help="Every fact, class and agent of each node (what `orch inventory NODE` "
                   "asks the node for), from the store.")
@client_options
def nodes(orch: ClientContext, store: str | None, facts: tuple[str, ...], full: bool) -> None:
    """List the nodes the inventory knows (matching the filters), without asking them."""
    from orch.inventory.discovery import select

    settings = _with_store(orch.settings, store)
    inventory = _open_store(settings)
    try:
        records = inventory.nodes(settings.collective)
    finally:
        inventory.close()
    chosen = set(select(orch.client(), records, orch.filter, None))
    rows = [r for r in records if r.identity in chosen]
    if orch.json:
        output.print_json({"nodes": [
            {"identity": r.identity, "last_seen": r.last_seen, "stale": r.stale,
             "version": r.version,
             **({"facts": dict(r.facts), "classes": list(r.classes), "agents": list(r.agents),
                 "started": r.started} if full else
                {"facts": {f: _fact(r.facts, f) for f in facts}})}
            for r in rows]})
        return
    if full:
        for r in rows:
            _print_full(r)
        return
    now = time.time()
    header = ["identity", "last seen", "stale", *facts]
    table = [[r.identity, f"{_when(r.last_seen)} ({now - r.last_seen:.0f}s ago)",
              "stale" if r.stale else "", *(value_text(_fact(r.facts, f)) for f in facts)]
             for r in rows]
    _print_table(header, table)
    click.echo(f"\n{len(rows)} node(s)")


def _print_full(record: Any) -> None:
    click.echo(f"Inventory for {record.identity} (from the store, last seen "
               f"{_when(record.last_seen)}{', STALE' if record.stale else ''}):\n")
    click.echo(f"   orch version: {record.version}")
    click.echo(f"   collective:   {record.collective}")
    click.echo(f"   started:      {_when(record.started)}")
    for title, items in (("Agents", record.agents), ("Classes", record.classes)):
        click.echo(f"\n   {title}:")
        for item in items or ["(none)"]:
            click.echo(f"        {item}")
    click.echo("\n   Facts:")
    for key, value in sorted(output.flatten(record.facts).items()):
        click.echo(f"        {key} => {value_text(value)}")
    click.echo()


def _fact(facts: Any, path: str) -> Any:
    from orch.core.filter import NodeView

    return NodeView("", facts).fact(path)


def _print_table(header: list[str], rows: Iterable[list[str]]) -> None:
    rows = list(rows)
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(header)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


@click.group(invoke_without_command=True)
@config_option
@store_option
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True,
              help="How many recent jobs to list.")
@click.option("--json", "json_output", is_flag=True, help="Print JSON.")
@click.pass_context
def jobs(ctx: click.Context, config_file: str | None, store: str | None, limit: int,
         json_output: bool) -> None:
    """List recent jobs from the job history (who, when, what, how it went);
    `orch jobs show ID` prints one job's results."""
    from orch.core.config import load_settings

    try:
        settings = _with_store(load_settings(config_file, {}, registry=cli_registry()),
                               store)
    except OrchError as exc:
        raise click.UsageError(str(exc)) from None
    ctx.obj = settings
    if ctx.invoked_subcommand is not None:
        return
    inventory = _opened(settings)
    try:
        recent = inventory.jobs(limit)
    finally:
        inventory.close()
    if json_output:
        output.print_json({"jobs": [_job_summary(job) for job in recent]})
        return
    header = ["id", "sent", "caller", "agent/action", "ok", "failed", "no response"]
    _print_table(header, [[j.request_id[:12], _when(j.sent), j.caller, f"{j.agent}/{j.action}",
                           str(j.ok), str(j.failed),
                           "-" if j.expected is None else str(j.no_response)]
                          for j in recent])


def _opened(settings: Settings) -> Any:
    try:
        return _open_store(settings)
    except OrchError as exc:
        raise click.UsageError(str(exc)) from None


def _job_summary(job: Any) -> dict[str, Any]:
    return {"request_id": job.request_id, "sent": job.sent, "finished": job.finished,
            "caller": job.caller, "collective": job.collective, "agent": job.agent,
            "action": job.action, "filter": job.filter, "ok": job.ok, "failed": job.failed,
            "no_response": job.no_response}


@jobs.command()
@click.argument("request_id", metavar="ID")
@click.option("--json", "json_output", is_flag=True, help="Print JSON.")
@click.pass_obj
def show(settings: Settings, request_id: str, json_output: bool) -> None:
    """Print job ID's results as the original command did (ID may be a unique prefix)."""
    from orch.core.inventory import job_result

    inventory = _opened(settings)
    try:
        job = inventory.job(request_id)
    finally:
        inventory.close()
    if job is None:
        raise OrchCommandError(f"no job {request_id!r} in the history (or the prefix is "
                               "not unique); `orch jobs` lists recent ones")
    result = job_result(job)
    if json_output:
        output.print_json({**output.result_document(result), "job": _job_summary(job)})
        return
    click.echo(f"Job {job.request_id}: {job.agent}/{job.action} by {job.caller} at "
               f"{_when(job.sent)}\n")
    for name in sorted(result.replies):
        output.print_reply(result.replies[name], None, verbose=True)
    output.print_summary(result)


@hookimpl
def orch_cli_commands() -> Iterable[click.Command]:
    return [registry, nodes, jobs]
