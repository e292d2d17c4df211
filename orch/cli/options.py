"""The options every client command shares, and the context object they produce.

Plugin commands get the same options by decorating themselves with :func:`client_options`;
the command then receives a :class:`ClientContext` as its ``orch`` argument.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from orch.core.errors import CallInterrupted, OrchError

if TYPE_CHECKING:  # imported lazily at run time: --help must not pay for them
    from orch.cli.progress import Progress
    from orch.core.batch import CallPlan
    from orch.core.client import CallResult, Client, ReplyCallback
    from orch.core.config import Settings
    from orch.core.plugins import PluginRegistry

#: Exit codes (docs/cli.md): 0 every targeted node answered OK, 1 a node failed or did not
#: answer (or nothing matched, or the broker failed), 2 usage error, 130 interrupted.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class ClientContext:
    """Everything a client command needs, built from the shared options."""

    overrides: dict[str, Any]
    config_file: str | None
    filter_options: dict[str, list[str]]
    nodes_file: str | None
    json: bool
    verbose: bool
    #: Draw the progress line (``--no-progress`` turns it off; never with ``--json``).
    progress: bool = True
    #: Which discovered nodes to call and how many at a time (``--limit``, ``-1``,
    #: ``--batch``, ``--batch-sleep``).
    plan: CallPlan = field(default_factory=lambda: _plan())
    #: ``--output-file``: where the JSON document also goes while text goes to the terminal.
    output_file: str | None = None
    _client: Client | None = field(default=None, repr=False)
    _settings: Settings | None = field(default=None, repr=False)
    _filter: dict[str, list[Any]] | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        from orch.core.clientconfig import load_client_settings

        if self._settings is None:
            from orch.cli.context import environ, registry

            self._settings = load_client_settings(self.config_file, self.overrides,
                                                  environ(), registry())
        return self._settings

    def client(self) -> Client:
        """The :class:`orch.core.client.Client` for these options (created once)."""
        from orch.core.client import Client

        if self._client is None:
            from orch.cli.context import registry

            self._client = Client(self.settings, registry())
        return self._client

    @property
    def registry(self) -> PluginRegistry:
        """The plugins of this invocation (the click context's): what a plugin command
        passes to a :class:`~orch.core.client.Client` it builds itself."""
        from orch.cli.context import registry

        return registry()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    @property
    def filter(self) -> dict[str, list[Any]]:
        """The request filter built from -F/-C/-I/-A/-W/-S."""
        if self._filter is None and not any(self.filter_options.values()):
            self._filter = {}  # no options select every node: no filter plugin is needed
        if self._filter is None:
            from orch.cli.context import registry
            from orch.core.filter import FilterEngine
            from orch.core.filterargs import build_filter

            # Parsed with the registry's filter plugins: no broker connection, no Client.
            engine = (self._client.filters if self._client is not None
                      else FilterEngine.for_registry(registry(), self.settings))
            opts = self.filter_options
            self._filter = build_filter(
                engine, fact=opts["fact"], classes=opts["classes"],
                identities=opts["identity"], agents=opts["agent"],
                compound=opts["compound"], with_=opts["with_"],
            )
        return self._filter

    def new_progress(self) -> Progress:
        """The progress line for one call (drawn only on a terminal, never with --json)."""
        from orch.cli.progress import Progress

        return Progress(enabled=self.progress and not self.json)

    def call(self, agent: str, action: str, data: Mapping[str, Any] | None = None, *,
             progress: Progress | None = None, on_reply: ReplyCallback | None = None,
             nodes: Sequence[str] | None = None, client: Client | None = None) -> CallResult:
        """Call ``agent.action`` on the nodes these options choose, honouring ``--limit``,
        ``-1``, ``--batch`` and ``--batch-sleep``; ``progress`` follows the call.

        Plugin commands use this rather than ``client().call`` so that every command takes
        the same options. Ctrl-C raises :class:`~orch.core.errors.CallInterrupted`; the
        options' wrapper shows what arrived and exits 130.
        """
        from orch.core.batch import call_nodes

        def reply(reply: Any, result: CallResult) -> None:
            if progress is not None:
                progress.advance()
            if on_reply is not None:
                on_reply(reply, result)

        try:
            return call_nodes(
                client or self.client(), agent, action, data, filter=self.filter,
                nodes=self.known_nodes() if nodes is None else nodes, plan=self.plan,
                on_discovered=progress.expect if progress is not None else None,
                on_batch=progress.start_batch if progress is not None else None,
                on_reply=reply)
        finally:
            if progress is not None:
                progress.done()

    def emit_json(self, document: Any) -> None:
        """The JSON document: on stdout with ``--json``, into ``--output-file`` if given."""
        from orch.cli.output import json_text

        text = json_text(document)
        if self.json:
            click.echo(text)
        if self.output_file is not None:
            try:
                Path(self.output_file).write_text(text + "\n")
            except OSError as exc:
                raise OrchCommandError(f"cannot write --output-file {self.output_file}: "
                                       f"{exc.strerror}") from None

    def known_nodes(self) -> list[str] | None:
        """Identities to address without discovery: ``--nodes`` or plain ``-I`` names only."""
        opts = self.filter_options
        others = any(opts[k] for k in ("fact", "classes", "agent", "compound", "with_"))
        if self.nodes_file is not None:
            if others or opts["identity"]:
                raise click.UsageError("--nodes cannot be combined with filters; "
                                       "put the filter in discovery or edit the list")
            return read_node_list(self.nodes_file)
        identities = opts["identity"]
        if identities and not others and not any(i.startswith("/") for i in identities):
            return sorted(set(identities))
        return None


def installed_agents(config_file: str | None = None) -> Mapping[str, Any]:
    """The agents a client with these settings uses (``agents_dir`` included): the one
    lookup help, documentation, completion and calls all come from (by name, importing only
    the plugin that provides the agent). Empty if the settings do not load (the command that
    needs them reports that error)."""
    from orch.cli.context import environ, registry
    from orch.core.agentlookup import AgentLookup
    from orch.core.clientconfig import load_client_settings

    try:
        return AgentLookup(registry(), load_client_settings(config_file, None, environ(),
                                                            registry()))
    except OrchError:
        return {}


def read_node_list(path: str) -> list[str]:
    """Identities from a file (or ``-`` for stdin): one per line, ``#`` starts a comment."""
    try:
        text = sys.stdin.read() if path == "-" else open(path).read()  # noqa: SIM115
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}",
                                 param_hint="--nodes") from None
    names = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    return sorted({name for name in names if name})


