"""Where Puppet keeps its state on this node: asked of ``puppet config print`` at start-up.

Debian's packages (``/var/cache/puppet``, ``/run/puppet``) and Puppet's all-in-one packages
(``/opt/puppetlabs/...``) put the lock files, the run summary and ``classes.txt`` in different
places, and any site can move them in ``puppet.conf``. Guessing would make every action
quietly wrong on the other layout, so the paths come from Puppet itself, once per process and
``--confdir`` (``puppet config print`` costs about a second of Ruby start-up), with the
``plugins.puppet`` overrides on top. When Puppet cannot be asked (not installed, or
``config_print: false`` for simulated nodes) the platform's default layout is used and the
reason is kept in :attr:`PuppetPaths.source`.

An overridden base directory carries its children along, as in Puppet: overriding
``vardir`` moves ``statedir`` (``$vardir/state``) and with it the lock files, the report
and ``classes.txt``, unless those are overridden too.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from orch_puppet.config import PATH_KEYS, PuppetPluginConfig, expand

log = logging.getLogger(__name__)

AIO_BIN = Path("/opt/puppetlabs/bin")
AIO_RUBY = Path("/opt/puppetlabs/puppet/bin/ruby")

#: Base directories of the two common layouts, for when Puppet cannot be asked.
DEBIAN_LAYOUT: Mapping[str, str] = {
    "vardir": "/var/cache/puppet",
    "publicdir": "/var/cache/puppet/public",
    "rundir": "/run/puppet",
    "logdir": "/var/log/puppet",
}
AIO_LAYOUT: Mapping[str, str] = {
    "vardir": "/opt/puppetlabs/puppet/cache",
    "publicdir": "/opt/puppetlabs/puppet/public",
    "rundir": "/var/run/puppetlabs",
    "logdir": "/var/log/puppetlabs/puppet",
}

#: ``child: (parent, file name)`` — how Puppet derives each path from a directory setting.
DERIVED: Mapping[str, tuple[str, str]] = {
    "statedir": ("vardir", "state"),
    "lastrunfile": ("publicdir", "last_run_summary.yaml"),
    "lastrunreport": ("statedir", "last_run_report.yaml"),
    "agent_catalog_run_lockfile": ("statedir", "agent_catalog_run.lock"),
    "agent_disabled_lockfile": ("statedir", "agent_disabled.lock"),
    "classfile": ("statedir", "classes.txt"),
    "resourcefile": ("statedir", "resources.txt"),
    "pidfile": ("rundir", "agent.pid"),
}
#: Resolution order: every parent before its children.
ORDER: tuple[str, ...] = ("vardir", "publicdir", "rundir", "logdir", "statedir",
                          "lastrunfile", "lastrunreport", "agent_catalog_run_lockfile",
                          "agent_disabled_lockfile", "classfile", "resourcefile", "pidfile")
assert sorted(ORDER) == sorted(PATH_KEYS)


class PuppetNotInstalled(Exception):
    """No puppet command was found (the message says where orch looked)."""


@dataclass(frozen=True)
class PuppetPaths:
    """Every path orch-puppet reads or writes for one node, and how they were found."""

    puppet_bin: str | None
    confdir: str | None
    values: Mapping[str, str]
    splaylimit: int | None = None
    #: ``puppet config print`` or why the defaults were used.
    source: str = ""
    layout: str = "debian"
    extra: Mapping[str, str] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Path:
        """The path of one of :data:`PATH_KEYS` (``paths["agent_disabled_lockfile"]``)."""
        return Path(self.values[key])

    def confdir_args(self) -> list[str]:
        """``--confdir DIR`` when one is configured, so every puppet command agrees."""
        return ["--confdir", self.confdir] if self.confdir else []

    def require_puppet(self) -> str:
        if self.puppet_bin is None:
            raise PuppetNotInstalled(
                "puppet is not installed on this node (no `puppet` on PATH nor in "
                f"{AIO_BIN}; set plugins.puppet.puppet_bin)")
        return self.puppet_bin


def find_executable(configured: str | None, name: str) -> str | None:
    """``configured`` if usable, else ``name`` on PATH, else Puppet's AIO bin directory."""
    if configured:
        if os.sep in configured:
            return configured if os.access(configured, os.X_OK) else None
        return shutil.which(configured)
    found = shutil.which(name)
    if found:
        return found
    aio = AIO_BIN / name
    return str(aio) if os.access(aio, os.X_OK) else None


