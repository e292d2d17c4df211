"""The cached plugin index: which entry points exist, and which hooks and names each serves.

Without it every command scans all installed distributions' metadata for entry points
(``importlib.metadata``) and imports every plugin module, although ``orch ping`` needs only
the one plugin that provides the ``ping`` command, the one serving the broker's URL scheme
and the one named by the ``security`` setting. The index lets the registry import exactly
those. It applies to every plugin alike, built-in or third-party: it is built by loading them
all once and asking each what it provides.

What an index records per plugin: the hooks it implements and, for the hooks that take no
arguments and return named things (transport schemes, security providers, command names …),
those names. It is valid only for the exact installation it was computed for: the same
interpreter, the same ``sys.path`` with the same directory modification times (installing or
removing a distribution adds or removes a ``*.dist-info`` directory, which changes its
parent's time), the same ``entry_points.txt`` files and the same plugin module files. Any
difference, and the registry scans and imports everything again, then rewrites the index. A
name that the index promises but the plugin no longer provides (or one it does not know)
makes the registry load every plugin, so an out-of-date index can slow a command down but
never hide a plugin.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from orch.core import cache

#: Bump when the file layout changes.
FORMAT = 1
#: Index files kept (the most recently written): one per interpreter and ``sys.path``, so
#: every virtualenv that ran orch (a test's, a tox environment's) leaves one behind.
KEEP_INDEXES = 32
_FILE_PREFIX = "plugins-"

#: Hooks without arguments whose results are named things, and how to read the names.
KEYED_HOOKS: Mapping[str, Callable[[Any], Iterable[str]]] = {
    "orch_transports": lambda result: list(result or {}),
    "orch_transport_requirements": lambda result: list(result or {}),
    "orch_security_providers": lambda result: list(result or {}),
    "orch_authorizers": lambda result: list(result or {}),
    "orch_filter_kinds": lambda result: [kind.name for kind in result or ()],
    "orch_filter_functions": lambda result: list(result or {}),
    "orch_validators": lambda result: list(result or {}),
    "orch_aggregate_functions": lambda result: list(result or {}),
    "orch_discovery_methods": lambda result: list(result or {}),
    "orch_inventory_stores": lambda result: list(result or {}),
    "orch_cli_commands": lambda result: [cmd.name for cmd in result or () if cmd.name],
    "orch_agent_names": lambda result: list(result or ()),
    "orch_settings": lambda result: _section_names(result),
}


def _section_names(result: Mapping[str, type] | None) -> list[str]:
    """A settings declaration's names: its sections and their keys' top-level aliases."""
    from orch.core.sections import aliases

    return [*(result or {}), *(a for cls in (result or {}).values() for a in aliases(cls))]


@dataclass(frozen=True)
class EntryPointRecord:
    """One ``orch`` entry point: what ``importlib.metadata`` says, without importing it."""

    name: str
    value: str
    distribution: str
    version: str
    #: The ``importlib.metadata`` entry point when it was just scanned (else None).
    entry_point: Any = field(default=None, compare=False, repr=False)

    @property
    def module(self) -> str:
        return self.value.split(":", 1)[0].strip()

    def load(self) -> object:
        """Import the module and resolve ``module:attr.attr`` like ``EntryPoint.load``."""
        if self.entry_point is not None:
            return self.entry_point.load()
        target: object = importlib.import_module(self.module)
        if ":" in self.value:
            for attr in self.value.split(":", 1)[1].strip().split("."):
                target = getattr(target, attr)
        return target

    def module_file(self) -> str | None:
        module = sys.modules.get(self.module)
        return getattr(module, "__file__", None) if module is not None else None


#: Per plugin: ``{hook: [names] or None (not a keyed hook)}``, or None when it is broken
#: (a broken plugin is tried by every lookup, so its error is reported as before).
PluginHooks = dict[str, list[str] | None] | None


@dataclass
class Index:
    entry_points: list[EntryPointRecord]
    #: None when the entry points were scanned but their hooks are not known yet.
    plugins: dict[str, PluginHooks] | None


def _file_name(group: str) -> str:
    """One file per environment, group and ``sys.path``: ``orch`` (its script's directory
    first on the path) and ``python -c``/``python -m`` (the current directory first) would
    otherwise each find the other's index invalid and rewrite it, every time."""
    digest = zlib.crc32("\0".join((sys.prefix, group, *sys.path)).encode())
    return f"{_FILE_PREFIX}{digest:08x}.json"


def _mtime(path: str) -> int | None:
    try:
        return os.stat(path or ".").st_mtime_ns
    except OSError:
        return None


def _environment_key(group: str, hooks: Iterable[str]) -> list[Any]:
    """What the index depends on that can be checked without reading any metadata."""
    return [FORMAT, group, sys.version, sys.prefix, sorted(hooks),
            [[entry, _mtime(entry)] for entry in sys.path]]


def load(group: str, hooks: Iterable[str]) -> Index | None:
    """The cached index for ``group`` if it is still valid for this installation."""
    data = cache.read_json(_file_name(group))
    if not isinstance(data, dict) or data.get("key") != _environment_key(group, hooks):
        return None
    try:
        for path, mtime in data["stamps"]:
            if _mtime(path) != mtime:
                return None
        records = [EntryPointRecord(*item) for item in data["entry_points"]]
        plugins = data["plugins"]
    except (KeyError, TypeError, ValueError):
        return None
    if not isinstance(plugins, dict) or set(plugins) != {r.name for r in records}:
        return None
    return Index(records, plugins)


def scan(group: str) -> tuple[list[EntryPointRecord], list[str] | None]:
    """Read the entry points from the installed distributions' metadata.

    Returns them with the metadata files they came from, or None for the files when one of
    them cannot be named (then the result must not be cached).
    """
    from importlib import metadata

    records: list[EntryPointRecord] = []
    files: list[str] | None = []
    for ep in sorted(metadata.entry_points(group=group), key=lambda e: e.name):
        dist = ep.dist
        records.append(EntryPointRecord(ep.name, ep.value, dist.name if dist else "?",
                                        dist.version if dist else "?", ep))
        location = getattr(dist, "_path", None)
        if files is not None and location is not None:
            files.append(os.path.join(str(location), "entry_points.txt"))
        else:
            files = None
    return records, files


#: An index is not written while a ``sys.path`` directory changed this recently: an
#: installation may be under way (a ``*.dist-info`` directory without its entry points yet),
#: and file times are only as fine as the kernel's clock tick.
SETTLE_NS = 2_000_000_000


def save(group: str, hooks: Iterable[str], records: list[EntryPointRecord],
         metadata_files: list[str], plugins: dict[str, PluginHooks]) -> None:
    """Store the index, stamped with every file whose change must invalidate it."""
    newest = max((_mtime(entry) or 0 for entry in sys.path), default=0)
    if time.time_ns() - newest < SETTLE_NS:
        return
    stamps = sorted(set(metadata_files))
    for record in records:
        module_file = record.module_file()
        if module_file is None and plugins.get(record.name) is not None:
            return  # a loaded plugin without a file (a namespace?): cannot stamp it
        if module_file is not None:
            stamps.append(module_file)
    cache.write_json(_file_name(group), {
        "key": _environment_key(group, hooks),
        "stamps": [[path, _mtime(path)] for path in stamps],
        "entry_points": [[r.name, r.value, r.distribution, r.version] for r in records],
        "plugins": plugins,
    })
    cache.prune(_FILE_PREFIX, KEEP_INDEXES)
