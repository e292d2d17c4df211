"""The options every client command shares, and the context object they produce.

Plugin commands get the same options by decorating themselves with :func:`client_options`;
the command then receives a :class:`ClientContext` as its ``orch`` argument.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import click

from orch.core.errors import OrchError

if TYPE_CHECKING:  # imported lazily at run time: --help must not pay for them
    from orch.core.client import Client
    from orch.core.config import Settings

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
    _client: Client | None = field(default=None, repr=False)
    _settings: Settings | None = field(default=None, repr=False)
    _filter: dict[str, list[Any]] | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        from orch.core.config import load_settings

        if self._settings is None:
            from orch.cli.context import environ

            self._settings = load_settings(self.config_file, self.overrides, environ())
        return self._settings

    def client(self) -> Client:
        """The :class:`orch.core.client.Client` for these options (created once)."""
        from orch.core.client import Client

        if self._client is None:
            from orch.cli.context import registry

            self._client = Client(self.settings, registry())
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    @property
    def filter(self) -> dict[str, list[Any]]:
        """The request filter built from -F/-C/-I/-A/-W/-S."""
        if self._filter is None and not any(self.filter_options.values()):
            self._filter = {}  # no options select every node: no filter plugin is needed
        if self._filter is None:
            from orch.core.filterargs import build_filter

            opts = self.filter_options
            self._filter = build_filter(
                self.client().filters, fact=opts["fact"], classes=opts["classes"],
                identities=opts["identity"], agents=opts["agent"],
                compound=opts["compound"], with_=opts["with_"],
            )
        return self._filter

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
        click.option("--config", "config_file", envvar="ORCH_CONFIG", metavar="FILE",
                     help="YAML config file [env ORCH_CONFIG]."),
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
        click.option("--timeout", type=float, metavar="SECONDS",
                     help="Seconds to wait for replies (default: the action's timeout + 2)."),
        click.option("--discovery-timeout", type=float, metavar="SECONDS",
                     help="Longest time discovery may take (default 2)."),
        click.option("--discovery-method", metavar="NAME",
                     help="How to find nodes: auto (the inventory when configured and fresh, "
                          "else broadcast), broadcast, inventory, or a plugin's method."),
        click.option("--json", "json_output", is_flag=True,
                     help="Print one JSON document instead of text."),
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
        )
        if ctx.verbose:  # say which discovery method ran and how long it took
            logging.getLogger("orch.discovery.timing").setLevel(logging.INFO)
        try:
            return command(orch=ctx, **kwargs)
        except OrchError as exc:
            raise _as_click_error(exc) from None
        finally:
            ctx.close()

    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]


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
