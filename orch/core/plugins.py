"""Finding, loading and querying plugins.

:class:`PluginRegistry` wraps a :class:`pluggy.PluginManager`: it loads every entry point of
the ``orch`` group, keeps going when one of them is broken (recording why), and offers
typed accessors that merge what all plugins returned for each hook.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

from orch.core import hookspecs
from orch.core.errors import ConfigError, PluginError

if TYPE_CHECKING:
    import click

    from orch.core.agent import Agent
    from orch.core.authorization import Authorizer
    from orch.core.config import Settings
    from orch.core.discovery import DiscoveryMethod
    from orch.core.facts import FactSource
    from orch.core.filter import FilterKind
    from orch.core.requirements import Requirement
    from orch.core.security import SecurityProvider
    from orch.core.transport import Transport

log = logging.getLogger(__name__)
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
    """All plugins of this process, loaded once and queried by hook."""

    manager: pluggy.PluginManager = field(
        default_factory=lambda: _new_manager()
    )
    infos: dict[str, PluginInfo] = field(default_factory=dict)
    _validators: dict[str, Callable[[Any], bool]] | None = field(default=None, repr=False)

    @classmethod
    def from_entry_points(cls, group: str = hookspecs.ENTRY_POINT_GROUP) -> PluginRegistry:
        """Load every plugin advertised under ``group``; broken ones are recorded, not raised."""
        registry = cls()
        for ep in sorted(metadata.entry_points(group=group), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist is not None else "?"
            version = ep.dist.version if ep.dist is not None else "?"
            try:
                plugin = ep.load()
            except Exception as exc:  # any import-time failure of third-party code
                registry._broken(ep.name, dist, version, f"cannot import {ep.value}: {exc!r}")
                continue
            registry.register(plugin, ep.name, dist, version)
        return registry

    def register(
        self, plugin: object, name: str, distribution: str = "?", version: str = "?"
    ) -> bool:
        """Register ``plugin`` under ``name``; return False (and record why) if it is invalid."""
        if name in self.infos and self.infos[name].error is None:
            self._broken(name, distribution, version, f"duplicate plugin name {name!r}")
            return False
        self._validators = None
        try:
            self.manager.register(plugin, name=name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            # pluggy registers implementations one by one: undo the valid ones too.
            if self.manager.get_plugin(name) is plugin:
                self.manager.unregister(name=name)
            self._broken(name, distribution, version, f"invalid hook implementation: {exc}")
            return False
        callers = self.manager.get_hookcallers(plugin) or []
        unknown = sorted(h.name for h in callers if h.spec is None)
        if unknown:
            self.manager.unregister(plugin)
            self._broken(
                name, distribution, version,
                f"implements unknown hook(s) {', '.join(unknown)}; "
                "check the spelling against orch.core.hookspecs",
            )
            return False
        hooks = tuple(sorted(h.name for h in callers))
        self.infos[name] = PluginInfo(name, distribution, version, hooks)
        return True

    def _broken(self, name: str, dist: str, version: str, reason: str) -> None:
        log.warning("plugin %s (%s %s) skipped: %s", name, dist, version, reason)
        self.infos[name] = PluginInfo(name, dist, version, (), reason)

    @property
    def hook(self) -> Any:
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
        return self._merged(self.hook.orch_transports(), "transport scheme")

    def transport_requirements(self) -> dict[str, tuple[Requirement, ...]]:
        """``{scheme: requirements}``; several plugins may add to the same scheme."""
        from orch.core.requirements import Requirement

        merged: dict[str, tuple[Requirement, ...]] = {}
        for mapping in self.hook.orch_transport_requirements():
            for scheme, requirements in (mapping or {}).items():
                checked = tuple(requirements)
                if not all(isinstance(r, Requirement) for r in checked):
                    raise PluginError(
                        f"orch_transport_requirements for {scheme}:// returned {checked!r}; "
                        "each item must be an orch.core.requirements.Requirement")
                merged[scheme] = (*merged.get(scheme, ()), *checked)
        return merged

    def security_providers(self) -> dict[str, Callable[[Settings], SecurityProvider]]:
        return self._merged(self.hook.orch_security_providers(), "security provider")

    def authorizers(self) -> dict[str, Callable[[Settings], Authorizer]]:
        return self._merged(self.hook.orch_authorizers(), "authorizer")

    def filter_kinds(self) -> dict[str, FilterKind]:
        kinds = [k for result in self.hook.orch_filter_kinds() for k in result]
        return self._merged([{k.name: k} for k in kinds], "filter kind")

    def filter_functions(self) -> dict[str, Callable[..., Any]]:
        return self._merged(self.hook.orch_filter_functions(), "filter function")

    def agents(self, settings: Settings | None = None) -> dict[str, type[Agent]]:
        """Every agent class plugins offer for ``settings`` (default settings if None)."""
        from orch.core.config import Settings as DefaultSettings

        results = self.hook.orch_agents(settings=settings or DefaultSettings())
        classes = [cls for result in results for cls in result]
        return self._merged([{cls.name: cls} for cls in classes], "agent")

    def fact_sources(self, settings: Settings) -> list[FactSource]:
        # pluggy calls the last registered first; reverse so built-ins come first.
        results = reversed(self.hook.orch_fact_sources(settings=settings))
        return [source for result in results for source in result]

    def validators(self) -> dict[str, Callable[[Any], bool]]:
        """Named DDL validators (cached: the DDL compiler keys compiled schemas on it)."""
        if self._validators is None:
            self._validators = self._merged(self.hook.orch_validators(), "validator")
        return self._validators

    def aggregate_functions(self) -> dict[str, Callable[..., Any]]:
        return self._merged(self.hook.orch_aggregate_functions(), "aggregate function")

    def discovery_methods(self) -> dict[str, DiscoveryMethod]:
        return self._merged(self.hook.orch_discovery_methods(), "discovery method")

    def cli_commands(self) -> list[click.Command]:
        return [cmd for result in self.hook.orch_cli_commands() for cmd in result]

    # -- choosing plugins by settings ---------------------------------------------------

    def transport_for(self, settings: Settings) -> Transport:
        """The transport for ``settings.broker``, from whichever plugin claims its scheme."""
        schemes = {url.split("://", 1)[0] if "://" in url else "" for url in settings.broker}
        scheme = settings.broker[0].split("://", 1)[0] if "://" in settings.broker[0] else ""
        factories = self.transports()
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
        providers = self.security_providers()
        if settings.security not in providers:
            raise ConfigError(
                f"unknown security provider {settings.security!r}; "
                f"installed: {', '.join(sorted(providers)) or 'none'}"
            )
        return providers[settings.security](settings)

    def agents_for(self, settings: Settings) -> dict[str, type[Agent]]:
        """The agent classes to host: all installed ones, or the ``agents`` subset."""
        installed = self.agents(settings)
        wanted = settings.agents
        if wanted is None:
            return installed
        missing = sorted(set(wanted) - set(installed))
        if missing:
            raise PluginError(
                f"agent(s) {', '.join(missing)} not installed; installed: "
                f"{', '.join(sorted(installed))}"
            )
        return {name: installed[name] for name in wanted}


def _new_manager() -> pluggy.PluginManager:
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    return manager


_default: PluginRegistry | None = None


def default_registry() -> PluginRegistry:
    """The process-wide registry, loaded from entry points on first use."""
    global _default
    if _default is None:
        _default = PluginRegistry.from_entry_points()
    return _default