def client_options(command: F) -> F:
    """Add broker, collective, config, filter, output and timeout options to ``command``."""
    options = [
        click.option("--broker", envvar="ORCH_BROKER", metavar="URL[,URL...]",
                     help="Broker URL(s) [env ORCH_BROKER; default amqp://localhost]."),
        click.option("-T", "--target", "collective", envvar="ORCH_COLLECTIVE",
                     metavar="COLLECTIVE", help="Collective to talk to [env ORCH_COLLECTIVE]."),
        click.option("--config", "config_file", metavar="FILE",
                     help="YAML config file (default: $ORCH_CONFIG, "
                          "~/.config/orch/client.yaml, /etc/orch/client.yaml)."),
        click.option("--security", metavar="PROVIDER",
                     help="Security provider: x509 (default) or insecure [env ORCH_SECURITY]."),
        click.option("--tls-cert", metavar="FILE", help="Client certificate [env ORCH_TLS_CERT]."),
        click.option("--tls-key", metavar="FILE", help="Its private key [env ORCH_TLS_KEY]."),
        click.option("--tls-ca", metavar="FILE", help="CA certificate [env ORCH_TLS_CA]."),
        click.option("-F", "--wf", "--with-fact", "filter_fact", multiple=True,
                     metavar="FACT=VALUE",
                     help="Fact filter: =, ==, !=, <, >, <=, >=, =~ or /regex/ values."),
        click.option("-C", "--wc", "--with-class", "filter_classes", multiple=True,
                     metavar="CLASS",
                     help="Puppet class filter: a name or /regex/."),
        click.option("-I", "--wi", "--with-identity", "filter_identity", multiple=True,
                     metavar="IDENTITY", help="Identity filter: a name or /regex/."),
        click.option("-A", "--wa", "--with-agent", "filter_agent", multiple=True, metavar="AGENT",
                     help="Only nodes hosting this agent."),
        click.option("-W", "--with", "filter_with_", multiple=True, metavar="'FACT=V CLASS'",
                     help="Combined fact and class filter."),
        click.option("-S", "--select", "filter_compound", multiple=True, metavar="EXPR",
                     help="Compound filter, e.g. \"(role=web or role=db) and not env=dev\"."),
        click.option("--nodes", "nodes_file", metavar="FILE",
                     help="Address the identities listed in FILE ('-' for stdin); "
                          "no discovery."),
        click.option("-t", "--timeout", type=click.FloatRange(min=0, min_open=True),
                     metavar="SECONDS",
                     help="Seconds to wait for replies (default: the action's timeout + 2)."),
        click.option("--dt", "--discovery-timeout", "discovery_timeout",
                     type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
                     help="Longest time discovery may take (default 2)."),
        *call_plan_options(),
        click.option("--discovery-method", metavar="NAME",
                     help="How to find nodes: auto (the inventory when configured and fresh, "
                          "else broadcast), broadcast, inventory, or a plugin's method."),
        click.option("--json", "json_output", is_flag=True,
                     help="Print one JSON document instead of text."),
        click.option("--output-file", type=click.Path(dir_okay=False, writable=True),
                     metavar="FILE",
                     help="Also write the JSON document to FILE (text still goes to the "
                          "terminal)."),
        click.option("--no-progress", "no_progress", is_flag=True,
                     help="Do not draw the progress line on stderr."),
        click.option("-v", "--verbose", is_flag=True, help="More detail."),
    ]

    @functools.wraps(command)
    def wrapper(**kwargs: Any) -> Any:
        ctx = ClientContext(
            overrides={
                "broker": kwargs.pop("broker"),
                "collective": kwargs.pop("collective"),
                "timeout": kwargs.pop("timeout"),
                "discovery_timeout": kwargs.pop("discovery_timeout"),
                "discovery_method": kwargs.pop("discovery_method"),
                **{key: kwargs.pop(key) for key in ("security", "tls_cert", "tls_key", "tls_ca")},
            },
            config_file=kwargs.pop("config_file"),
            filter_options={key: list(kwargs.pop(f"filter_{key}")) for key in
                            ("fact", "classes", "identity", "agent", "with_", "compound")},
            nodes_file=kwargs.pop("nodes_file"),
            json=kwargs.pop("json_output"),
            verbose=kwargs.pop("verbose"),
            progress=not kwargs.pop("no_progress"),
            plan=plan_from_options(kwargs),
            output_file=kwargs.pop("output_file"),
        )
        if ctx.verbose:  # say which discovery method ran and how long it took
            logging.getLogger("orch.discovery.timing").setLevel(logging.INFO)
        try:
            return command(orch=ctx, **kwargs)
        except OrchError as exc:
            raise _as_click_error(exc) from None
        except CallInterrupted as exc:
            from orch.cli.output import print_interrupted, result_document

            if ctx.json or ctx.output_file:  # what arrived, in the machine form asked for
                ctx.emit_json(result_document(exc.result))
            print_interrupted(exc.result)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
        except KeyboardInterrupt:
            click.secho("\nInterrupted before any request was sent.", fg="red", err=True)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
        finally:
            ctx.close()

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


