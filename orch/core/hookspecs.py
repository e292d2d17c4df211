# mypy: disable-error-code="empty-body"
"""Hook specifications: every seam through which orch is extended.

A plugin is any importable object (usually a module) with functions decorated by
:data:`hookimpl` whose names match the specifications below. Plugins are found through the
``orch`` entry-point group of installed distributions::

    [options.entry_points]
    orch =
        myplugin = my_package.orch_plugin

The built-in transports, agents, filters, fact sources and commands are registered the same
way, from orch's own ``setup.cfg``; a third-party plugin can do everything they do.

All hooks here are *collecting* hooks: orch calls every implementation and merges the
results, so a plugin only returns what it adds. Keep hook implementations cheap and free of
side effects — they may be called by short-lived CLI commands; import heavy libraries inside
the objects you return, not at module level.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from orch.core.agent import Agent
    from orch.core.authorization import Authorizer
    from orch.core.config import Settings
    from orch.core.discovery import DiscoveryMethod
    from orch.core.facts import FactSource
    from orch.core.filter import FilterKind
    from orch.core.inventory import CallObserver, InventoryStore, ServerService
    from orch.core.requirements import Requirement
    from orch.core.security import SecurityProvider
    from orch.core.transport import Transport

PROJECT = "orch"
ENTRY_POINT_GROUP = "orch"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def orch_transports() -> Mapping[str, Callable[[list[str], Settings], Transport]]:
    """Return ``{url_scheme: factory}`` for the broker URL schemes this plugin serves.

    ``factory(urls, settings)`` receives every broker URL of the configured list (all share
    the scheme of the first one) and the effective settings, and returns an object
    implementing :class:`orch.core.transport.Transport`. It must not connect yet: orch
    connects lazily so that ``--help`` and argument errors never touch the network.

    Two plugins claiming the same scheme is a configuration error reported at start-up.
    """


@hookspec
def orch_transport_requirements() -> Mapping[str, Iterable[Requirement]]:
    """Return ``{url_scheme: [Requirement, …]}``: what each scheme's transport imports.

    A :class:`orch.core.requirements.Requirement` names a module and the pip requirement
    that installs it (``Requirement("redis", "redis")``). Before orch calls a scheme's
    factory it imports these modules, so a missing library is reported as one error naming
    the scheme and the ``pip install`` command, with exit status 2, instead of an
    ``ImportError`` from inside a broker connection; ``orch plugins`` lists them with whether
    each is installed. Declare the same packages in your distribution's ``install_requires``
    (or an extra) — this hook tells the user what is missing, it does not install anything.
    Implementing it is optional; an ``ImportError`` raised by a factory is still reported
    cleanly, but then only the module's name is known.
    """


@hookspec
def orch_security_providers() -> Mapping[str, Callable[[Settings], SecurityProvider]]:
    """Return ``{name: factory}`` for message security providers.

    The provider named by the ``security`` setting seals every outgoing message body and
    opens (verifies) every incoming one; see :class:`orch.core.security.SecurityProvider`.
    """


@hookspec
def orch_authorizers() -> Mapping[str, Callable[[Settings], Authorizer]]:
    """Return ``{name: factory}`` for authorization engines.

    The server uses the one named by the ``authorization`` setting to decide, for every
    authenticated request that passed its filter, whether the caller may run the action.
    See :class:`orch.core.authorization.Authorizer`.
    """


@hookspec
def orch_filter_kinds() -> Iterable[FilterKind]:
    """Return the filter kinds this plugin understands (``fact``, ``class``, ``identity`` …).

    A request's filter is a mapping ``{kind: [term, …]}``; a node answers only when every
    kind matches: all of its terms, or any one of them for kinds with ``match_any`` set
    (identities). A node that does not know a kind named in a request treats
    the filter as not matching and stays silent, so an old node never runs an action meant
    for a narrower set.
    """


@hookspec
def orch_filter_functions() -> Mapping[str, Callable[..., Any]]:
    """Return ``{name: function}`` usable in compound filter expressions.

    ``-S "uptime() > 3600"`` calls ``function(node, *args)`` where ``node`` is a
    :class:`orch.core.filter.NodeView` and ``args`` are the literal arguments written in
    the expression. The returned value is compared like a fact value, or used for its
    truth when written without an operator.
    """


@hookspec
def orch_agents(settings: Settings) -> Iterable[type[Agent]]:
    """Return the agent classes this plugin provides.

    Each is a subclass of :class:`orch.core.agent.Agent` with a unique ``name`` and a DDL.
    The server instantiates every agent it is configured to host, once per node identity.
    ``settings`` lets a plugin find agents in configured places (``agents_dir``); an
    implementation that does not need it may omit the parameter.
    """


@hookspec
def orch_validators() -> Mapping[str, Callable[[Any], bool]]:
    """Return ``{name: predicate}`` for DDL input validators.

    A DDL input whose ``validation`` is a lower-case word (``"validation": "shellsafe"``)
    names a validator; the predicate receives the (string) value and returns whether it is
    acceptable. Client and server both apply it before an action runs.
    """


@hookspec
def orch_aggregate_functions() -> Mapping[str, Callable[..., Any]]:
    """Return ``{name: factory}`` for DDL aggregate functions.

    ``factory(*args)`` receives the DDL's extra ``args`` and returns an
    :class:`orch.ddl.aggregate.Aggregator`, fed each OK reply's value of the output.
    """


@hookspec
def orch_fact_sources(settings: Settings) -> Iterable[FactSource]:
    """Return the fact sources this plugin contributes for a node with ``settings``.

    Facts from every source are merged, later sources overriding earlier ones key by key;
    the built-in facts come first and the configured fact files after them.
    """


@hookspec
def orch_reload(settings: Settings) -> None:
    """Called when ``orch server`` receives SIGHUP, before it re-reads agents and facts;
    ``settings`` are the freshly read ones (the configuration is re-read first).

    Drop whatever you cache about the outside world (an agents directory's contents, a fact
    cache) so the next ``orch_agents`` / ``orch_fact_sources`` call sees it afresh.
    """


@hookspec
def orch_discovery_methods() -> Mapping[str, DiscoveryMethod]:
    """Return ``{name: method}`` for ways of finding the nodes a filter selects.

    ``broadcast`` (ask the live fleet) is built in; an inventory or PuppetDB method can be
    added by a plugin and chosen with ``--discovery-method``.
    """


@hookspec
def orch_inventory_stores() -> Mapping[str, Callable[[str, Settings], InventoryStore]]:
    """Return ``{url_scheme: factory}`` for inventory stores (``sqlite``, ``postgresql`` …).

    ``factory(url, settings)`` opens the store the ``store`` setting of the ``inventory``
    plugin section names and returns an :class:`orch.core.inventory.InventoryStore`,
    creating its schema when missing; it raises :class:`~orch.core.errors.ConfigError`
    (with what to install or fix) when it cannot. Import the database driver inside the
    factory. Two plugins claiming one scheme is an error that names it.
    """


@hookspec
def orch_server_services(settings: Settings) -> Iterable[ServerService]:
    """Return services to run beside ``orch server`` for as long as it runs.

    Each :class:`orch.core.inventory.ServerService` is started once the daemon's node is
    built (``start(node, transport, ready)``), told after every SIGHUP reload (``reloaded()``),
    and stopped before the transport closes (``stop()``). Registration is one. A service
    runs its own threads, must return from every call promptly, and must never raise
    into the daemon (what it raises is logged and the service dropped).
    """


@hookspec
def orch_call_observers(settings: Settings) -> Iterable[CallObserver]:
    """Return observers told about every request a :class:`~orch.core.client.Client` sends.

    An :class:`orch.core.inventory.CallObserver` hears ``sent(request, expected)`` before
    a request is published, ``replied(request, reply)`` for each accepted reply and
    ``finished(result)`` when collection ends. They are called on the client's reply path:
    hand the work to a thread of your own and return at once (job history does). What an
    observer raises is logged and ignored; it never fails a call.
    """


@hookspec
def orch_cli_commands() -> Iterable[click.Command]:
    """Return click commands (or groups) to add to the ``orch`` command line.

    Use :func:`orch.cli.options.client_options` on a command to get the standard filter,
    broker, collective, ``--json`` and timeout options and a ready
    :class:`orch.core.client.Client`.
    """
