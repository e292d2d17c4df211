"""The cached plugin index: a command imports only the plugins it uses, and installing,
removing or changing a plugin is never hidden by the cache.

The plugins here are real distributions on ``sys.path`` (a module plus a ``*.dist-info``
directory with ``entry_points.txt``, the layout pip creates), found through
``importlib.metadata`` like any third-party plugin. Each test gets its own cache directory.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orch.core import pluginindex
from orch.core.config import Settings
from orch.core.errors import ConfigError
from orch.core.plugins import PluginRegistry

MODULES = ("orch_index_a", "orch_index_a_names", "orch_index_b", "orch_index_c",
           "orch_index_broken", "orch_index_fa", "orch_index_fz")

COMMAND_PLUGIN = '''
from orch.core.hookspecs import hookimpl
from orch_index_a_names import NAME


@hookimpl
def orch_cli_commands():
    import click

    @click.command(NAME)
    def command() -> None:
        """A command of a third-party plugin."""

    return [command]
'''

TRANSPORT_PLUGIN = '''
from orch.core.hookspecs import hookimpl


@hookimpl
def orch_transports():
    return {"indexb": lambda urls, settings: ("transport", urls)}
'''


class Site:
    """A directory on ``sys.path`` into which distributions are "installed"."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.clock = time.time() - 600

    def _changed(self) -> None:
        """Give the directory a new modification time in the past: distinct for every
        change (the kernel's file clock is coarser than a test, and ``importlib.metadata``
        caches a directory listing by its time), and old enough to count as settled."""
        self.clock += 1
        os.utime(self.path, (self.clock, self.clock))
        importlib.invalidate_caches()

    def install(self, dist: str, module: str, source: str, entry: str) -> None:
        (self.path / f"{module}.py").write_text(textwrap.dedent(source))
        info = self.path / f"{dist.replace('-', '_')}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[orch]\n{entry} = {module}\n")
        self._changed()

    def uninstall(self, dist: str, module: str) -> None:
        (self.path / f"{module}.py").unlink()
        info = self.path / f"{dist.replace('-', '_')}-1.0.dist-info"
        for child in info.iterdir():
            child.unlink()
        info.rmdir()
        self._changed()


def forget_modules() -> None:
    for name in MODULES:
        sys.modules.pop(name, None)


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setenv("ORCH_CACHE_DIR", str(tmp_path / "cache"))
    # Other sys.path entries (the test directories) may have changed a moment ago.
    monkeypatch.setattr(pluginindex, "SETTLE_NS", 0)
    directory = tmp_path / "site"
    directory.mkdir()
    monkeypatch.syspath_prepend(str(directory))
    site = Site(directory)
    site.install("orch-index-a", "orch_index_a", COMMAND_PLUGIN, "index_a")
    (directory / "orch_index_a_names.py").write_text("NAME = 'index-a'\n")
    site.install("orch-index-b", "orch_index_b", TRANSPORT_PLUGIN, "index_b")
    forget_modules()
    yield site
    forget_modules()
    importlib.invalidate_caches()


def index_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache").glob("plugins-*.json"))


def command_names(registry: PluginRegistry, name: str) -> set[str]:
    return {command.name or "" for command in registry.cli_commands(name)}


def test_first_registry_loads_everything_and_writes_the_index(site: Site,
                                                              tmp_path: Path) -> None:
    registry = PluginRegistry.from_entry_points()
    assert {"orch_index_a", "orch_index_b"} <= set(sys.modules)
    assert registry.infos["index_a"].hooks == ("orch_cli_commands",)
    [index] = index_files(tmp_path)
    plugins = json.loads(index.read_text())["plugins"]
    assert plugins["index_a"] == {"orch_cli_commands": ["index-a"]}
    assert plugins["index_b"] == {"orch_transports": ["indexb"]}
    assert "amqp" in plugins["kombu"]["orch_transports"]


