"""Declared settings sections: how a plugin gets typed, documented, checked settings.

A plugin declares its section as a frozen dataclass whose fields are built with
:func:`setting` (a default, a converter from :mod:`orch.core.convert` or its own, a one-line
description) and returns it from the ``orch_settings`` hook as ``{section name: class}``.
The core then treats the section exactly like its own settings:

* values come from ``plugins: {<section>: {key: value}}`` in the config file, from
  ``ORCH_PLUGINS`` (a JSON object) or ``ORCH_<SECTION>_<KEY>`` in the environment, and from
  the command line, each overriding the one before;
* an unknown key is an error naming where it came from, with a "did you mean" suggestion; a
  bad value is an error naming the key, the value and what was expected;
* ``docs/configuration.md``'s tables are generated from the declarations
  (``python -m orch.core.settingsdoc``), and a test keeps them in step.

A key may declare ``aliases``: names accepted at the top level of the configuration, so that a
setting which used to be one of orch's own (``policy_dir``) keeps working in existing files
and environments after its plugin took it over. Any plugin may declare them; two plugins
claiming one name is a conflict like any other.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, Field, field, fields, is_dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from orch.core.errors import ConfigError

if TYPE_CHECKING:
    from orch.core.config import Settings

T = TypeVar("T")
S = TypeVar("S", bound="PluginSection")
ENV_PREFIX = "ORCH_"


def did_you_mean(key: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` naming the closest candidate, or nothing if none is close.

    Only a mistyped key needs it, so :mod:`difflib` is imported here rather than at every
    start of every command.
    """
    import difflib

    hint = difflib.get_close_matches(key, list(candidates), n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def setting(default: Any, convert: Callable[[Any], Any], doc: str, *,
            aliases: Iterable[str] = (), default_doc: str | None = None) -> Any:
    """A declared setting: a dataclass field with its converter and description.

    ``default`` may be a zero-argument callable for mutable or computed defaults;
    ``default_doc`` says in words what the default is when its value alone would mislead.
    """
    metadata = {"convert": convert, "doc": doc, "aliases": tuple(aliases),
                "default_doc": default_doc}
    if callable(default):
        return field(default_factory=default, metadata=metadata)
    return field(default=default, metadata=metadata)


def setting_group(keys: Iterable[str], convert: Callable[[Any], Any], doc: str) -> Any:
    """A family of keys (``keys``) collected into one ``{key: value}`` mapping field.

    For settings that are many of a kind (orch-puppet's Puppet path overrides): each key is
    written at the section's top level like any other and checked with ``convert``; the keys
    set (with a non-``None`` value) end up in the field's mapping.
    """
    return field(default_factory=dict,
                 metadata={"group": tuple(keys), "convert": convert, "doc": doc})


def declared(cls: type) -> list[Field[Any]]:
    """The declared fields of a section class (those made by :func:`setting`)."""
    if not is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass; declare a section with @dataclass")
    return [f for f in fields(cls) if "convert" in f.metadata and "group" not in f.metadata]


def groups(cls: type) -> list[Field[Any]]:
    """The :func:`setting_group` fields of a section class."""
    return [f for f in fields(cls) if "group" in f.metadata]


def key_names(cls: type) -> list[str]:
    """Every key a section accepts (declared settings, then the keys of groups)."""
    return [f.name for f in declared(cls)] + [k for g in groups(cls) for k in g.metadata["group"]]


def aliases(cls: type) -> dict[str, str]:
    """``{top-level alias: key}`` declared by a section class."""
    return {alias: f.name for f in declared(cls) for alias in f.metadata["aliases"]}


def documented(cls: type) -> dict[str, str]:
    """``{key: description}`` of a section class, for docs and help."""
    return {f.name: f.metadata["doc"] for f in declared(cls)}


def default_of(item: Field[Any]) -> Any:
    """The default value of a declared field."""
    if item.default is not MISSING:
        return item.default
    if item.default_factory is not MISSING:
        return item.default_factory()
    return None


def env_name(section: str, key: str) -> str:
    """The environment variable of ``key`` in ``section``: ``ORCH_<SECTION>_<KEY>``."""
    return f"{ENV_PREFIX}{section}_{key}".upper().replace("-", "_").replace(".", "_")


def environment_values(section: str, cls: type, environ: Mapping[str, str]) -> dict[str, str]:
    """The values ``environ`` sets for ``section`` (``ORCH_<SECTION>_<KEY>`` or an alias's
    ``ORCH_<ALIAS>``; the first wins when both are set)."""
    values: dict[str, str] = {}
    for alias, key in aliases(cls).items():
        if f"{ENV_PREFIX}{alias.upper()}" in environ:
            values[key] = environ[f"{ENV_PREFIX}{alias.upper()}"]
    for key in key_names(cls):
        if env_name(section, key) in environ:
            values[key] = environ[env_name(section, key)]
    return values


def check(section: str, cls: type[T], values: Mapping[str, Any],
          origins: Mapping[str, str]) -> T:
    """Build the section object from raw ``values``; ``origins[key]`` names where each came
    from (a file path, ``environment``, ``command line``).

    Raises :class:`~orch.core.errors.ConfigError` for an unknown key (with a suggestion) or a
    bad value, naming the source and ``plugins.<section>.<key>``.
    """
    known = {f.name: f for f in declared(cls)}
    grouped = {key: g for g in groups(cls) for key in g.metadata["group"]}
    kwargs: dict[str, Any] = {}
    collected: dict[str, dict[str, Any]] = {g.name: {} for g in groups(cls)}
    for key, value in values.items():
        where = f"plugins.{section}.{key}"
        source = origins.get(key, "settings")
        target = known.get(key) or grouped.get(key)
        if target is None:
            suggestion = did_you_mean(str(key), [*known, *grouped])
            raise ConfigError(f"{source}: unknown setting {where!r}{suggestion}")
        try:
            converted = target.metadata["convert"](value)
        except ValueError as exc:
            raise ConfigError(f"{source}: bad value {value!r} for {where!r}: {exc}") from None
        if key in grouped:
            if converted is not None:
                collected[target.name][key] = converted
        else:
            kwargs[key] = converted
    return cls(**kwargs, **collected)


class PluginSection:
    """The base of a plugin's section class: what every section offers besides its keys.

    Subclass it with a frozen dataclass of :func:`setting` fields and name the section::

        @dataclass(frozen=True)
        class ServicePluginConfig(PluginSection):
            section_name = "service"
            allow: tuple[str, ...] = setting((), convert.names_or_all(...), "...")

    and return :meth:`declaration` from the ``orch_settings`` hook. Each plugin used to
    write these class methods itself, the same way.
    """

    #: The section's name under ``plugins:`` (``ORCH_<NAME>_<KEY>`` in the environment).
    section_name: ClassVar[str]

    @classmethod
    def declaration(cls) -> dict[str, type]:
        """``{section name: class}``, what the ``orch_settings`` hook returns."""
        return {cls.section_name: cls}

    @classmethod
    def documented(cls) -> dict[str, str]:
        """``{key: description}`` of every declared key (groups excluded), for docs."""
        return documented(cls)

    @classmethod
    def from_section(cls: type[S], section: Mapping[str, Any]) -> S:
        """Check a raw ``plugins.<name>`` mapping as orch checks the configured one (for
        tests and tools that hold a section without a whole configuration)."""
        from orch.core.config import Settings

        return Settings().with_values({"plugins": {cls.section_name: dict(section)}},
                                      "settings").section(cls.section_name, cls)

    @classmethod
    def from_settings(cls: type[S], settings: Settings) -> S:
        """The checked section of orch ``settings``; ConfigError naming a bad key."""
        return settings.section(cls.section_name, cls)