def call_plan_options() -> list[Callable[[F], F]]:
    """``--limit``, ``-1``, ``--batch`` and ``--batch-sleep``: part of :func:`client_options`,
    so every command, plugin commands included, takes them (see :meth:`ClientContext.call`)."""
    return [
        click.option("--limit", "limit", metavar="N|N%",
                     help="Call at most N nodes, or N% of them, of those discovered."),
        click.option("--limit-method", type=click.Choice(["random", "first"]),
                     default="random", show_default=True,
                     help="Which nodes --limit keeps: a random choice or the first by name."),
        click.option("--limit-seed", type=int, metavar="N",
                     help="Seed of --limit's random choice, to repeat it."),
        click.option("-1", "--one", "one", is_flag=True,
                     help="Call one of the matching nodes (--limit 1)."),
        click.option("--batch", "batch", type=click.IntRange(min=1), metavar="N",
                     help="Call N nodes at a time."),
        click.option("--batch-sleep", "batch_sleep", type=click.FloatRange(min=0),
                     default=0.0, metavar="SECONDS",
                     help="Pause between batches (default 0)."),
    ]


def plan_from_options(kwargs: dict[str, Any]) -> CallPlan:
    """The :class:`~orch.core.batch.CallPlan` of the options, popped from ``kwargs``."""
    limit_text, one = kwargs.pop("limit"), kwargs.pop("one")
    method, seed = kwargs.pop("limit_method"), kwargs.pop("limit_seed")
    batch, batch_sleep = kwargs.pop("batch"), kwargs.pop("batch_sleep")
    if one and limit_text is not None:
        raise click.UsageError("give either -1/--one or --limit, not both")
    return _plan("1" if one else limit_text, method, seed, batch, batch_sleep)


def _plan(limit: str | None = None, method: str = "random", seed: int | None = None,
          batch: int | None = None, batch_sleep: float = 0.0) -> CallPlan:
    from orch.core.batch import CallPlan, Limit

    try:
        return CallPlan(Limit.parse(limit, method, seed) if limit is not None else None,
                        batch, batch_sleep)
    except OrchError as exc:
        raise click.BadParameter(str(exc), param_hint="--limit") from None


class OrchCommandError(click.ClickException):
    """An error that is not the user's typing: exit 1 with the message."""

    exit_code = 1


def _as_click_error(exc: Exception) -> click.ClickException:
    from orch.core.errors import (
        ArgumentError,
        ConfigError,
        PluginError,
        UnknownActionError,
        UnknownAgentError,
    )
    from orch.core.filter import FilterSyntaxError

    usage = (ArgumentError, ConfigError, FilterSyntaxError, PluginError, UnknownActionError,
             UnknownAgentError)
    if isinstance(exc, usage):
        return click.UsageError(str(exc))
    return OrchCommandError(str(exc))