def test_with_an_index_a_lookup_imports_only_the_plugin_that_provides_the_name(
        site: Site) -> None:
    PluginRegistry.from_entry_points()
    forget_modules()
    registry = PluginRegistry.from_entry_points()
    assert not {"orch_index_a", "orch_index_b"} & set(sys.modules)

    assert "index-a" in command_names(registry, "index-a")
    assert "orch_index_a" in sys.modules
    assert "orch_index_b" not in sys.modules

    transport = registry.transport_for(Settings(broker=("indexb://host",)))
    assert transport == ("transport", ["indexb://host"])
    assert "orch_index_b" in sys.modules


AGENT_PLUGIN = """
from orch.core.agent import Agent
from orch.core.hookspecs import hookimpl


class Found(Agent):
    name = "{name}"


@hookimpl
def orch_agents(settings):
    return [Found]
"""

AGENT_NAMES = """

@hookimpl
def orch_agent_names():
    return ["{name}"]
"""


def test_an_agent_is_looked_up_only_in_the_plugins_that_may_provide_it(site: Site) -> None:
    """A plugin listing its agents in ``orch_agent_names`` is imported only for them; one
    that lists none (its agents may depend on settings) is asked for every agent."""
    site.install("orch-index-c", "orch_index_c",
                 AGENT_PLUGIN.format(name="gamma") + AGENT_NAMES.format(name="gamma"), "index_c")
    site.install("orch-index-fz", "orch_index_fz", AGENT_PLUGIN.format(name="zeta"), "index_fz")
    PluginRegistry.from_entry_points()
    forget_modules()
    registry = PluginRegistry.from_entry_points()

    rpcutil = registry.agent("rpcutil")
    assert rpcutil is not None and rpcutil.name == "rpcutil"
    assert "orch_index_c" not in sys.modules
    assert "orch_index_fz" in sys.modules
    for name in ("gamma", "zeta"):
        found = registry.agent(name)
        assert found is not None and found.name == name
    assert registry.agent("nobody-provides-this") is None
    assert set(registry.agents()) >= {"rpcutil", "gamma", "zeta"}


def test_installing_and_removing_a_plugin_invalidates_the_index(site: Site) -> None:
    PluginRegistry.from_entry_points()
    site.install("orch-index-c", "orch_index_c",
                 COMMAND_PLUGIN.replace("from orch_index_a_names import NAME", "NAME = 'c'"),
                 "index_c")
    registry = PluginRegistry.from_entry_points()
    assert "c" in command_names(registry, "c")
    assert registry.infos["index_c"].distribution == "orch-index-c"

    PluginRegistry.from_entry_points()  # an index that knows index_c
    site.uninstall("orch-index-b", "orch_index_b")
    forget_modules()
    registry = PluginRegistry.from_entry_points()
    with pytest.raises(ConfigError, match="no transport for broker URL 'indexb://host'"):
        registry.transport_for(Settings(broker=("indexb://host",)))
    assert "index_b" not in registry.infos


def test_a_name_the_index_does_not_know_loads_every_plugin_and_is_found(site: Site) -> None:
    """A plugin's names can change without any stamped file changing (here they come from
    a module the entry point imports): the index is only a hint, never a filter."""
    PluginRegistry.from_entry_points()
    (site.path / "orch_index_a_names.py").write_text("NAME = 'index-renamed'\n")
    forget_modules()
    registry = PluginRegistry.from_entry_points()
    assert "index-renamed" in command_names(registry, "index-renamed")

    forget_modules()
    again = PluginRegistry.from_entry_points()  # the index was rewritten with the new name
    assert "index-renamed" in command_names(again, "index-renamed")
    assert "orch_index_b" not in sys.modules


