"""``orch puppet ...``: the ``mco puppet`` workflows, added through ``orch_cli_commands``.

Every subcommand takes orch's standard filter, broker, security and ``--json`` options
(``client_options``) and talks to the ``puppet`` agent only. Exit codes follow orch's: 0
when every addressed node did what was asked, 1 when any failed or stayed silent (or
nothing matched), 2 for usage errors.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import click
from orch.plugin import (
    CallResult,
    Client,
    ClientContext,
    OrchCommandError,
    client_options,
    output,
)

from orch_puppet.ddlsummary import ddl_summaries
from orch_puppet.summary import Counts, FleetSummary
from orch_puppet.validation import TYPE_RE, InvalidInput, run_options

AGENT = "puppet"
#: Seconds to wait for replies of quick actions when no --timeout is given (the agent's
#: DDL timeout, 60 s, is for the resource action).
QUICK_TIMEOUT = 10.0
EXIT_OK, EXIT_FAILED = 0, 1


def exit_with(code: int) -> None:
    if code:
        sys.exit(code)


@contextmanager
def puppet_client(orch: ClientContext, quick: bool = True) -> Iterator[Client]:
    """A client whose reply timeout is :data:`QUICK_TIMEOUT` unless one was configured."""
    settings = orch.settings
    if quick and settings.timeout is None:
        settings = settings.with_values({"timeout": QUICK_TIMEOUT}, "orch puppet")
    with Client(settings, orch.registry) as client:
        yield client


def _call(orch: ClientContext, client: Client, action: str,
          data: Mapping[str, Any] | None = None,
          nodes: Sequence[str] | None = None) -> CallResult:
    """One call with a progress line: to ``nodes`` when given (a batch runonce chose),
    else through ``orch.call`` — so --limit, -1, --batch and --batch-sleep apply."""
    progress = orch.new_progress()
    if nodes is not None:
        try:
            result = client.call(AGENT, action, dict(data or {}), filter=orch.filter,
                                 nodes=list(nodes), on_discovered=progress.expect,
                                 on_reply=progress.advance)
        finally:
            progress.done()
    else:
        result = orch.call(AGENT, action, dict(data or {}), progress=progress, client=client)
    if result.expected == [] and not orch.json:
        raise OrchCommandError("No request sent: no node matching the filter hosts the "
                               "puppet agent")
    return result


def _print_lines(result: CallResult, line: Any, verbose: bool,
                 bad: Any = None) -> None:
    """One line per node: ``line(data)`` for OK replies (red when ``bad(data)``: a failed
    run, no Puppet), the failure in red otherwise."""
    width = max((len(name) for name in result.replies), default=0)
    for name in sorted(result.replies):
        reply = result.replies[name]
        if reply.ok:
            click.secho(f"{name:<{width}}  {line(reply.data)}",
                        fg="red" if bad is not None and bad(reply.data) else None)
        else:
            click.secho(f"{name:<{width}}  {reply.statusmsg}", fg="red")


def _status_bad(data: Mapping[str, Any]) -> bool:
    return data.get("installed") is False or data.get("last_run_status") == "failed"


def _print_with_summaries(orch: ClientContext, result: CallResult,
                          summaries: Sequence[output.Summary]) -> None:
    """The JSON document, or the replies' lines (already printed) followed by the DDL's
    summaries and orch's closing lines, laid out as ``orch rpc`` lays them out."""
    orch.emit_json(output.result_document(result, summaries))
    if not orch.json:
        click.echo()
        output.print_summaries(summaries)
        output.print_summary(result, orch.verbose)
    exit_with(EXIT_OK if result.succeeded else EXIT_FAILED)


def _finish(orch: ClientContext, result: CallResult) -> None:
    if not orch.json:
        click.echo()
        output.print_summary(result, orch.verbose)
    exit_with(EXIT_OK if result.succeeded else EXIT_FAILED)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def puppet() -> None:
    """Run Puppet and manage it across the fleet (the `mco puppet` workflows).

    \b
    orch puppet status -C role::web            who is applying, idling, disabled
    orch puppet runonce --noop -F os.family=Debian
    orch puppet runall 5                       every node, at most 5 runs at a time
    orch puppet disable "db maintenance" -I db1
    orch puppet summary                        the fleet's Puppet health
    orch puppet resource service nginx ensure=running -I web1

    Every command takes orch's filters (-F -C -I -A -W -S), --nodes, --json and the
    broker and security options.
    """


# -- status, count, summary ---------------------------------------------------------------


