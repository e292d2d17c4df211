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

Every hook but one is *collecting*: orch calls every implementation and merges the results,
so a plugin only returns what it adds; two plugins returning the same name is an error that
names it. ``orch_reload`` is a *notification*: each implementation is called once, its
return value ignored, and one that raises is logged without stopping the others. Keep hook
implementations cheap and free of side effects — they may be called by short-lived CLI
commands, and each docstring's "Called" line says when and how often; import heavy
libraries inside the objects you return, not at module level. Hooks without arguments are
also called once when the plugin index is (re)built (``orch`` then imports every plugin and
records the names each returns), so they must return the same names every time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from orch.core.markers import ENTRY_POINT_GROUP, PROJECT, hookimpl, hookspec

if TYPE_CHECKING:
    import click

    from orch.core.agent import Agent
    from orch.core.authorization import Authorizer
    from orch.core.config import Settings
    from orch.core.discovery import DiscoveryMethod
    from orch.core.facts import FactSource
    from orch.core.filter import FilterKind
    from orch.core.inventory import CallObserver, InventoryStore, ServerService
    from orch.core.plugins import PluginRegistry
    from orch.core.requirements import Requirement
    from orch.core.security import SecurityProvider
    from orch.core.transport import Transport
    from orch.ddl.aggregate import Aggregator

__all__ = ["ENTRY_POINT_GROUP", "PROJECT", "hookimpl", "hookspec"]


@hookspec
def orch_transports() -> Mapping[str, Callable[[list[str], Settings], Transport]]:
    """Return ``{url_scheme: factory}`` for the broker URL schemes this plugin serves.

    ``factory(urls, settings)`` receives every broker URL of the configured list (all share
    the scheme of the first one) and the effective settings, and returns an object
    implementing :class:`orch.core.transport.Transport`. It must not connect yet: orch
    connects lazily so that ``--help`` and argument errors never touch the network.

    Two plugins claiming the same scheme is a configuration error reported at start-up.

    Called: by every command that connects (``orch server`` at start and for each
    reply connection, each client command, ``orch demo``), once per lookup of a scheme; only
    the plugin serving the broker URL's scheme is imported.
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

    Called: before a scheme's factory is first used in a process, and by ``orch
    plugins``.
    """


@hookspec
def orch_security_providers() -> Mapping[str, Callable[[Settings], SecurityProvider]]:
    """Return ``{name: factory}`` for message security providers.

    The provider named by the ``security`` setting seals every outgoing message body and
    opens (verifies) every incoming one; see :class:`orch.core.security.SecurityProvider`.

    Called: once when a process builds its security provider (server start, each
    client command); only the provider named by ``security`` is imported.
    """


@hookspec
def orch_authorizers() -> Mapping[str, Callable[[Settings], Authorizer]]:
    """Return ``{name: factory}`` for authorization engines.

    The server uses the one named by the ``authorization`` setting to decide, for every
    authenticated request that passed its filter, whether the caller may run the action.
    See :class:`orch.core.authorization.Authorizer`.

    Called: once when ``orch server`` (or a simulated fleet) starts; the factory is
    called once per daemon.
    """


@hookspec
def orch_filter_kinds() -> Iterable[FilterKind]:
    """Return the filter kinds this plugin understands (``fact``, ``class``, ``identity`` …).

    A request's filter is a mapping ``{kind: [term, …]}``; a node answers only when every
    kind matches: all of its terms, or any one of them for kinds with ``match_any`` set
    (identities). A node that does not know a kind named in a request treats
    the filter as not matching and stays silent, so an old node never runs an action meant
    for a narrower set.

    Called: when a filter engine is built — once when a server starts, once per client.
    """


@hookspec
def orch_filter_functions() -> Mapping[str, Callable[..., Any]]:
    """Return ``{name: function}`` usable in compound filter expressions.

    ``-S "uptime() > 3600"`` calls ``function(node, *args)`` where ``node`` is a
    :class:`orch.core.filter.NodeView` and ``args`` are the literal arguments written in
    the expression. The returned value is compared like a fact value, or used for its
    truth when written without an operator.

    Called: when a filter engine is built — once when a server starts, once per client.
    """


