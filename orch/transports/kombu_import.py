"""Import kombu without ``importlib.metadata``: its entry points come from orch's cached index.

Why: importing ``kombu.serialization`` (which every kombu connection, message and producer
needs) scans every installed distribution's metadata for ``kombu.serializers`` entry points,
and ``kombu.utils.compat`` imports ``importlib.metadata`` to do it — with ``email``,
``zipfile`` and ``csv``, about 3.3 MB of an idle daemon's RSS (issue 13), for a group that is
empty on nearly every installation. :func:`prepare` runs before the first kombu import of a
process and:

* makes ``importlib.metadata`` a lazily loaded module (:class:`importlib.util.LazyLoader`,
  the standard library's own mechanism) when nothing imported it yet, so the import statement
  in ``kombu.utils.compat`` costs nothing until someone uses an attribute;
* when nothing imported ``yaml`` yet, lets ``kombu.serialization`` register its YAML
  serializer without importing PyYAML (about 20 ms of every client command's start, for a
  serializer orch never sends nor accepts): while kombu's module runs, ``yaml`` is a
  stand-in (:class:`_DeferredYaml`) whose functions import the real module when called.
  Afterwards ``import yaml`` is the real module again, for orch's own YAML readers (fact
  and config files) and everyone else;
* answers kombu's ``entrypoints(group)`` from :mod:`orch.core.pluginindex`'s cache for that
  group — valid for exactly the installation it was scanned on, like orch's own plugin index,
  and rescanned (through ``importlib.metadata``, as kombu does) whenever it is not. Entry
  points found are loaded exactly as kombu loads them, so a third-party serializer or matcher
  still registers.

Nothing else in kombu changes. A process that imported kombu before (a test, an embedding
program) is left alone.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

_prepared = False


def _lazy_module(name: str) -> None:
    """Put ``name`` in ``sys.modules`` as a module executed on first attribute access."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)


class _DeferredYaml(types.ModuleType):
    """``yaml`` as kombu's serializer registration sees it: each attribute is a function that
    imports PyYAML on its first call and calls the real one (kombu uses ``safe_dump`` and
    ``safe_load`` and nothing else)."""

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name.startswith("__"):
            raise AttributeError(name)

        def deferred(*args: Any, **kwargs: Any) -> Any:
            return getattr(importlib.import_module("yaml"), name)(*args, **kwargs)

        deferred.__name__ = name
        return deferred


def cached_entrypoints(namespace: str) -> Iterator[tuple[Any, Any]]:
    """kombu's ``entrypoints``: ``(entry point, loaded object)`` for each in ``namespace``.

    The entry points come from the cached index of ``namespace`` (scanned and stored when
    missing or out of date); each record has the ``name`` and ``load()`` kombu uses.
    """
    from orch.core import pluginindex

    index = pluginindex.load(namespace, ())
    if index is not None:
        records = index.entry_points
    else:
        records, files = pluginindex.scan(namespace)
        if files is not None:
            pluginindex.save(namespace, (), records, files, {r.name: {} for r in records})
    return ((record, record.load()) for record in records)


def prepare() -> None:
    """Make the coming kombu import skip ``importlib.metadata`` (see the module docstring)."""
    global _prepared
    if _prepared or "kombu.serialization" in sys.modules:
        _prepared = True
        return
    _prepared = True
    if "importlib.metadata" not in sys.modules:
        _lazy_module("importlib.metadata")
    try:
        import kombu.utils.compat
    except ImportError:
        return  # kombu or amqp is missing: the transport's requirement check names it
    kombu.utils.compat.entrypoints = cached_entrypoints
    if "yaml" in sys.modules:
        return
    stand_in = sys.modules["yaml"] = _DeferredYaml("yaml")
    try:
        import kombu.serialization  # registers its serializers now
    except ImportError:
        pass
    finally:
        if sys.modules.get("yaml") is stand_in:
            del sys.modules["yaml"]
