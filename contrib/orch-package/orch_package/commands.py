"""``orch package NAME ACTION [VERSION]``, ``orch package count|md5|outdated``: the ``mco
package`` workflow, added through ``orch_cli_commands``.

Only wiring: who is addressed, the confirmation and the batches are
:mod:`orch_package.fleetcall`; the summary is the fleet's version distribution
("1.24.0-1: 40 nodes, 1.22.1-1: 10 nodes (web-03, ...)"). Exit codes follow orch's: 0 when
every addressed node did what was asked, 1 when any failed or stayed silent (or the operator
said no), 2 for usage errors.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from orch_package.config import DESTRUCTIVE, PackagePluginConfig
from orch_package.fleetcall import (
    BatchPlan,
    call_in_batches,
    groups,
    needs_confirmation,
    summary_line,
    targets,
)
from orch_package.names import NAME_HELP, VERSION_HELP, valid_name, valid_version
from orch_package.orchapi import (
    CallResult,
    Client,
    ClientContext,
    OrchCommandError,
    client_options,
    output,
)

AGENT = "package"
PACKAGE_ACTIONS = ("status", "install", "update", "uninstall", "outdated")
FLEET_ACTIONS = ("count", "md5", "outdated")
#: Seconds to wait for read-only replies when no --timeout is given (the DDL's 300 s is for
#: installs).
QUICK_TIMEOUT = 10.0
USAGE = ("orch package NAME status|install|update|uninstall|outdated [VERSION], or "
         "orch package count|md5|outdated")


def parse_words(words: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    """``(action, arguments)`` from the command's words, or a usage error saying why."""
    if len(words) == 1 and words[0] in FLEET_ACTIONS:
        return words[0], {}
    if len(words) not in (2, 3):
        raise click.UsageError(f"expected {USAGE}")
    name, action, *rest = words
    if not valid_name(name):
        raise click.BadParameter(f"{name!r} is not a package name ({NAME_HELP})",
                                 param_hint="NAME")
    if action not in PACKAGE_ACTIONS:
        raise click.BadParameter(f"{action!r} is not one of {', '.join(PACKAGE_ACTIONS)}",
                                 param_hint="ACTION")
    data: dict[str, Any] = {"package": name}
    if rest:
        if action not in ("install", "update"):
            raise click.UsageError(f"only install and update take a VERSION ({USAGE})")
        if rest[0] != "latest" and not valid_version(rest[0]):
            raise click.BadParameter(f"{rest[0]!r} is not {VERSION_HELP}",
                                     param_hint="VERSION")
        data["version"] = rest[0]
    return action, data


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("words", nargs=-1, required=True, metavar="NAME ACTION [VERSION]")
@click.option("-y", "--yes", is_flag=True,
              help="Do not ask before uninstalling a package on many nodes.")
@click.option("--batch", "batch_size", type=click.IntRange(min=1), metavar="N",
              help="Send the request to N nodes at a time.")
@click.option("--batch-sleep", type=click.FloatRange(min=0), default=1.0, show_default=True,
              metavar="SECONDS", help="Pause between batches.")
@click.option("--limit", type=click.IntRange(min=1), metavar="N",
              help="Address at most N of the matching nodes (the first N by name).")
@client_options
def package(orch: ClientContext, words: tuple[str, ...], yes: bool, batch_size: int | None,
            batch_sleep: float, limit: int | None) -> None:
    """Install, update, remove or inspect package NAME across the fleet.

    \b
    orch package openssl status                   the fleet's openssl versions
    orch package openssl update --batch 10        newest openssl, ten nodes at a time
    orch package nginx install 1.24.0-1 -C role::web
    orch package nginx uninstall -I web-007 --yes
    orch package openssl outdated                 who an update would change
    orch package md5                              which nodes have the same package set

    Nodes refuse install, update and uninstall unless their plugins.package.allow names
    the package (or says all); a node whose dpkg is locked answers busy. Uninstalling on
    more nodes than plugins.package.confirm_above (default 1) asks first; --yes does not.
    Takes orch's filters (-F -C -I -A -W -S), --nodes, --json and the broker and security
    options.
    """
    action, data = parse_words(words)
    config = PackagePluginConfig.from_settings(orch.settings)
    settings = orch.settings
    if action not in ("install", "update", "uninstall") and settings.timeout is None:
        settings = settings.with_values({"timeout": QUICK_TIMEOUT}, "orch package")
    with Client(settings) as client:
        started = time.monotonic()
        chosen = targets(orch, client, AGENT, limit)
        discovery = time.monotonic() - started
        if needs_confirmation(action in DESTRUCTIVE, len(chosen.nodes), config.confirm_above,
                              yes):
            _confirm(f"{action} {data.get('package')} on {len(chosen.nodes)} nodes?")
        progress = output.Progress(enabled=not orch.json)
        progress.expect(chosen.nodes)

        def batch(number: int, nodes: list[str]) -> None:
            if not orch.json:
                click.echo(f"batch {number}: {len(nodes)} node(s)", err=True)

        result = call_in_batches(client, AGENT, action, data, chosen.nodes,
                                 BatchPlan(batch_size, batch_sleep, batch),
                                 on_reply=progress.advance)
        progress.done()
    result.discovery_seconds = discovery
    result.cut_short = chosen.cut_short
    key = {"count": "count", "md5": "md5", "outdated": "count"}.get(action, "ensure")
    distribution = groups(result, key)
    if orch.json:
        document = output.result_document(result)
        document["summary"] = {key: distribution, "left_out_by_limit": chosen.left_out}
        output.print_json(document)
    else:
        _print(result, action, orch.verbose)
        click.echo()
        _summarise(action, data, distribution, result)
        if chosen.left_out:
            click.echo(f"--limit left out {chosen.left_out} matching node(s)")
        click.echo()
        output.print_summary(result, orch.verbose)
    if not result.succeeded:
        sys.exit(1)


def _summarise(action: str, data: dict[str, Any], distribution: dict[str, list[str]],
               result: CallResult) -> None:
    if action == "md5":
        sets = len(distribution)
        click.echo(f"{sets} different package set(s): "
                   f"{summary_line(distribution, unit=' nodes')}")
    elif action == "count":
        click.echo(f"installed packages: {summary_line(distribution, False, ' nodes')}")
    elif action == "outdated":
        behind = sorted(n for v, names in distribution.items() if v != "0" for n in names)
        candidates = groups(result, "candidate") if data else {}
        click.echo(f"outdated on {len(behind)} node(s), up to date on "
                   f"{len(distribution.get('0', []))}"
                   + (f"; candidate {', '.join(candidates)}" if candidates else ""))
    else:
        click.echo(f"{data['package']}: {summary_line(distribution, unit=' nodes')}")
        if action != "status":
            changed = groups(result, "changed")
            click.echo(f"changed: {len(changed.get('True', []))}, unchanged: "
                       f"{len(changed.get('False', []))}")
            busy = groups(result, "busy").get("True", [])
            if busy:
                click.secho(f"busy (try again): {', '.join(busy)}", fg="yellow")


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
        elif verbose or action in ("install", "update", "uninstall"):
            line = reply.data.get("message") or reply.data.get("ensure") or \
                reply.data.get("md5") or reply.data.get("count", "")
            click.echo(f"{name:<{width}}  {line}")