@puppet.command()
@client_options
def status(orch: ClientContext) -> None:
    """Show whether Puppet is applying, idling, stopped or disabled, and its last run.

    One line per node (red for a failed last run or no Puppet), then the summaries the
    agent's DDL declares, as `orch rpc puppet status` prints them.
    """
    with puppet_client(orch) as client:
        result = _call(orch, client, "status")
        summaries = ddl_summaries(client, AGENT, "status", result)
    if not orch.json:
        _print_lines(result, lambda d: d.get("message", ""), orch.verbose, _status_bad)
    _print_with_summaries(orch, result, summaries)


@puppet.command()
@client_options
def count(orch: ClientContext) -> None:
    """Count the nodes in each state (enabled, disabled, applying, stopped, idling)."""
    with puppet_client(orch) as client:
        result = _call(orch, client, "status")
    counts = Counts.of({n: r.data for n, r in result.replies.items() if r.ok})
    if orch.json:
        output.print_json({**counts.to_json(), "failed": result.failed,
                           "missing": result.missing, "error": result.error,
                           "stats": output.stats_document(result)})
    else:
        for line in counts.lines():
            click.echo(line)
        click.echo()
        output.print_problems(result)
    exit_with(EXIT_OK if result.succeeded else EXIT_FAILED)


@puppet.command()
@click.option("--stale", "stale_after", type=click.FloatRange(min=1), default=3600.0,
              show_default=True, metavar="SECONDS",
              help="A node whose last run is older than this is stale.")
@client_options
def summary(orch: ClientContext, stale_after: float) -> None:
    """Fleet-wide Puppet health: states, stale nodes, failures, run-time distributions."""
    with puppet_client(orch) as client:
        statuses = _call(orch, client, "status")
        nodes = sorted(statuses.replies) if statuses.replies else []
        summaries = _call(orch, client, "last_run_summary", nodes=nodes) if nodes else None
    ok_status = {n: r.data for n, r in statuses.replies.items() if r.ok}
    ok_summaries = {n: r.data for n, r in (summaries.replies if summaries else {}).items()
                    if r.ok}
    fleet = FleetSummary.of(ok_status, ok_summaries, stale_after)
    problems = sorted(set(statuses.failed + statuses.missing
                          + (summaries.failed + summaries.missing if summaries else [])))
    if orch.json:
        output.print_json({**fleet.to_json(), "unreachable_or_failed": problems,
                           "error": statuses.error or (summaries.error if summaries else None)})
    else:
        for line in fleet.lines():
            click.echo(line)
        if fleet.failed_runs:
            click.echo("\nNodes whose last run failed:")
            for name, why in fleet.failed_runs.items():
                click.secho(f"   {name}: {why}", fg="red")
        if fleet.not_installed:
            click.echo("\nNodes without Puppet installed:")
            for name in fleet.not_installed:
                click.secho(f"   {name}", fg="red")
        if fleet.stale and orch.verbose:
            click.echo("\nStale nodes:")
            for name in fleet.stale:
                click.echo(f"   {name}")
        click.echo()
        output.print_problems(statuses)
        if problems:
            click.secho(f"No usable answer from: {', '.join(problems)}", fg="red")
    exit_with(EXIT_OK if statuses.replies and not problems else EXIT_FAILED)


# -- enable, disable ----------------------------------------------------------------------


@puppet.command()
@client_options
def enable(orch: ClientContext) -> None:
    """Enable Puppet runs (removes Puppet's disable lock)."""
    with puppet_client(orch) as client:
        result = _call(orch, client, "enable")
    if orch.json:
        output.print_json(output.result_document(result))
    else:
        _print_lines(result, lambda d: d.get("status", ""), orch.verbose)
    _finish(orch, result)


def _disable_message(argument: str | None, option: str | None) -> str | None:
    """MESSAGE, ``message=MESSAGE`` (mco's form) or ``--message``; stored without
    ``message=``, checked here so that a bad one is a usage error, not a pattern."""
    if argument is not None and option is not None:
        raise click.UsageError("give the message once: as MESSAGE or with --message")
    message = option if option is not None else argument
    if message is not None and message.startswith("message="):
        message = message[len("message="):]
    if message is not None and any(ord(ch) < 32 for ch in message):
        raise click.BadParameter("the message cannot contain control characters "
                                 "(newlines, tabs)", param_hint="MESSAGE")
    return message or None


@puppet.command()
@click.argument("message_argument", metavar="[MESSAGE]", required=False)
@click.option("-m", "--message", "message_option", metavar="TEXT",
              help="Why Puppet is disabled (also: a MESSAGE argument, or message=TEXT).")
