"""``orch package NAME ACTION [VERSION]``, ``orch package count|md5|outdated``: the ``mco
package`` workflow, added through ``orch_cli_commands``.

Only wiring: who is addressed and how many at a time are orch's shared options (``--limit``,
``-1``, ``--batch``, ``--batch-sleep``, applied by ``ClientContext.call``); the confirmation
is orch's :func:`~orch.plugin.call_fleet`; the summary is the fleet's version distribution
("1.24.0-1: 40 nodes, 1.22.1-1: 10 nodes (web-03, ...)"). Exit codes follow orch's: 0 when
every addressed node did what was asked, 1 when any failed or stayed silent (or the operator
said no), 2 for usage errors.
"""

from __future__ import annotations

import sys
from typing import Any

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

from orch_package.config import DESTRUCTIVE, PackagePluginConfig
from orch_package.names import NAME_HELP, VERSION_HELP, valid_name, valid_version

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
@client_options
def package(orch: ClientContext, words: tuple[str, ...], yes: bool) -> None:
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
    Takes orch's filters (-F -C -I -A -W -S), --nodes, --limit, -1, --batch, --batch-sleep,
    --json and the broker and security options.
    """
    action, data = parse_words(words)
    config = PackagePluginConfig.from_settings(orch.settings)
    settings = orch.settings
    if action not in ("install", "update", "uninstall") and settings.timeout is None:
        settings = settings.with_values({"timeout": QUICK_TIMEOUT}, "orch package")
    ask = None
    if action in DESTRUCTIVE and not yes:
        ask = ask_above(config.confirm_above,
                        lambda count: f"{action} {data.get('package')} on {count} nodes?")
    with Client(settings, orch.registry) as client:
        called = call_fleet(orch, client, AGENT, action, data, ask)
    result = called.result
    key = {"count": "count", "md5": "md5", "outdated": "count"}.get(action, "ensure")
    distribution = output.groups(result, key)
    if orch.json or orch.output_file:
        document = output.result_document(result)
        document["summary"] = {key: distribution, "left_out_by_limit": called.left_out}
        orch.emit_json(document)
    if not orch.json:
        _print(result, action, orch.verbose)
        click.echo()
        _summarise(action, data, distribution, result)
        if called.left_out:
            click.echo(f"--limit left out {called.left_out} matching node(s)")
        click.echo()
        output.print_summary(result, orch.verbose)
    if not result.succeeded:
        sys.exit(1)


def _summarise(action: str, data: dict[str, Any], distribution: dict[str, list[str]],
               result: CallResult) -> None:
    if action == "md5":
        sets = len(distribution)
        click.echo(f"{sets} different package set(s): "
                   f"{output.summary_line(distribution, unit=' nodes')}")
    elif action == "count":
        click.echo(f"installed packages: {output.summary_line(distribution, False, ' nodes')}")
    elif action == "outdated":
        behind = sorted(n for v, names in distribution.items() if v != "0" for n in names)
        candidates = output.groups(result, "candidate") if data else {}
        click.echo(f"outdated on {len(behind)} node(s), up to date on "
                   f"{len(distribution.get('0', []))}"
                   + (f"; candidate {', '.join(candidates)}" if candidates else ""))
    else:
        click.echo(f"{data['package']}: {output.summary_line(distribution, unit=' nodes')}")
        if action != "status":
            click.echo(output.changed_line(result))
            busy = output.groups(result, "busy").get("True", [])
            if busy:
                click.secho(f"busy (try again): {', '.join(busy)}", fg="yellow")


def _print(result: CallResult, action: str, verbose: bool) -> None:
    width = max((len(n) for n in result.replies), default=0)
    for name, reply in sorted(result.replies.items()):
        if not reply.ok:
            click.secho(f"{name:<{width}}  {reply.statusmsg}", fg="red")
        elif verbose or action in ("install", "update", "uninstall"):
            line = reply.data.get("message") or reply.data.get("ensure") or \
                reply.data.get("md5") or reply.data.get("count", "")
            click.echo(f"{name:<{width}}  {line}")
