"""Finding, loading and querying plugins.

:class:`PluginRegistry` wraps a :class:`pluggy.PluginManager`: it loads every entry point of
the ``orch`` group, keeps going when one of them is broken (recording why), and offers
typed accessors that merge what all plugins returned for each hook.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

from orch.core import hookspecs
from orch.core.errors import ConfigError, PluginError, interrupted

if TYPE_CHECKING:
    import click

    from orch.core.agent import Agent
    from orch.core.authorization import Authorizer
    from orch.core.config import Settings
    from orch.core.discovery import DiscoveryMethod
    from orch.core.facts import FactSource
    from orch.core.filter import FilterKind
    from orch.core.inventory import CallObserver, InventoryStore, ServerService
    from orch.core.pluginindex import EntryPointRecord, Index, PluginHooks
    from orch.core.requirements import Requirement
    from orch.core.security import SecurityProvider
    from orch.core.transport import Transport
    from orch.ddl.aggregate import Aggregator

log = logging.getLogger(__name__)

#: The longest a forked child may take to import every plugin for the index.
INDEX_CHILD_TIMEOUT = 60.0
T = TypeVar("T")


@dataclass(frozen=True)
class PluginInfo:
    """What ``orch plugins`` shows about one plugin."""

    name: str
    distribution: str
    version: str
    hooks: tuple[str, ...] = ()
    error: str | None = None


@dataclass
class PluginRegistry:
    """All plugins of this process, loaded on first use and queried by hook.

    Plugins found through entry points are imported only when a hook they implement is
    called (and, for named things such as a transport scheme or a command, only the plugin
    that provides the name), as the cached :mod:`orch.core.pluginindex` says. Without a
    valid index every plugin is imported at once, as before. Reaching :attr:`manager`,
    :attr:`hook` or :attr:`infos` directly loads every plugin.
    """

    _manager: pluggy.PluginManager = field(
        default_factory=lambda: _new_manager()
    )
    _infos: dict[str, PluginInfo] = field(default_factory=dict)
    _validators: dict[str, Callable[[Any], bool]] | None = field(default=None, repr=False)
    #: Entry points not imported yet, and what the index says each provides.
    _pending: dict[str, EntryPointRecord] = field(default_factory=dict, repr=False)
    _index: dict[str, PluginHooks] | None = field(default=None, repr=False)
    #: Set when the index must be (re)written once every plugin is loaded.
    _index_todo: tuple[str, list[EntryPointRecord], list[str]] | None = field(
        default=None, repr=False)
    _stale: bool = field(default=False, repr=False)
    _group: str = field(default=hookspecs.ENTRY_POINT_GROUP, repr=False)
    #: Names of the entry points found, and of every plugin in registration order.
    _entry_names: list[str] = field(default_factory=list, repr=False)
    _registered: list[str] = field(default_factory=list, repr=False)

    @classmethod
    def from_entry_points(cls, group: str = hookspecs.ENTRY_POINT_GROUP, *,
                          lean: bool = False) -> PluginRegistry:
        """Find every plugin advertised under ``group``; broken ones are recorded, not raised.

        Plugins are imported lazily when a valid index is cached, else all at once to build
        it. With ``lean`` (a daemon: what it imports stays resident for weeks) a missing
        index is built in a forked child instead, so that this process still imports only
        the plugins it uses: an idle ``orch server`` started with no index (a new install,
        no writable cache) was 32.9 MB instead of 28.9.
        """
        from orch.core import pluginindex

        registry = cls(_group=group)
        index = pluginindex.load(group, _hook_names())
        if index is None and lean:
            index = _index_in_child(group)  # the child also stores it, when it can
        if index is not None:
            registry._entry_names = [r.name for r in index.entry_points]
            registry._pending = {r.name: r for r in index.entry_points}
            registry._index = index.plugins
            return registry
        records, files = pluginindex.scan(group)
        registry._entry_names = [r.name for r in records]
        registry._pending = {r.name: r for r in records}
        if files is not None:
            registry._index_todo = (group, records, files)
        registry._load_all()
        return registry

    @property
    def manager(self) -> pluggy.PluginManager:
        self._load_all()
        return self._manager

    @property
    def infos(self) -> dict[str, PluginInfo]:
        self._load_all()
        return self._infos

    def _load(self, names: Iterable[str]) -> None:
        for name in sorted(names):
            record = self._pending.pop(name, None)
            if record is None:
                continue
            try:
                plugin = record.load()
            except Exception as exc:  # any import-time failure of third-party code
                if interrupted(exc):
                    raise KeyboardInterrupt from exc
                self._broken(record.name, record.distribution, record.version,
                             f"cannot import {record.value}: {exc!r}")
                continue
            self.register(plugin, record.name, record.distribution, record.version)

    def _load_all(self) -> None:
        if self._stale:  # the index proved wrong: scan the metadata for what it missed
            self._stale = False
            self._rescan()
        if self._pending:
            self._load(list(self._pending))
        if self._index_todo is not None:
            group, records, files = self._index_todo
            self._index_todo = None
            from orch.core import pluginindex

            plugins = {r.name: self._provided(r.name) for r in records}
            pluginindex.save(group, _hook_names(), records, files, plugins)

    def _rescan(self) -> None:
        from orch.core import pluginindex

        records, files = pluginindex.scan(self._group)
        for record in records:
            if record.name not in self._infos and record.name not in self._pending:
                self._pending[record.name] = record
                self._entry_names.append(record.name)
        if files is not None:
            self._index_todo = (self._group, records, files)

    def _provided(self, name: str) -> PluginHooks:
        """What the loaded plugin ``name`` provides, for the index (None if broken)."""
        from orch.core.pluginindex import KEYED_HOOKS

        info = self._infos.get(name)
        plugin = self._manager.get_plugin(name)
        if info is None or info.error is not None or plugin is None:
            return None
        provided: dict[str, list[str] | None] = {}
        for caller in self._manager.get_hookcallers(plugin) or []:
            names = KEYED_HOOKS.get(caller.name)
            if names is None:
                provided[caller.name] = None
                continue
            keys: list[str] = []
            for impl in caller.get_hookimpls():
                if impl.plugin_name == name:
                    keys.extend(names(impl.function()))
            provided[caller.name] = sorted(keys)
        return provided

    def _need(self, hook: str, key: str | None = None, names_hook: str | None = None) -> None:
        """Import the pending plugins that implement ``hook`` (and provide ``key``).

        ``names_hook``: the keys a plugin provides through ``hook`` are the names it returns
        from that other hook (``orch_agents`` takes settings, so ``orch_agent_names`` names
        its agents); a plugin without it may provide any key.
        """
        if not self._pending:
            return
        if self._index is None:
            self._load_all()
            return
        wanted = []
        for name in self._pending:
            provided = self._index.get(name)
            if provided is None:
                wanted.append(name)  # broken or unknown: let it report itself
            elif hook in provided:
                keys = provided.get(names_hook) if names_hook else provided[hook]
                if key is None or keys is None or key in keys:
                    wanted.append(name)
        self._load(wanted)

    def index_providers(self, hook: str, key: str) -> list[str] | None:
        """The entry points that provide ``key`` through ``hook`` by the cached index,
        without importing any plugin (``orch server``'s click-free start asks who provides
        ``server``); None when the index cannot tell: none is cached, it proved stale, a
        plugin is broken or its names are unknown, or a plugin was registered by hand."""
        if self._index is None or self._stale:
            return None
        if any(name not in self._index for name in self._registered):
            return None
        found = []
        for name, provided in self._index.items():
            if provided is None:
                return None
            if hook in provided:
                keys = provided[hook]
                if keys is None:
                    return None
                if key in keys:
                    found.append(name)
        return sorted(found)

    def _in_load_order(self, hook: str, **kwargs: Any) -> list[Any]:
        """``hook``'s results in the order an eager load registers plugins: entry points by
        name, then plugins registered by hand in their order (pluggy's own order follows
        registration, which lazy loading changes)."""
        self._need(hook)
        names = sorted(set(self._entry_names))
        rank = {name: (0, i) for i, name in enumerate(names)}
        rank.update({name: (1, i) for i, name in enumerate(self._registered)
                     if name not in rank})
        caller = getattr(self._manager.hook, hook)
        if any(impl.hookwrapper or impl.wrapper for impl in caller.get_hookimpls()):
            return list(reversed(caller(**kwargs)))  # wrappers: pluggy's own calling
        impls = sorted(caller.get_hookimpls(), key=lambda impl: rank.get(impl.plugin_name,
                                                                          (2, 0)))
        results = []
        for impl in impls:
            result = impl.function(*[kwargs[arg] for arg in impl.argnames])
            if result is not None:
                results.append(result)
        return results

    def _call(self, hook: str, key: str | None = None, **kwargs: Any) -> list[Any]:
        """Call ``hook`` on the plugins that may answer it; with ``key``, make sure one
        did, else load every plugin (the index was out of date) and call it again."""
        self._need(hook, key)
        results: list[Any] = getattr(self._manager.hook, hook)(**kwargs)
        if key is not None and self._index is not None and key not in _keys_of(hook, results):
            self._index = None  # out of date: trust the metadata and the plugins instead
            self._stale = True
            self._load_all()
            results = getattr(self._manager.hook, hook)(**kwargs)
        return results

    def register(
        self, plugin: object, name: str, distribution: str = "?", version: str = "?"
    ) -> bool:
        """Register ``plugin`` under ``name``; return False (and record why) if it is invalid."""
        if name in self._infos and self._infos[name].error is None:
            self._broken(name, distribution, version, f"duplicate plugin name {name!r}")
            return False
        self._validators = None
        try:
            self._manager.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            # pluggy registers implementations one by one: undo the valid ones too.
            if self._manager.get_plugin(name) is plugin:
                self._manager.unregister(name=name)
            self._broken(name, distribution, version, f"invalid hook implementation: {exc}")
            return False
        callers = self._manager.get_hookcallers(plugin) or []
        unknown = sorted(h.name for h in callers if h.spec is None)
        if unknown:
            self._manager.unregister(plugin)
            self._broken(
                name, distribution, version,
                f"implements unknown hook(s) {', '.join(unknown)}; "
                "check the spelling against orch.core.hookspecs",
            )
            return False
        hooks = tuple(sorted(h.name for h in callers))
        self._infos[name] = PluginInfo(name, distribution, version, hooks)
        self._registered.append(name)
        return True

    def _broken(self, name: str, dist: str, version: str, reason: str) -> None:
        log.warning("plugin %s (%s %s) skipped: %s", name, dist, version, reason)
        self._infos[name] = PluginInfo(name, dist, version, (), reason)

    @property
    def hook(self) -> Any:
        """pluggy's hook relay, with every plugin loaded."""
        return self.manager.hook

    # -- merged accessors -------------------------------------------------------------

    def _merged(self, results: Iterable[Mapping[str, T] | None], what: str) -> dict[str, T]:
        merged: dict[str, T] = {}
        for mapping in results:
            for key, value in (mapping or {}).items():
                if key in merged and merged[key] is not value:
                    raise PluginError(
                        f"two plugins provide the {what} {key!r}; uninstall one of them "
                        "(see `orch plugins`)"
                    )
                merged[key] = value
        return merged

    def transports(self) -> dict[str, Callable[[list[str], Settings], Transport]]:
        return self._merged(self._call("orch_transports"), "transport scheme")

    def transport_requirements(self) -> dict[str, tuple[Requirement, ...]]:
        """``{scheme: requirements}``; several plugins may add to the same scheme."""
        from orch.core.requirements import Requirement

        merged: dict[str, tuple[Requirement, ...]] = {}
        for mapping in self._call("orch_transport_requirements"):
            for scheme, requirements in (mapping or {}).items():
                checked = tuple(requirements)
                if not all(isinstance(r, Requirement) for r in checked):
                    raise PluginError(
                        f"orch_transport_requirements for {scheme}:// returned {checked!r}; "
                        "each item must be an orch.core.requirements.Requirement")
                merged[scheme] = (*merged.get(scheme, ()), *checked)
        return merged

    def security_providers(self) -> dict[str, Callable[[Settings], SecurityProvider]]:
        return self._merged(self._call("orch_security_providers"), "security provider")

    def authorizers(self) -> dict[str, Callable[[Settings], Authorizer]]:
        return self._merged(self._call("orch_authorizers"), "authorizer")

    def filter_kinds(self) -> dict[str, FilterKind]:
        kinds = [k for result in self._call("orch_filter_kinds") for k in result]
        return self._merged([{k.name: k} for k in kinds], "filter kind")

    def filter_functions(self) -> dict[str, Callable[..., Any]]:
        return self._merged(self._call("orch_filter_functions"), "filter function")

    def agents(self, settings: Settings | None = None) -> dict[str, type[Agent]]:
        """Every agent class plugins offer for ``settings`` (default settings if None)."""
        from orch.core.config import Settings as DefaultSettings

        results = self._call("orch_agents", settings=settings or DefaultSettings())
        classes = [cls for result in results for cls in result]
        return self._merged([{cls.name: cls} for cls in classes], "agent")

    def agent(self, name: str, settings: Settings | None = None) -> type[Agent] | None:
        """The class of agent ``name`` for ``settings``, or None when no plugin provides it.

        Imports only the plugins that may provide it: those listing ``name`` in
        ``orch_agent_names``, and those implementing ``orch_agents`` without listing names
        (their agents depend on the settings, like ``agents_dir``). A command that needs one
        agent's DDL so leaves every other agent plugin unimported.
        """
        from orch.core.config import Settings as DefaultSettings

        self._need("orch_agents", name, names_hook="orch_agent_names")
        results = self._manager.hook.orch_agents(settings=settings or DefaultSettings())
        found = [{cls.name: cls} for result in results for cls in result if cls.name == name]
        return self._merged(found, "agent").get(name)

    def fact_sources(self, settings: Settings) -> list[FactSource]:
        # Later sources win key by key: the order must not depend on which plugin a lazy
        # registry happened to import first (built-ins sort first, as entry points by name).
        results = self._in_load_order("orch_fact_sources", settings=settings)
        return [source for result in results for source in result]

    def validators(self) -> dict[str, Callable[[Any], bool]]:
        """Named DDL validators (cached: the DDL compiler keys compiled schemas on it)."""
        if self._validators is None:
            self._validators = self._merged(self._call("orch_validators"), "validator")
        return self._validators

    def aggregate_functions(self) -> dict[str, Callable[..., Aggregator]]:
        return self._merged(self._call("orch_aggregate_functions"), "aggregate function")

    def notify_reload(self, settings: Settings) -> None:
        """Tell every plugin implementing ``orch_reload`` that the daemon got SIGHUP.

        A notification, not a collecting call: each implementation runs once, in load
        order; what it returns is ignored, and one that raises is logged without keeping
        the others from dropping their caches.
        """
        self._need("orch_reload")
        names = sorted(set(self._entry_names))
        rank = {name: (0, i) for i, name in enumerate(names)}
        rank.update({name: (1, i) for i, name in enumerate(self._registered)
                     if name not in rank})
        impls = sorted(self._manager.hook.orch_reload.get_hookimpls(),
                       key=lambda impl: rank.get(impl.plugin_name, (2, 0)))
        for impl in impls:
            try:
                impl.function(*[{"settings": settings}[arg] for arg in impl.argnames])
            except Exception:  # third-party code: log it, let the others reload
                log.exception("plugin %s: orch_reload failed", impl.plugin_name)

    def discovery_methods(self, name: str | None = None) -> dict[str, DiscoveryMethod]:
        """Every installed discovery method by name — or, with ``name``, those of the
        plugins that provide it (by the cached index: a command using one method does not
        import the others)."""
        return self._merged(self._call("orch_discovery_methods", name), "discovery method")

    def api_routes(self) -> list[Any]:
        """Routes plugins add to ``orch api`` (Starlette routes)."""
        return [route for result in self._call("orch_api_routes") for route in result]

    def inventory_stores(self) -> dict[str, Callable[[str, Settings], InventoryStore]]:
        return self._merged(self._call("orch_inventory_stores"), "inventory store scheme")

    def inventory_store(self, url: str, settings: Settings) -> InventoryStore:
        """Open the inventory store ``url`` names, from whichever plugin claims its scheme."""
        scheme = url.split("://", 1)[0] if "://" in url else ""
        factory = self._merged(self._call("orch_inventory_stores", scheme),
                               "inventory store scheme").get(scheme)
        if factory is None:
            raise ConfigError(f"no plugin provides inventory stores for {scheme}:// "
                              f"(installed: {', '.join(sorted(self.inventory_stores()))})")
        return factory(url, settings)

    def server_services(self, settings: Settings) -> list[ServerService]:
        results = self._in_load_order("orch_server_services", settings=settings)
        return [service for result in results for service in result]

    def call_observers(self, settings: Settings) -> list[CallObserver]:
        results = self._in_load_order("orch_call_observers", settings=settings,
                                      registry=self)
        return [observer for result in results for observer in result]

    def cli_commands(self, name: str | None = None) -> list[click.Command]:
        """Every plugin command, or (loading less) at least those called ``name``.

        Two plugins claiming one command name is a :class:`PluginError`, like every other
        conflict (it used to be the first one registered that won, silently)."""
        commands = [cmd for result in self._call("orch_cli_commands", name) for cmd in result]
        self._merged([{cmd.name: cmd} for cmd in commands if cmd.name], "command")
        return commands

    def settings_sections(self, key: str | None = None) -> dict[str, type]:
        """``{section name: declaring class}`` of every plugin's ``orch_settings`` (or, loading
        less, at least the plugin declaring the section or alias ``key``)."""
        from orch.core import sections

        merged = self._merged(self._call("orch_settings", key), "settings section")
        owners: dict[str, str] = {}
        for name, cls in merged.items():
            sections.declared(cls)  # a TypeError for a class that is not a dataclass
            for alias in sections.aliases(cls):
                if alias in owners and owners[alias] != name:
                    raise PluginError(
                        f"the settings sections {owners[alias]!r} and {name!r} both claim the "
                        f"top-level setting {alias!r}; uninstall one of them (see `orch plugins`)")
                owners[alias] = name
        return merged

    def setting_aliases(self) -> dict[str, tuple[str, str]]:
        """``{top-level alias: (section, key)}`` declared by every plugin."""
        from orch.core import sections
        from orch.core.config import Settings

        core = set(Settings.documented())
        found: dict[str, tuple[str, str]] = {}
        for name, cls in self.settings_sections().items():
            for alias, key in sections.aliases(cls).items():
                if alias in core:
                    raise PluginError(f"settings section {name!r} declares {alias!r} as an "
                                      "alias, but it is one of orch's own settings")
                found[alias] = (name, key)
        return found

    def setting_alias(self, alias: str) -> tuple[str, str] | None:
        """The ``(section, key)`` that top-level ``alias`` stands for, or None."""
        from orch.core import sections

        for name, cls in self.settings_sections(alias).items():
            if alias in sections.aliases(cls):
                return name, sections.aliases(cls)[alias]
        return None

    def check_settings(self, settings: Settings) -> None:
        """Check every declared section of ``settings`` now (a daemon does at start, so a
        typo stops it instead of surfacing at the first request that reads the section)."""
        for name, cls in self.settings_sections().items():
            settings.section(name, cls)

    # -- choosing plugins by settings ---------------------------------------------------

    def transport_for(self, settings: Settings) -> Transport:
        """The transport for ``settings.broker``, from whichever plugin claims its scheme."""
        schemes = {url.split("://", 1)[0] if "://" in url else "" for url in settings.broker}
        scheme = settings.broker[0].split("://", 1)[0] if "://" in settings.broker[0] else ""
        factories = self._merged(self._call("orch_transports", scheme), "transport scheme")
        from orch.core import requirements

        if scheme not in factories:
            raise requirements.unknown_scheme_error(self, settings.broker[0], scheme, factories)
        if len(schemes) > 1:
            raise ConfigError(f"all broker URLs must use the same scheme ({scheme}://)")
        requirements.ensure_transport(self, scheme)  # a missing library: one clear error
        try:
            return factories[scheme](list(settings.broker), settings)
        except ImportError as exc:
            raise requirements.import_error(
                scheme, requirements.transport_owners(self).get(scheme, "?"), exc) from None

    def security_for(self, settings: Settings) -> SecurityProvider:
        """The security provider named by ``settings.security``."""
        providers = self._merged(self._call("orch_security_providers", settings.security),
                                 "security provider")
        if settings.security not in providers:
            raise ConfigError(
                f"unknown security provider {settings.security!r}; "
                f"installed: {', '.join(sorted(providers)) or 'none'}"
            )
        return providers[settings.security](settings)

    def agents_for(self, settings: Settings) -> dict[str, type[Agent]]:
        """The agent classes to host: all installed ones, or the ``agents`` subset — then
        only the plugins providing those are imported (a daemon keeps what it imports)."""
        wanted = settings.agents
        if wanted is None:
            return self.agents(settings)
        found = {name: self.agent(name, settings) for name in wanted}
        missing = sorted(name for name, cls in found.items() if cls is None)
        if missing:
            raise PluginError(
                f"agent(s) {', '.join(missing)} not installed; installed: "
                f"{', '.join(sorted(self.agents(settings)))}"
            )
        return {name: cls for name, cls in found.items() if cls is not None}