def find_ruby(configured: str | None, puppet_bin: str | None) -> list[str] | None:
    """The interpreter that runs Puppet's library: the puppet script's own ``#!`` Ruby.

    Debian's ``/usr/bin/puppet`` starts with ``#!/usr/bin/ruby``; AIO's wrapper is a shell
    script, so its bundled Ruby is tried next, then ``ruby`` on PATH.
    """
    if configured:
        found = find_executable(configured, configured)
        return [found] if found else None
    if puppet_bin:
        try:
            with open(os.path.realpath(puppet_bin), "rb") as script:
                first = script.readline(256).decode("utf-8", "replace").strip()
        except OSError:
            first = ""
        if first.startswith("#!") and "ruby" in first:
            words = first[2:].split()
            if words and os.access(words[0], os.X_OK):
                return words
    if os.access(AIO_RUBY, os.X_OK):
        return [str(AIO_RUBY)]
    ruby = shutil.which("ruby")
    return [ruby] if ruby else None


def _layout_for(puppet_bin: str | None) -> tuple[str, Mapping[str, str]]:
    if puppet_bin and (puppet_bin.startswith("/opt/puppetlabs/")
                       or os.path.realpath(puppet_bin).startswith("/opt/puppetlabs/")):
        return "aio", AIO_LAYOUT
    if puppet_bin is None and AIO_BIN.exists():
        return "aio", AIO_LAYOUT
    return "debian", DEBIAN_LAYOUT


def default_paths(layout: Mapping[str, str]) -> dict[str, str]:
    """Every path key for a layout, derived the way Puppet derives them."""
    values = dict(layout)
    for key in ORDER:
        if key not in values:
            parent, name = DERIVED[key]
            values[key] = str(Path(values[parent]) / name)
    return values


def config_print(puppet_bin: str, confdir: str | None,
                 timeout: float) -> tuple[dict[str, str], int | None]:
    """``puppet config print --section agent`` of every path key (and splaylimit).

    ``--section agent``: the daemon's and ``puppet agent --onetime``'s view, which is the
    one that writes the files read here.
    """
    argv = [puppet_bin, "config", "print", "--render-as", "json", "--section", "agent",
            *(["--confdir", confdir] if confdir else []), *PATH_KEYS, "splaylimit"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} exited {proc.returncode}: "
                           f"{proc.stderr.strip()[:300]}")
    data = json.loads(proc.stdout)
    if not isinstance(data, dict):
        raise RuntimeError("puppet config print did not return a JSON object")
    values = {k: str(data[k]) for k in PATH_KEYS if isinstance(data.get(k), str) and data[k]}
    splay = data.get("splaylimit")
    splaylimit = int(splay) if isinstance(splay, int | str) and str(splay).isdigit() else None
    return values, splaylimit


# -- the process-wide cache -------------------------------------------------------------

_lock = threading.Lock()
_printed: dict[tuple[str, str | None], Future[tuple[dict[str, str], int | None, str]]] = {}
_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="orch-puppet-paths")
    return _executor


def _ask_puppet(puppet_bin: str, confdir: str | None,
                timeout: float) -> tuple[dict[str, str], int | None, str]:
    try:
        values, splaylimit = config_print(puppet_bin, confdir, timeout)
    except (OSError, ValueError, RuntimeError, subprocess.TimeoutExpired) as exc:
        log.warning("puppet config print failed, using the default layout: %s", exc)
        return {}, None, f"defaults (puppet config print failed: {exc})"
    return values, splaylimit, "puppet config print"


