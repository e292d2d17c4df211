"""``orch rpc AGENT ACTION``: options built from the action's DDL, replies printed as they come.

The options of ``rpc`` depend on its own arguments: ``orch rpc service restart --help`` must
list ``--service``, typed and documented by the DDL. :class:`RpcCommand` therefore reads
AGENT and ACTION from the command line before click parses it, looks the DDL up in the agents
the client will use for the call (``agents_dir`` included), and parses with orch's options
plus one click option per input. ``name=value`` stays accepted. An input whose option would
hide one of orch's own (``--timeout``, ``--json`` …) is left to ``name=value``: orch's option
keeps its meaning wherever it is written, before or after ACTION.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import click

from orch.cli import output
from orch.cli.options import (
    EXIT_FAILED,
    ClientContext,
    OrchCommandError,
    client_options,
    installed_agents,
)

INPUT_PREFIX = "input__"


def _lookup(ctx: click.Context | None) -> Mapping[str, Any]:
    """The agents installed for the settings of this command line (``--config``, env)."""
    return installed_agents(ctx.params.get("config_file") if ctx is not None else None)


class RpcCommand(click.Command):
    """A command whose options grow one per input of the action named in its arguments."""

    def _peek(self, info_name: str | None, args: list[str],
              parent: click.Context | None) -> click.Context | None:
        """AGENT, ACTION and --config from ``args``, parsed leniently (None if unparsable)."""
        ctx = click.Context(self, info_name=info_name, parent=parent, resilient_parsing=True,
                            ignore_unknown_options=True)
        try:
            opts, _, _ = self.make_parser(ctx).parse_args(args=list(args))
        except click.ClickException:
            return None
        ctx.params.update(opts)
        return ctx

    def make_context(self, info_name: str | None, args: list[str],
                     parent: click.Context | None = None, **extra: Any) -> click.Context:
        peeked = self._peek(info_name, args, parent)
        agents = _lookup(peeked)
        agent = peeked.params.get("agent") if peeked is not None else None
        action = peeked.params.get("action") if peeked is not None else None
        command = copy.copy(self)
        cls = agents.get(agent or "")
        ddl = cls.ddl() if cls is not None else None
        action_ddl = ddl.action(action or "") if ddl is not None else None
        if action_ddl is not None:
            command.params = [*self.params, *input_options(action_ddl, self.params)]
        ctx = click.Command.make_context(command, info_name, args, parent, **extra)
        ctx.meta["orch.agents"] = agents
        return ctx


def _taken(params: Sequence[click.Parameter]) -> set[str]:
    """The option strings orch's own parameters use (inputs' options excluded)."""
    names: set[str] = set()
    for param in params:
        if isinstance(param, click.Option) and not (param.name or "").startswith(INPUT_PREFIX):
            names.update(param.opts)
            names.update(param.secondary_opts)
    return names


def input_options(action: Any, params: Sequence[click.Parameter]) -> list[click.Option]:
    """One click option per DDL input, typed; inputs whose name orch uses are left out."""
    taken = _taken(params)
    options: list[click.Option] = []
    for name, spec in action.inputs.items():
        flag = "--" + name.replace("_", "-")
        if flag in taken or f"--no-{flag[2:]}" in taken:
            continue
        help_text = spec.description or spec.prompt or ""
        help_text += " (required)" if not spec.optional else ""
        if spec.default is not None:
            help_text += f" [default: {spec.default}]"
        dest = INPUT_PREFIX + name
        if spec.type == "boolean":
            options.append(click.Option([f"{flag}/--no-{flag[2:]}", dest], default=None,
                                        help=help_text))
            continue
        kind: Any = {"integer": click.INT, "number": click.FLOAT, "float": click.FLOAT}.get(
            spec.type, click.STRING)
        if spec.type == "list" and spec.values:
            kind = click.Choice(spec.values)
        # multiple=True: a repeated option is never reduced to its last value silently
        # (an ``array`` input collects the values, any other refuses the repetition).
        options.append(click.Option([flag, dest], type=kind, metavar=spec.type.upper(),
                                    help=help_text, multiple=True))
    return options


def clashing_inputs(action: Any, params: Sequence[click.Parameter]) -> list[str]:
    """Inputs that must be written ``name=value``: their option is one of orch's own."""
    taken = _taken(params)
    return [name for name in action.inputs
            if "--" + name.replace("_", "-") in taken]