def _hook_names() -> list[str]:
    return sorted(name for name in vars(hookspecs) if name.startswith("orch_"))


def _index_in_child(group: str) -> Index | None:
    """The plugin index of ``group``, built by a forked child that reads the installed
    metadata and imports every plugin (and stores the index, when it can), so that this
    process does neither; None when no child could tell."""
    from orch.core import forked
    from orch.core.pluginindex import EntryPointRecord, Index

    if not forked.available():
        return None
    try:
        entries, plugins = forked.run(_index_of, group, timeout=INDEX_CHILD_TIMEOUT)
    except Exception as exc:  # a plugin that kills its importer, a stuck import
        log.warning("plugins: building the plugin index in a child failed (%s); "
                    "importing every plugin here", exc)
        return None
    records = [EntryPointRecord(*entry) for entry in entries]
    if set(plugins) != {record.name for record in records}:
        return None  # an installation under way: let this process look for itself
    return Index(records, plugins)


def _index_of(group: str) -> tuple[list[tuple[str, str, str, str]], dict[str, PluginHooks]]:
    """In the child: the entry points as plain data, and what each plugin provides."""
    from orch.core import pluginindex

    # A broken plugin is reported by the daemon itself when it tries it: not twice.
    logging.disable(logging.CRITICAL)
    registry = PluginRegistry.from_entry_points(group)  # imports all; stores the index
    records, _ = pluginindex.scan(group)
    return ([(r.name, r.value, r.distribution, r.version) for r in records],
            {name: registry._provided(name) for name in registry._entry_names})


def _keys_of(hook: str, results: Iterable[Any]) -> set[str]:
    from orch.core.pluginindex import KEYED_HOOKS

    names = KEYED_HOOKS[hook]
    return {key for result in results for key in names(result)}


def _new_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    return manager


_default: PluginRegistry | None = None


def default_registry(*, lean: bool = False) -> PluginRegistry:
    """The process-wide registry, loaded from entry points on first use (``lean``: see
    :meth:`PluginRegistry.from_entry_points`; only the first call's choice counts).

    Only entry points call this: the ``orch`` group (which keeps it in the click context),
    a daemon's or worker process's start, ``orch.testing`` fixtures, the simulation and the
    demo, and the two conveniences for applications :class:`~orch.core.client.Client` and
    :func:`~orch.core.config.load_settings` when given no registry. Library code takes the
    registry as an argument, so two registries in one process (a test's, a program's) never
    mix; ``tests/unit/test_layering.py`` holds the list of callers.
    """
    global _default
    if _default is None:
        _default = PluginRegistry.from_entry_points(lean=lean)
    return _default