def test_a_broken_plugin_is_reported_by_every_registry_built_from_the_index(
        site: Site) -> None:
    site.install("orch-index-broken", "orch_index_broken", "raise ImportError('gone')\n",
                 "index_broken")
    first = PluginRegistry.from_entry_points()
    assert "gone" in (first.infos["index_broken"].error or "")

    registry = PluginRegistry.from_entry_points()
    assert "index-a" in command_names(registry, "index-a")
    assert "index_broken" in registry._infos  # tried by the first lookup, as before
    assert "gone" in (registry.infos["index_broken"].error or "")


def test_an_index_writable_by_others_is_ignored(site: Site, tmp_path: Path) -> None:
    PluginRegistry.from_entry_points()
    [index] = index_files(tmp_path)
    assert pluginindex.load("orch", _hooks()) is not None
    index.chmod(0o666)
    assert pluginindex.load("orch", _hooks()) is None


def test_no_index_while_an_installation_may_be_under_way(
        site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pluginindex, "SETTLE_NS", 2_000_000_000)
    os.utime(site.path)  # just changed
    PluginRegistry.from_entry_points()
    assert index_files(tmp_path) == []


def test_only_the_most_recently_written_indexes_are_kept(
        site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every interpreter and sys.path gets its own index (each virtualenv a test makes is
    one): writing one keeps the newest KEEP_INDEXES and leaves other cache files alone."""
    monkeypatch.setattr(pluginindex, "KEEP_INDEXES", 3)
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    now = time.time()
    for age in range(5):  # five indexes of other environments, 1 to 5 hours old
        stale = cache / f"plugins-other{age}.json"
        stale.write_text("{}")
        stale.chmod(0o600)
        os.utime(stale, (now - 3600 * (age + 1),) * 2)
    (cache / "ddl-checked.json").write_text("{}")
    os.utime(cache / "ddl-checked.json", (now - 86400,) * 2)

    PluginRegistry.from_entry_points()

    [ours] = [p for p in index_files(tmp_path) if "other" not in p.name]
    assert {p.name for p in index_files(tmp_path)} == {
        ours.name, "plugins-other0.json", "plugins-other1.json"}
    assert (cache / "ddl-checked.json").exists()
    assert pluginindex.load("orch", _hooks()) is not None


def test_caching_can_be_turned_off(site: Site, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_CACHE_DIR", "off")
    PluginRegistry.from_entry_points()
    assert not (tmp_path / "cache").exists()


def _hooks() -> list[str]:
    from orch.core.plugins import _hook_names

    return _hook_names()


LEAN_PROBE = """
import json, sys
from orch.core.config import load_settings
from orch.core.plugins import PluginRegistry
registry = PluginRegistry.from_entry_points()
settings = load_settings(None, {"broker": "memory://", "security": "insecure"}, environ={})
registry.cli_commands("ping")
from orch.core.client import Client
client = Client(settings, registry)
client.filters.parse("fact", "role=web")  # a -F filter needs no compound language
client.close()
heavy = ("jsonschema", "cryptography", "orch.cli.ca", "orch.security.x509",
         "orch.security.pki", "orch.filters.compound", "orch.agents.external")
print(json.dumps(sorted(m for m in sys.modules if m.startswith(heavy))))
"""


def test_an_unsigned_ping_imports_no_plugin_it_does_not_use(tmp_path: Path) -> None:
    """In a fresh interpreter, with an index: what ``orch ping`` needs from the registry
    (its command, and a client: transport and security provider) imports no other plugin,
    and a client loads filter plugins only once it parses a filter (and the compound
    language only for ``-S``)."""
    env = {**os.environ, "ORCH_CACHE_DIR": str(tmp_path / "cache")}
    # -P: no script directory or working directory on sys.path (it would key the index).
    build = subprocess.run([sys.executable, "-P", "-c", LEAN_PROBE], env=env,
                           capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stderr
    if not index_files(tmp_path):
        pytest.skip("no index written: the environment changed in the last 2 s")
    probe = subprocess.run([sys.executable, "-P", "-c", LEAN_PROBE], env=env,
                           capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout) == []


RPC_PROBE = """
import json, sys
from orch.core.config import load_settings
from orch.core.plugins import PluginRegistry
registry = PluginRegistry.from_entry_points()
settings = load_settings(None, {"broker": "memory://", "security": "insecure"}, environ={})
registry.cli_commands("rpc")
from orch.core.client import Client
client = Client(settings, registry)
ddl = client.action_ddl("rpcutil", "ping")
assert ddl is not None and ddl.check_arguments({}) == {}
assert ddl.check_reply({"pong": 1764567890.5}) == []
assert registry.call_observers(settings) == []
client.close()
machinery = ("agent", "cache", "call", "process", "reply", "scanning")
heavy = ("jsonschema", "orch.ddl.compile", "orch.inventory.jobs", "orch.core.audit",
         "orch.core.filter", "orch.core.inventory",
         "concurrent.futures", "orch_puppet", "orch_package", "orch_service",
         *(f"orch.agents.external.{name}" for name in machinery))
print(json.dumps(sorted(m for m in sys.modules if m.startswith(heavy))))
"""


def test_an_rpc_call_imports_no_machinery_its_settings_leave_unused(tmp_path: Path) -> None:
    """A fresh ``orch rpc rpcutil`` with default settings imports only what it uses: no other
    agent plugin (the contrib ones are installed beside orch in this suite); no external-agent
    directory, so none of the scanning, calling and supervising code; no inventory store, so
    no job history; no filter, so no filter engine; and no arguments for an action without
    inputs, and a reply that plainly has its declared types, are accepted without
    :mod:`orch.ddl.compile` (or jsonschema)."""
    assert imported_by_second_run(tmp_path, RPC_PROBE) == []


def imported_by_second_run(tmp_path: Path, probe_code: str) -> list[str]:
    """What ``probe_code`` prints (the heavy modules it found imported) when run a second
    time in a fresh interpreter, with a plugin index the first run wrote."""
    env = {**os.environ, "ORCH_CACHE_DIR": str(tmp_path / "cache")}
    for _ in range(2):  # the first run may build the index and import everything
        probe = subprocess.run([sys.executable, "-P", "-c", probe_code], env=env,
                               capture_output=True, text=True, timeout=120)
        assert probe.returncode == 0, probe.stderr
    if not index_files(tmp_path):
        pytest.skip("no index written: the environment changed in the last 2 s")
    found: list[str] = json.loads(probe.stdout)
    return found


DISCOVERY_PROBE = """
import json, sys
from orch.core.client import Client
from orch.core.config import load_settings
from orch.core.plugins import PluginRegistry
registry = PluginRegistry.from_entry_points()
settings = load_settings(None, {"broker": "memory://", "security": "insecure",
                                "discovery_timeout": 0.1}, environ={})
with Client(settings, registry) as client:
    assert client.discover() == []
unused = ("orch.inventory.select", "orch.core.inventory", "orch.discovery.puppetdb",
          "orch.discovery.pql")
print(json.dumps(sorted(m for m in sys.modules if m.startswith(unused))))
"""


def test_discovery_imports_only_the_method_it_uses(tmp_path: Path) -> None:
    """Default (``auto``) discovery with no inventory store configured broadcasts: it
    imports neither the inventory's selection code nor the other discovery plugins."""
    assert imported_by_second_run(tmp_path, DISCOVERY_PROBE) == []


DAEMON_PROBE = """
import json, sys
from orch.core.config import load_settings
from orch.core.plugins import PluginRegistry
registry = PluginRegistry.from_entry_points(lean={lean})
metadata = ["importlib.metadata"] if "importlib.metadata" in sys.modules else []
settings = load_settings(None, {{"broker": "memory://", "security": "insecure"}}, environ={{}})
registry.transport_for(settings).close()
registry.security_for(settings)
others = ("orch_puppet", "orch_package", "orch_service", "orch.inventory", "orch.api",
          "orch.discovery", "orch.agents.external.call")
print(json.dumps(metadata + sorted(m for m in sys.modules if m.startswith(others))))
"""


def test_a_lean_registry_builds_a_missing_index_without_importing_every_plugin(
        tmp_path: Path) -> None:
    """A daemon's registry (``lean``) with no index: a forked child imports every plugin
    and stores the index; the daemon itself imports only what it uses (here its transport
    and security provider; a daemon hosting every agent imports the agent plugins too),
    and works. Nor does it read the installed distributions' metadata for the index."""
    env = {**os.environ, "ORCH_CACHE_DIR": str(tmp_path / "cache")}

    def probe(lean: bool) -> list[str]:
        shutil.rmtree(tmp_path / "cache", ignore_errors=True)
        done = subprocess.run([sys.executable, "-P", "-c", DAEMON_PROBE.format(lean=lean)],
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        imported: list[str] = json.loads(done.stdout)
        return imported

    eager = probe(lean=False)  # every plugin, to build the index
    assert "importlib.metadata" in eager and "orch_puppet" in eager
    assert probe(lean=True) == []
    if not index_files(tmp_path):
        pytest.skip("no index written: the environment changed in the last 2 s")


SUBSET_PROBE = """
import json, sys
from orch.core.config import load_settings
from orch.core.plugins import PluginRegistry
registry = PluginRegistry.from_entry_points()
settings = load_settings(None, {"broker": "memory://", "security": "insecure",
                                "agents": ["rpcutil"]}, environ={})
assert list(registry.agents_for(settings)) == ["rpcutil"]
print(json.dumps(sorted(m for m in sys.modules
                        if m.startswith(("orch_puppet", "orch_package", "orch_service")))))
"""


def test_a_node_hosting_some_agents_imports_only_their_plugins(tmp_path: Path) -> None:
    """``agents: [rpcutil]`` (``orch server --agents rpcutil``) with the contrib agents
    installed: none of their plugins is imported."""
    assert imported_by_second_run(tmp_path, SUBSET_PROBE) == []


def test_an_agent_subset_naming_a_missing_agent_says_what_is_installed() -> None:
    from orch.core.config import load_settings
    from orch.core.errors import PluginError
    from orch.core.plugins import PluginRegistry

    settings = load_settings(None, {"broker": "memory://", "security": "insecure",
                                    "agents": ["rpcutil", "nosuch"]}, environ={})
    with pytest.raises(PluginError, match=r"agent\(s\) nosuch not installed; installed: "
                                          r".*rpcutil"):
        PluginRegistry.from_entry_points().agents_for(settings)


FACTS_PLUGIN = """
from orch.core.hookspecs import hookimpl


class Source:
    name = "{name}"

    def facts(self):
        return {{"who": "{name}"}}


@hookimpl
def orch_fact_sources():
    return [Source()]


@hookimpl
def orch_cli_commands():
    import click

    return [click.Command("{name}-command")]
"""


def test_fact_sources_keep_their_order_whichever_plugin_was_imported_first(
        site: Site) -> None:
    """Later fact sources win key by key, so their order is the eager one (entry points by
    name) even when a lazy registry imported the later plugin first for another hook."""
    site.install("orch-index-fa", "orch_index_fa", FACTS_PLUGIN.format(name="fa"), "index_fa")
    site.install("orch-index-fz", "orch_index_fz", FACTS_PLUGIN.format(name="fz"), "index_fz")
    eager = [s.name for s in PluginRegistry.from_entry_points().fact_sources(Settings())
             if s.name in ("fa", "fz")]
    assert eager == ["fa", "fz"]
    for name in ("orch_index_fa", "orch_index_fz"):
        sys.modules.pop(name, None)
    lazy = PluginRegistry.from_entry_points()
    assert "fz-command" in command_names(lazy, "fz-command")
    assert "orch_index_fa" not in sys.modules
    assert [s.name for s in lazy.fact_sources(Settings()) if s.name in ("fa", "fz")] == eager
