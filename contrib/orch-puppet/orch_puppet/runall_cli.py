"""``orch puppet runall`` and ``runonce --wait``: the runall scheduler on the command line.

Both follow runs with :class:`~orch_puppet.runall.RunAll` (runonce --wait only watches the
runs it started) and print the same progress lines, whose counts add up (done + in flight
+ queued = total), and the same closing tally. A failed run (no catalog, failed resources)
exits 1.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
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

from orch_puppet.commands import (
    AGENT,
    EXIT_FAILED,
    EXIT_OK,
    exit_with,
    puppet_client,
    run_data,
    with_run_options,
)


def wait_for_runs(orch: ClientContext, results: Sequence[CallResult],
                   timeout: float) -> Any:
    """Follow the runs runonce started until each ends (the runall scheduler, watching
    only): its report, whose outcomes say which runs failed."""
    from orch_puppet.runall import OrchPuppetFleet, RunAll

    started: dict[str, int | None] = {}
    for result in results:
        for name in result.ok:
            initiated = result.replies[name].data.get("initiated_at")
            started[name] = int(initiated) if isinstance(initiated, int | float) else None
    if not orch.json and started:
        click.echo(f"Waiting for {len(started)} run(s) to end ...")
    with puppet_client(orch) as client:
        scheduler = RunAll(OrchPuppetFleet(client), [], max(len(started), 1),
                           max_time=timeout, on_event=event_printer(orch), started=started)
        return scheduler.run()


def event_printer(orch: ClientContext) -> Any:
    """Progress of runall and runonce --wait: one line per event, counts that add up."""

    def show(event: Any) -> None:
        if orch.json and not orch.verbose:
            return
        stream = sys.stderr if orch.json else sys.stdout
        colour = {"failed": "red", "run_failed": "red", "lost": "red",
                  "unconfirmed": "yellow", "timeout": "red",
                  "skipped_disabled": "yellow"}.get(event.kind)
        # "Started a background Puppet run (PID n): puppet agent ..." -> up to the colon
        message = event.message.split("): ", 1)[0] + ")" if event.kind == "started" \
            and "): " in event.message else event.message
        click.secho(f"[{event.at:7.1f}s] {event.kind:<16} {event.node}: {message}"
                    f"  ({event.counts()})", fg=colour, file=stream)

    return show


def print_outcomes(report: Any) -> None:
    """The tally of a runall pass (or a runonce --wait), then the nodes that need a look."""
    tally = report.tally()
    click.echo(f"\nFinished in {report.elapsed:.1f}s: " + ", ".join(
        f"{count} {outcome.replace('_', ' ')}" for outcome, count in tally.items()
        if count))
    for outcome in ("skipped_disabled", "run_failed", "failed", "lost", "unconfirmed",
                    "timeout"):
        names = report.nodes(outcome)
        if names:
            click.secho(f"{outcome.replace('_', ' ')}: {', '.join(names)}",
                        fg="yellow" if outcome == "skipped_disabled" else "red")


# -- runall -------------------------------------------------------------------------------


@click.command()
@click.argument("concurrency", type=click.IntRange(min=1))
@with_run_options
@click.option("--poll-interval", type=click.FloatRange(min=0.1), default=1.0,
              show_default=True, metavar="SECONDS", help="Seconds between status polls.")
@click.option("--lost-after", type=click.FloatRange(min=1), default=60.0, show_default=True,
              metavar="SECONDS", help="A node silent this long is reported lost.")
@click.option("--start-timeout", type=click.FloatRange(min=1), default=120.0,
              show_default=True, metavar="SECONDS",
              help="Give up on a started run that never shows up after this long.")
@click.option("--max-time", type=click.FloatRange(min=1), metavar="SECONDS",
              help="Stop scheduling after this long (default: no limit).")
@click.option("--rerun", type=click.FloatRange(min=1), metavar="SECONDS",
              help="Run again every SECONDS (from the start of one pass to the next), "
                   "until Ctrl-C or --passes (mco's runall --rerun).")
@click.option("--passes", type=click.IntRange(min=1), metavar="N",
              help="With --rerun: stop after N passes.")
@client_options
def runall(orch: ClientContext, concurrency: int, poll_interval: float, lost_after: float,
           start_timeout: float, max_time: float | None, rerun: float | None,
           passes: int | None, **options: Any) -> None:
    """Run Puppet on every matching node, at most CONCURRENCY runs at a time.

    Polls the fleet's status and starts a new run as soon as one finishes; runs started
    by a node's own daemon count too. Disabled nodes are skipped at once (and listed), a
    node that stops answering is reported lost after --lost-after. Exit code 1 when any
    node did not get its run, or a run failed (no catalog, failed resources).
    """
    from orch_puppet.runall import OrchPuppetFleet, RunAll

    if passes is not None and rerun is None:
        raise click.UsageError("--passes goes with --rerun SECONDS")
    data = run_data(**options)
    all_ok = True
    number = 0
    with puppet_client(orch) as client:
        while True:
            number += 1
            began = time.monotonic()
            if rerun is not None and not orch.json:
                click.secho(f"\n== pass {number}" + (f" of {passes}" if passes else ""),
                            bold=True)
            nodes = orch.known_nodes()
            cut_short = None
            if nodes is None:
                nodes = client.discover(orch.filter, AGENT)
                cut_short = nodes.cut_short
            if not nodes:
                raise OrchCommandError("No node matching the filter hosts the puppet agent")
            if not orch.json:
                click.echo(f"Running Puppet on {len(nodes)} node(s), at most {concurrency} "
                           "at a time")
            scheduler = RunAll(OrchPuppetFleet(client, data), nodes, concurrency,
                               poll_interval=poll_interval, lost_after=lost_after,
                               start_timeout=start_timeout, max_time=max_time,
                               on_event=event_printer(orch))
            report = scheduler.run()
            failed_resources = _failed_resources(client, report.nodes("finished")
                                                 + report.nodes("run_failed"))
            ok = report.ok and not failed_resources and not cut_short
            all_ok = all_ok and ok
            if orch.json:
                output.print_json({**report.to_json(), "failed_resources": failed_resources,
                                   "cut_short": cut_short,
                                   **({"pass": number} if rerun is not None else {})})
            else:
                print_outcomes(report)
                click.echo(f"Most runs in flight at once: {report.max_in_flight} "
                           f"(started by runall: {report.max_started}; "
                           f"applying seen at once: {report.max_applying})")
                if failed_resources:
                    click.secho("runs with failed resources: " + ", ".join(
                        f"{n} ({c})" for n, c in sorted(failed_resources.items())), fg="red")
                if cut_short:
                    output.print_cut_short(cut_short)
            if rerun is None or (passes is not None and number >= passes):
                break
            pause = rerun - (time.monotonic() - began)
            if pause > 0:
                if not orch.json:
                    click.echo(f"Next pass in {pause:.0f}s (Ctrl-C stops)")
                time.sleep(pause)
    exit_with(EXIT_OK if all_ok else EXIT_FAILED)


def _failed_resources(client: Client, nodes: Sequence[str]) -> dict[str, int]:
    """Failed resources of the runs that ended, from their last_run_summary."""
    if not nodes:
        return {}
    last = client.call(AGENT, "last_run_summary", {}, nodes=list(nodes))
    return {n: int(r.data.get("failed_resources") or 0) for n, r in last.replies.items()
            if r.ok and r.data.get("failed_resources")}