@client_options
def disable(orch: ClientContext, message_argument: str | None,
            message_option: str | None) -> None:
    """Disable Puppet runs, with an optional MESSAGE saying why.

    \b
    orch puppet disable "db upgrade" -I db1
    orch puppet disable --message "db upgrade" -I db1
    orch puppet disable message="db upgrade" -I db1     (mco's form)
    """
    message = _disable_message(message_argument, message_option)
    with puppet_client(orch) as client:
        result = _call(orch, client, "disable", {"message": message} if message else {})
    if orch.json:
        output.print_json(output.result_document(result))
    else:
        _print_lines(result, lambda d: d.get("status", ""), orch.verbose)
    _finish(orch, result)


# -- runonce ------------------------------------------------------------------------------


def with_run_options(command: Any) -> Any:
    """The inputs of the runonce action, as options (shared by runonce and runall)."""
    for option in reversed([
        click.option("--noop/--no-noop", "noop", default=None,
                     help="A no-op run (--no-noop: a real run on a noop-configured node)."),
        click.option("--tags", "--tag", metavar="TAG[,TAG]", help="Only these tags."),
        click.option("--skip-tags", metavar="TAG[,TAG]", help="Skip these tags."),
        click.option("--environment", metavar="ENV", help="Puppet environment to run in."),
        click.option("--server", metavar="HOST[:PORT]", help="Puppet server to use."),
        click.option("--use-cached-catalog/--no-use-cached-catalog", default=None,
                     help="Apply the cached catalog instead of asking the server."),
        click.option("--ignoreschedules", "--ignore-schedules", "ignoreschedules",
                     is_flag=True, default=None,
                     help="Apply resources their schedule would skip now."),
    ]):
        command = option(command)
    return command


def run_data(**values: Any) -> dict[str, Any]:
    """The runonce inputs given, checked here first: a bad tag or server is a usage error
    saying what Puppet accepts, never a validation pattern from the DDL."""
    data = {key: value for key, value in values.items() if value is not None}
    try:
        run_options(data)
    except InvalidInput as exc:
        raise click.UsageError(str(exc)) from None
    return data


@puppet.command()
@click.option("--force", is_flag=True, default=None,
              help="Run now: no splay (and start even if the node's default splays).")
@click.option("--splay/--no-splay", default=None, help="Sleep up to --splaylimit first.")
@click.option("--splaylimit", type=click.IntRange(min=1), metavar="SECONDS",
              help="Longest splay.")
@with_run_options
@click.option("--wait", "wait", is_flag=True,
              help="Wait for the runs to end; exit 1 if any failed (no catalog, failed "
                   "resources).")
@click.option("--wait-timeout", type=click.FloatRange(min=1), default=1800.0,
              show_default=True, metavar="SECONDS", help="Longest --wait.")
@client_options
def runonce(orch: ClientContext, wait: bool, wait_timeout: float, **options: Any) -> None:
    """Start one Puppet run on every matching node (returns at once, unless --wait).

    A node whose agent is disabled or already applying refuses, and says so. With
    --batch N the request goes to N nodes at a time, --batch-sleep apart. With --wait,
    each started run is followed until it ends, and a failed run exits 1.
    """
    data = run_data(**options)
    # --batch and --batch-sleep are orch's options of every command (ClientContext.plan).
    batch_size, batch_sleep = orch.plan.batch, orch.plan.batch_sleep
    with puppet_client(orch) as client:
        if batch_size is None:
            results = [_call(orch, client, "runonce", data)]
        else:
            nodes = orch.known_nodes()
            cut_short = None
            if nodes is None:
                nodes = client.discover(orch.filter, AGENT)
                cut_short = nodes.cut_short
            if orch.plan.limit is not None:
                nodes = orch.plan.limit.apply(nodes)
            if not nodes:
                raise OrchCommandError("No request sent: no node matching the filter hosts "
                                       "the puppet agent")
            results = []
            for index in range(0, len(nodes), batch_size):
                if index:
                    time.sleep(batch_sleep)
                chunk = nodes[index:index + batch_size]
                if not orch.json:
                    click.echo(f"batch {index // batch_size + 1}: {', '.join(chunk)}")
                results.append(_call(orch, client, "runonce", data, nodes=chunk))
            results[-1].cut_short = cut_short  # discovery missed nodes: said once, at the end
    from orch_puppet.runall_cli import print_outcomes, wait_for_runs

    ok = all(r.succeeded for r in results)
    if not orch.json:  # what was started first, then (with --wait) how each run ended
        for result in results:
            _print_lines(result, lambda d: d.get("summary", "") if orch.verbose
                         else "started", orch.verbose)
            click.echo()
            output.print_summary(result, orch.verbose)
    waited = wait_for_runs(orch, results, wait_timeout) if wait else None
    if waited is not None:
        ok = ok and waited.ok
    if orch.json:
        document = output.result_document(results[0]) if len(results) == 1 else {
            "batches": [output.result_document(r) for r in results],
            "started": sorted(n for r in results for n in r.ok),
            "failed": sorted(n for r in results for n in r.failed),
            "missing": sorted(n for r in results for n in r.missing),
            "cut_short": results[-1].cut_short,
        }
        if waited is not None:
            document["waited"] = waited.to_json()
        output.print_json(document)
    elif waited is not None:
        print_outcomes(waited)
    exit_with(EXIT_OK if ok else EXIT_FAILED)