@hookspec
def orch_agents(settings: Settings) -> Iterable[type[Agent]]:
    """Return the agent classes this plugin provides.

    Each is a subclass of :class:`orch.core.agent.Agent` with a unique ``name`` and a DDL.
    The server instantiates every agent it is configured to host, once per node identity.
    ``settings`` lets a plugin find agents in configured places (``agents_dir``); an
    implementation that does not need it may omit the parameter.

    Called: when ``orch server`` starts and after every SIGHUP (after ``orch_reload``),
    and by client commands that need an agent's DDL (possibly several times per command):
    cache what is expensive to find, and drop the cache in ``orch_reload``.
    """


@hookspec
def orch_agent_names() -> Iterable[str]:
    """Optional: the name of every agent this plugin's ``orch_agents`` may return.

    A client command needs one agent (its DDL) and should not import every agent plugin
    installed to find it: with this hook the cached plugin index knows which plugin provides
    which agent, and a command imports this plugin only when it names one of these agents.
    List every name ``orch_agents`` can return, whatever the settings. A plugin whose agents
    depend on its settings (found in a configured directory, say) leaves this hook out and
    is then imported and asked by every command that looks up an agent.

    Called: only when the plugin index is built (every plugin imported once); the names are
    read back from the index file after that.
    """


@hookspec
def orch_validators() -> Mapping[str, Callable[[Any], bool]]:
    """Return ``{name: predicate}`` for DDL input validators.

    A DDL input whose ``validation`` is a lower-case word (``"validation": "shellsafe"``)
    names a validator; the predicate receives the (string) value and returns whether it is
    acceptable. Client and server both apply it before an action runs.

    Called: once per registry (the merged result is cached) — once per server, once
    per client that checks arguments.
    """


@hookspec
def orch_aggregate_functions() -> Mapping[str, Callable[..., Aggregator]]:
    """Return ``{name: factory}`` for DDL aggregate functions.

    ``factory(*args)`` receives the DDL's extra ``args`` and returns an
    :class:`orch.ddl.aggregate.Aggregator`, fed each OK reply's value of the output.

    Called: when a client summarises a call's replies with the DDL's aggregates,
    once per command.
    """


@hookspec
def orch_fact_sources(settings: Settings) -> Iterable[FactSource]:
    """Return the fact sources this plugin contributes for a node with ``settings``.

    Facts from every source are merged, later sources overriding earlier ones key by key;
    the built-in facts come first and the configured fact files after them.

    Called: when ``orch server`` starts and after every SIGHUP, in entry-point name
    order; each source's ``facts()`` is then called whenever the node refreshes its facts.
    """


@hookspec
def orch_reload(settings: Settings) -> None:
    """Called when ``orch server`` receives SIGHUP, before it re-reads agents and facts;
    ``settings`` are the freshly read ones (the configuration is re-read first).

    Drop whatever you cache about the outside world (an agents directory's contents, a fact
    cache) so the next ``orch_agents`` / ``orch_fact_sources`` call sees it afresh.

    Called: once per SIGHUP received by ``orch server``, as a notification (see above).
    """


@hookspec
def orch_discovery_methods() -> Mapping[str, DiscoveryMethod]:
    """Return ``{name: method}`` for ways of finding the nodes a filter selects.

    ``broadcast`` (ask the live fleet) is built in; an inventory or PuppetDB method can be
    added by a plugin and chosen with ``--discovery-method``.

    Called: once per client command that discovers nodes.
    """