def printed(puppet_bin: str, confdir: str | None,
            timeout: float) -> Future[tuple[dict[str, str], int | None, str]]:
    """The (shared, started-once) ``puppet config print`` of ``(puppet_bin, confdir)``."""
    key = (puppet_bin, confdir)
    with _lock:
        future = _printed.get(key)
        if future is None:
            future = _pool().submit(_ask_puppet, puppet_bin, confdir, timeout)
            _printed[key] = future
    return future


def forget_cache() -> None:
    """Drop remembered ``puppet config print`` results (tests; a changed puppet.conf)."""
    with _lock:
        _printed.clear()


class PathResolver:
    """Starts path discovery for one node at construction; :meth:`get` waits (bounded)."""

    def __init__(self, config: PuppetPluginConfig, identity: str) -> None:
        self.config = config
        self.identity = identity
        self.puppet_bin = find_executable(config.puppet_bin, "puppet")
        self.confdir = expand(config.confdir, identity)
        self.overrides = {k: str(expand(v, identity)) for k, v in config.paths.items()}
        self._future: Future[tuple[dict[str, str], int | None, str]] | None = None
        self._result: PuppetPaths | None = None
        if config.discover_at_start:
            self._start()

    def _start(self) -> None:
        if self._future is None and self._should_ask():
            assert self.puppet_bin is not None
            self._future = printed(self.puppet_bin, self.confdir, self.config.command_timeout)

    def _should_ask(self) -> bool:
        return bool(self.puppet_bin and self.config.config_print
                    and not all(key in self.overrides for key in PATH_KEYS))

    def get(self) -> PuppetPaths:
        """The node's paths; waits at most ``command_timeout`` for ``puppet config print``."""
        if self._result is not None:
            return self._result
        self._start()
        layout_name, layout = _layout_for(self.puppet_bin)
        printed_values: dict[str, str] = {}
        splaylimit: int | None = None
        if self._future is not None:
            try:
                printed_values, splaylimit, source = self._future.result(
                    timeout=self.config.command_timeout + 5)
            except TimeoutError:
                source = "defaults (puppet config print did not finish in time)"
        elif self.puppet_bin is None:
            source = "defaults (puppet is not installed)"
        elif not self.config.config_print:
            source = "defaults (plugins.puppet.config_print is false)"
        else:
            source = "overrides"
        self._result = resolve(self.puppet_bin, self.confdir, layout_name, layout,
                               printed_values, self.overrides, splaylimit, source)
        return self._result


def resolve(puppet_bin: str | None, confdir: str | None, layout_name: str,
            layout: Mapping[str, str], printed_values: Mapping[str, str],
            overrides: Mapping[str, str], splaylimit: int | None, source: str) -> PuppetPaths:
    """Combine defaults < ``puppet config print`` < overrides (with derived children)."""
    # What Puppet printed; anything it did not print is derived from its printed parents
    # (or the layout's), as Puppet itself would.
    base = default_paths({**layout, **printed_values})
    values: dict[str, str] = {}
    moved: set[str] = set()
    for key in ORDER:
        if key in overrides:
            values[key] = overrides[key]
            moved.add(key)
        elif key in DERIVED and DERIVED[key][0] in moved:
            parent, name = DERIVED[key]
            values[key] = str(Path(values[parent]) / name)
            moved.add(key)
        elif key == "publicdir" and "vardir" in moved:
            # Puppet's own default ($vardir/public); Debian moves it, a moved vardir
            # (simulated nodes) is expected to carry it along.
            values[key] = str(Path(values["vardir"]) / "public")
            moved.add(key)
        else:
            values[key] = base[key]
    return PuppetPaths(puppet_bin, confdir, values, splaylimit, source, layout_name)
