"""What a transport needs installed, checked before it is used.

A transport plugin declares, per broker URL scheme, the modules its factory will import and
the pip requirement that provides each (the ``orch_transport_requirements`` hook). Before a
scheme's factory is called, orch imports them: a missing library becomes one
:class:`~orch.core.errors.MissingRequirementError` naming the scheme and what to
``pip install``, where it would otherwise surface as an ``ImportError`` traceback from deep
inside a broker connection (or, in the daemon, as a reconnect loop that never succeeds).
``orch plugins`` shows the same check for every scheme. Built-in and third-party transports
go through exactly the same code.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from orch.core.errors import ConfigError, MissingRequirementError

if TYPE_CHECKING:
    from orch.core.plugins import PluginRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Requirement:
    """One module a transport imports, and the pip requirement that installs it."""

    #: Importable module name, e.g. ``"redis"`` or ``"kombu.transport.redis"``. Name the
    #: module the transport really imports: importing it also imports what *it* needs.
    module: str
    #: What to ``pip install`` to get it, e.g. ``"redis"`` or ``"kombu[redis]"``.
    package: str


@dataclass(frozen=True)
class Unmet:
    """A requirement whose module could not be imported, and why."""

    requirement: Requirement
    reason: str
    #: The module that was not found (``ImportError.name``), when known.
    missing: str | None = None


@dataclass(frozen=True)
class SchemeStatus:
    """What ``orch plugins`` says about one transport scheme."""

    scheme: str
    #: The plugin whose ``orch_transports`` serves the scheme.
    plugin: str
    requirements: tuple[Requirement, ...]
    unmet: tuple[Unmet, ...]

    @property
    def available(self) -> bool:
        return not self.unmet


def check(requirements: Iterable[Requirement]) -> list[Unmet]:
    """Import each requirement's module; return the ones that failed (empty: all present).

    A requirement that fails only because of a module already reported missing (the kombu
    transport module, when ``packaging`` or ``redis`` is absent) is left out: one cause, one
    line.
    """
    unmet: list[Unmet] = []
    for requirement in requirements:
        try:
            importlib.import_module(requirement.module)
        except ImportError as exc:
            if exc.name and any(u.missing == exc.name for u in unmet):
                continue
            unmet.append(Unmet(requirement, _import_reason(requirement.module, exc), exc.name))
        except Exception as exc:  # third-party import-time code may raise anything
            if not unmet:  # after a missing module, this is most likely its consequence
                unmet.append(Unmet(requirement,
                                   f"importing {requirement.module} failed: {exc!r}"))
    return unmet


def install_hint(packages: Iterable[str]) -> str:
    """``pip install 'a' 'b[x]'`` for the given requirements, in order, without repeats."""
    unique = list(dict.fromkeys(packages))
    return "pip install " + " ".join(f"'{p}'" if "[" in p else p for p in unique)


def missing_error(scheme: str, plugin: str, unmet: Iterable[Unmet]) -> MissingRequirementError:
    """The one error for a scheme whose transport cannot load: what is missing, what to do."""
    unmet = list(unmet)
    reasons = "; ".join(u.reason for u in unmet)
    return MissingRequirementError(
        f"the {scheme}:// transport (plugin {plugin}) cannot load: {reasons}. "
        f"Install what it needs: {install_hint(u.requirement.package for u in unmet)}"
    )


def import_error(scheme: str, plugin: str, exc: ImportError) -> MissingRequirementError:
    """An ImportError from a transport factory (an undeclared requirement) as the same error.

    Only the missing module's name is known here, not the distribution that provides it, so
    the message says so rather than guess a package name.
    """
    missing = (exc.name or "").split(".")[0]
    what = (f"install the distribution that provides the Python module {missing!r}"
            if missing else f"reinstall the distribution of the plugin {plugin}")
    return MissingRequirementError(
        f"the {scheme}:// transport (plugin {plugin}) cannot load: {_import_reason(None, exc)}."
        f" To use it, {what} (the plugin does not declare this requirement for {scheme}://)"
    )


def unknown_scheme_error(registry: PluginRegistry, url: str, scheme: str,
                         installed: Iterable[str]) -> ConfigError:
    """No plugin serves ``scheme``: say which schemes are there and where another comes from.

    A transport plugin that failed to load is named too: it may be the one meant to serve
    the scheme (a module-level import of a missing library fails the whole plugin).
    """
    if not scheme:
        message = (f"broker URL {url!r} has no scheme; write it as a URL such as "
                   "amqp://user:password@host:5672// or redis://host:6379/0")
    else:
        message = (f"no transport for broker URL {url!r}: no installed plugin serves "
                   f"{scheme}://; installed schemes: {', '.join(sorted(installed)) or 'none'}. "
                   f"A transport plugin adds a scheme: pip install the distribution that "
                   f"provides {scheme}://")
    broken = [info for info in registry.infos.values() if info.error]
    if broken:
        message += "; plugins that failed to load (see `orch plugins`): " + "; ".join(
            f"{info.name} ({info.distribution}): {info.error}" for info in broken)
    return ConfigError(message)


def ensure_transport(registry: PluginRegistry, scheme: str) -> None:
    """Raise :class:`MissingRequirementError` unless everything ``scheme`` needs imports."""
    requirements = registry.transport_requirements().get(scheme, ())
    unmet = check(requirements)
    if unmet:
        raise missing_error(scheme, transport_owners(registry).get(scheme, "?"), unmet)


def transport_owners(registry: PluginRegistry) -> dict[str, str]:
    """``{scheme: plugin name}``: which plugin's ``orch_transports`` serves each scheme."""
    owners: dict[str, str] = {}
    for impl in registry.hook.orch_transports.get_hookimpls():
        try:
            schemes = impl.function() or {}
        except Exception as exc:  # reported as a missing scheme when it is used
            log.warning("plugin %s: orch_transports failed: %r", impl.plugin_name, exc)
            continue
        for scheme in schemes:
            owners.setdefault(scheme, impl.plugin_name)
    return owners


def transport_statuses(registry: PluginRegistry) -> list[SchemeStatus]:
    """Every installed scheme with its plugin, requirements, and what of them is missing."""
    requirements = registry.transport_requirements()
    return [
        SchemeStatus(scheme, plugin, tuple(requirements.get(scheme, ())),
                     tuple(check(requirements.get(scheme, ()))))
        for scheme, plugin in sorted(transport_owners(registry).items())
    ]


def _import_reason(module: str | None, exc: ImportError) -> str:
    """``cannot import kombu.transport.redis (No module named 'packaging')``."""
    detail = str(exc) or type(exc).__name__
    if module is None:
        return detail
    return f"cannot import {module} ({detail})"