@hookspec
def orch_settings() -> Mapping[str, type]:
    """Return ``{section name: class}``: the settings sections this plugin declares.

    The class is a frozen dataclass whose fields are made with :func:`orch.plugin.setting`
    (default, converter, one-line description, optional top-level ``aliases``). orch reads
    the section from ``plugins: {<name>: {…}}`` in the config file, ``ORCH_<NAME>_<KEY>`` in
    the environment and the command line, checks it like its own settings (an unknown key
    or a bad value is an error naming the key and its source, with a suggestion), and
    documents it. Read it with ``settings.section(name, cls)``, which returns an instance of
    ``cls``. Called once per process when a section or alias is first needed, and by
    ``orch server`` at start to check every section. Two plugins declaring one section
    name, or one alias, is a configuration error.
    """


@hookspec
def orch_inventory_stores() -> Mapping[str, Callable[[str, Settings], InventoryStore]]:
    """Return ``{url_scheme: factory}`` for inventory stores (``sqlite``, ``postgresql`` …).

    ``factory(url, settings)`` opens the store the ``store`` setting of the ``inventory``
    plugin section names and returns an :class:`orch.core.inventory.InventoryStore`,
    creating its schema when missing; it raises :class:`~orch.core.errors.ConfigError`
    (with what to install or fix) when it cannot. Import the database driver inside the
    factory. Two plugins claiming one scheme is an error that names it.

    Called when a process opens the inventory (``orch registry``, inventory discovery,
    ``orch nodes``/``orch jobs``, job history), once per store it opens; only plugins
    claiming the asked-for scheme are imported.
    """


@hookspec
def orch_server_services(settings: Settings) -> Iterable[ServerService]:
    """Return services to run beside ``orch server`` for as long as it runs.

    Each :class:`orch.core.inventory.ServerService` is started once the daemon's node is
    built (``start(node, transport, ready)``), told after every SIGHUP reload (``reloaded()``),
    and stopped before the transport closes (``stop()``). Registration is one. A service
    runs its own threads, must return from every call promptly, and must never raise
    into the daemon (what it raises is logged and the service dropped).

    Called once per ``orch server`` start, after its settings were checked.
    """


@hookspec
def orch_call_observers(settings: Settings, registry: PluginRegistry) -> Iterable[CallObserver]:
    """Return observers told about every request a :class:`~orch.core.client.Client` sends.

    ``registry`` is the client's: open what the observer needs (a store) through it.

    An :class:`orch.core.inventory.CallObserver` hears ``sent(request, expected)`` before
    a request is published, ``replied(request, reply)`` for each accepted reply and
    ``finished(result)`` when collection ends. They are called on the client's reply path:
    hand the work to a thread of your own and return at once (job history does). What an
    observer raises is logged and ignored; it never fails a call. Calls made in batches
    (:func:`orch.core.batch.call_nodes`) are told as one job: one ``sent`` (the first
    batch's request, every chosen node expected), every batch's replies under it, one
    ``finished`` (see :meth:`~orch.core.client.Client.one_job`).

    Called once per :class:`~orch.core.client.Client`, at its first call.
    """


@hookspec
def orch_cli_commands() -> Iterable[click.Command]:
    """Return click commands (or groups) to add to the ``orch`` command line.

    Use :func:`orch.cli.options.client_options` on a command to get the standard filter,
    broker, collective, ``--json`` and timeout options and a ready
    :class:`orch.core.client.Client`.

    Called: on every ``orch`` invocation that looks up a command (only the plugin
    providing that name is imported) or lists them (``orch --help`` imports all). Two plugins
    claiming one command name is an error.
    """


@hookspec
def orch_api_routes() -> Iterable[Any]:
    """Return Starlette routes to add to ``orch api`` (paths under ``/api/``).

    A route's handler gets a client signing as the caller's token with
    ``request.scope["orch.client"]()`` (so a contrib plugin needs no import from
    ``orch.api``; built-in code may use ``orch.api.context``); the route is listed in
    ``/openapi.json`` with its docstring's first line. Only called when the API runs, so a
    plugin may import Starlette lazily.

    Called once, when ``orch api`` (or ``orch demo --api``) builds its application.
    """