# -- last_run_summary ---------------------------------------------------------------------


def _summary_line(data: Mapping[str, Any]) -> str:
    if not data.get("lastrun"):
        return "never completed a run"
    since = data.get("since_lastrun")
    if data.get("run_status") == "failed" and not data.get("total_resources"):
        # No catalog: counts of 0 would read as a clean run.
        return (f"run FAILED ({data.get('run_failure') or 'no catalog'}); took "
                f"{data.get('total_time', 0):.1f}s"
                f"{'' if since is None else f', {since}s ago'}")
    failed = data.get("failed_resources", 0)
    text = (f"{data.get('total_resources', 0)} resources, {data.get('changed_resources', 0)} "
            f"changed, {failed} failed, {data.get('out_of_sync_resources', 0)} out of sync; "
            f"took {data.get('total_time', 0):.1f}s, "
            f"{'' if since is None else f'{since}s ago, '}"
            f"config {data.get('config_version') or '-'}")
    if data.get("cached_catalog_status") == "on_failure":
        text += " (CACHED catalog: the compile failed)"
    if data.get("run_status") == "failed":
        text = f"run FAILED ({data.get('run_failure') or 'see the logs'}): {text}"
    return text


@puppet.command(name="last_run_summary")
@client_options
def last_run_summary(orch: ClientContext) -> None:
    """Resource counts and timings of each node's last run (-v adds the run's logs)."""
    with puppet_client(orch) as client:
        result = _call(orch, client, "last_run_summary")
    if orch.json:
        output.print_json(output.result_document(result))
    else:
        _print_lines(result, _summary_line, orch.verbose,
                     lambda d: d.get("run_status") == "failed")
        if orch.verbose:
            for name in result.ok:
                logs = result.replies[name].data.get("logs") or []
                click.echo(f"\n{name} ({len(logs)} log lines):")
                for line in logs:
                    click.echo(f"   {line.get('level', ''):<7} {line.get('source', '')}: "
                               f"{line.get('message', '')}")
    _finish(orch, result)


# -- resource -----------------------------------------------------------------------------


def _properties(pairs: Sequence[str]) -> dict[str, str]:
    properties: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not PROPERTY=VALUE",
                                     param_hint="PROPERTIES")
        properties[key] = value
    return properties


@puppet.command()
@click.argument("type_name", metavar="TYPE")
@click.argument("name")
@click.argument("properties", nargs=-1, metavar="[PROPERTY=VALUE]...")
@client_options
def resource(orch: ClientContext, type_name: str, name: str,
             properties: tuple[str, ...]) -> None:
    """Apply one resource through Puppet's RAL on every matching node.

    Only types the node's configuration allows (plugins.puppet.resource_types_allow,
    default none) are applied; others are refused. Example:
    orch puppet resource service nginx ensure=running -C role::web
    """
    if not TYPE_RE.match(type_name):
        raise click.BadParameter(f"{type_name!r} is not a Puppet resource type (letters, "
                                 "digits and _, starting with a letter; a module's type as "
                                 "module::type)", param_hint="TYPE")
    data = {"type": type_name.lower(), "name": name, "properties": _properties(properties)}
    with puppet_client(orch, quick=False) as client:
        result = _call(orch, client, "resource", data)
        summaries = ddl_summaries(client, AGENT, "resource", result)
    if not orch.json:
        _print_lines(result, lambda d: "changed" if d.get("changed") else "no change",
                     orch.verbose)
        if orch.verbose:
            for node in result.ok:
                click.echo(f"\n{node}:\n{result.replies[node].data.get('result', '')}")
    _print_with_summaries(orch, result, summaries)


# runall lives in its own module (the scheduler's command line); registered here.
from orch_puppet.runall_cli import runall  # noqa: E402

puppet.add_command(runall)