def _print_help(ctx: click.Context, orch: ClientContext, agent: str | None,
                action: str | None) -> None:
    from orch.ddl.help import action_help, agent_help

    agents = ctx.meta.get("orch.agents") or _lookup(ctx)
    if agent is None:
        click.echo(ctx.get_help())
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
    own = [p for p in ctx.command.params if p.name and p.name.startswith(INPUT_PREFIX)]
    if own:
        click.echo("\nInput options (or name=VALUE):")
        formatter = ctx.make_formatter()
        formatter.indent()
        formatter.write_dl([rv for p in own if (rv := p.get_help_record(ctx)) is not None])
        click.echo(formatter.getvalue().rstrip())
    clashes = clashing_inputs(action_ddl, ctx.command.params)
    if clashes:
        click.echo("\nGive " + ", ".join(f"{name}=VALUE" for name in clashes)
                   + " as name=VALUE: the option of that name is orch's own.")


def _complete_agent(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    return [name for name in sorted(_lookup(ctx)) if name.startswith(incomplete)]


def _complete_action(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    cls = _lookup(ctx).get(ctx.params.get("agent") or "")
    actions = sorted(cls.ddl().actions) if cls else []
    return [name for name in actions if name.startswith(incomplete)]


def _complete_argument(ctx: click.Context, param: click.Parameter,
                       incomplete: str) -> list[str]:
    cls = _lookup(ctx).get(ctx.params.get("agent") or "")
    action = cls.ddl().action(ctx.params.get("action") or "") if cls else None
    names = [f"{name}=" for name in (action.inputs if action else {})]
    return [name for name in names if name.startswith(incomplete)]


def _input_values(options: dict[str, Any], ddl: Any, data: dict[str, Any]) -> dict[str, Any]:
    """Merge the per-input options into the ``name=value`` arguments (typed by the DDL)."""
    from orch.ddl.arguments import convert

    for dest, given in options.items():
        if given is None or given == ():
            continue
        name = dest[len(INPUT_PREFIX):]
        flag = "--" + name.replace("_", "-")
        if name in data:
            raise click.UsageError(f"input {name!r} given twice (as {flag} and {name}=)")
        spec = ddl.inputs[name]
        values = list(given) if isinstance(given, tuple) else [given]
        if len(values) > 1 and spec.type != "array":
            raise click.UsageError(f"{flag} given more than once; it takes one value")
        converted = [convert(name, value, spec.type) if isinstance(value, str)
                     and spec.type not in ("string", "list") else value for value in values]
        if spec.type == "array":
            data[name] = [item for value in converted
                          for item in (value if isinstance(value, list) else [value])]
        else:
            data[name] = converted[0]
    return data


@click.command(cls=RpcCommand, add_help_option=False,
               context_settings={"ignore_unknown_options": True})
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
        arguments: tuple[str, ...], display: str | None, show_help: bool,
        **inputs: Any) -> None:
    """Run AGENT's ACTION with ARGUMENTS on every matching node.

    Arguments are name=value or --name VALUE (options typed by the action's DDL; a boolean
    input is --name/--no-name). orch's own options may come before or after ACTION.
    Without a local DDL, values read as JSON when they look like numbers, booleans, lists
    or objects. Each reply is printed as it arrives, then the DDL's summaries. Exit code 0
    when every node answered OK, 1 when any failed or did not answer, 2 for usage errors
    (an agent neither installed here nor hosted by any node included), 130 on Ctrl-C.
    """
    if show_help or agent is None or action is None:
        _print_help(ctx, orch, agent, action)
        if not show_help:
            raise click.UsageError("AGENT and ACTION are required")
        return
    from orch.ddl.aggregate import summarize
    from orch.ddl.arguments import parse_arguments

    client = orch.client()
    if "orch.agents" in ctx.meta:
        client.agents = ctx.meta["orch.agents"]  # looked up once, while parsing
    ddl = client.action_ddl(agent, action)
    data = _input_values(inputs, ddl, parse_arguments(arguments, ddl))
    progress = orch.new_progress()
    printer = None if orch.json else output.ReplyPrinter(ddl, display, orch.verbose, progress)
    result = orch.call(agent, action, data, progress=progress, on_reply=printer)
    if result.expected == [] and ddl is None and not result.hint:
        raise click.UsageError(
            f"unknown agent {agent!r}: not installed here and no node matching the filter "
            f"hosts it; installed here: {', '.join(sorted(client.agents))}")
    summaries = (summarize(ddl, result.replies.values(), client.registry.aggregate_functions())
                 if ddl is not None else [])
    document = output.result_document(result, summaries)
    orch.emit_json(document)
    if not orch.json:
        if result.expected == []:
            raise OrchCommandError(
                f"No request sent: no node matching the filter hosts agent {agent!r}"
                + (f"\nHint: {result.hint}" if result.hint else ""))
        if printer is not None:
            printer.finish()
        output.print_summaries(summaries)
        output.print_summary(result, orch.verbose)
    if not result.succeeded:
        raise click.exceptions.Exit(EXIT_FAILED)
