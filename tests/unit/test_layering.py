"""The layering rules of docs/architecture.md, enforced by reading every module's imports.

* the core names no concrete plugin: ``orch.core``, the DDL library and the facade import
  only the core;
* a plugin imports only the core, the facade and its own package — never another plugin;
* the CLI only wires: its modules import no plugin;
* contrib distributions import only ``orch.plugin`` from orch.

The tools that build simulated fleets (``orch.demo``, ``orch.sim``, ``orch.testing``) are
listed with the one reason each may reach into a plugin.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

#: Core modules: anything may import them.
CORE = ("orch.core", "orch.ddl.model", "orch.ddl.compile", "orch.ddl.arguments",
        "orch.ddl.help", "orch.ddl.aggregate", "orch.ddl", "orch.plugin",
        # the client-side helpers the facade exports for plugin commands
        "orch.cli.options", "orch.cli.output", "orch.cli.context", "orch.cli.progress",
        "orch.cli.fleetcall")

#: Plugin units: a module may import its own unit, the core and nothing else.
PLUGINS = {
    "kombu": ("orch.transports",),
    "security": ("orch.security", "orch.cli.ca"),  # `orch ca` is the PKI's command
    "filters": ("orch.filters",),
    "ddl": ("orch.ddl.builtin",),
    "rpcutil": ("orch.agents.rpcutil",),
    "external": ("orch.agents.external",),
    "facts": ("orch.facts",),
    "discovery": ("orch.discovery",),
    "commands": ("orch.cli.commands",),
    "runners": ("orch.cli.runners",),
    "plugin-commands": ("orch.cli.plugin",),
    "api": ("orch.api", "orch.cli.api"),  # `orch api` is the HTTP API's command
    # registration, stores, inventory discovery, job history; its commands are its own
    "inventory": ("orch.inventory", "orch.cli.inventory"),
}

#: The CLI's wiring: it may import the core, other CLI wiring and the tools.
CLI = ("orch.cli", "orch.resident")  # orch.resident: the CLI's resident session
TOOLS = ("orch.sim", "orch.demo", "orch.testing", "orch.installcheck", "orch.scaffold")

#: Allowed exceptions, each with its reason.
EXCEPTIONS = {
    # Simulated nodes sign with real x509 keys from a throw-away CA, like real nodes.
    ("orch.demo", "security"), ("orch.sim.pki", "security"), ("orch.testing.fleet", "security"),
    # orch.testing.purge_collective removes the request exchange the kombu transport
    # leaves on RabbitMQ after an integration test; only the transport knows its name.
    ("orch.testing.brokers", "kombu"),
    # orch.testing.servers runs real daemons signed like production, by a throw-away CA.
    ("orch.testing.servers", "security"),
    # `orch plugin new` writes a plugin skeleton from the author kit (orch.scaffold).
    ("orch.cli.plugin", "tools"),
    # The built-in command plugins contribute commands wired in orch.cli (`orch
    # server/demo/sim` from `runners`, apart so that a daemon imports no client code).
    ("orch.cli.commands", "cli"), ("orch.cli.runners", "cli"),
    # `orch demo --api` serves the API in the demo's process (memory:// lives there).
    ("orch.cli.demo", "api"),
}


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _unit(module: str) -> str:
    if module in ("orch", "orch.cli"):  # package markers holding nothing
        return "core"
    for name, prefixes in PLUGINS.items():
        if _within(module, prefixes):
            return name
    if _within(module, CORE):
        return "core"
    if _within(module, TOOLS):
        return "tools"
    if _within(module, CLI):
        return "cli"
    return "other"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, package: str) -> Iterator[str]:
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            for alias in node.names:  # `from orch.cli import output` imports a module
                yield f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def _orch_modules() -> Iterator[tuple[str, Path]]:
    for path in sorted((ROOT / "orch").rglob("*.py")):
        yield _module_name(path, ROOT), path


def _known(name: str) -> bool:
    """Whether ``name`` is a module or package of orch (not an attribute)."""
    base = ROOT / Path(*name.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def _violations() -> list[str]:
    found = []
    for module, path in _orch_modules():
        source = _unit(module)
        for imported in set(_imports(path, module)):
            if not imported.startswith("orch") or not _known(imported):
                continue
            target = _unit(imported)
            if target == "core" or target == source:
                continue
            if (module, target) in EXCEPTIONS or (source, target) in EXCEPTIONS:
                continue
            if source == "cli" and target in ("cli", "tools"):
                continue
            if source == "tools" and target in ("tools", "cli"):
                continue
            found.append(f"{module} ({source}) imports {imported} ({target})")
    return sorted(found)


def test_the_core_and_the_plugins_keep_their_layers() -> None:
    assert _violations() == []


#: The only modules that call ``default_registry()``: entry points, each with its reason.
#: Library code takes the registry as an argument (docs/architecture.md, "Global state").
DEFAULT_REGISTRY_CALLERS = {
    # the `orch` group keeps the registry in the click context; commands read it there
    "orch.cli.context",
    # a plain `orch server` command line, served without click (an idle daemon's memory)
    "orch.cli.serve",
    # `Client(settings)` and `load_settings()` for an application that starts there
    "orch.core.client", "orch.core.config",
    # `Simulation(config)` for programs and tests; a sim worker process's start
    "orch.sim.simulation", "orch.sim.worker",
    # the author kit's fixtures
    "orch.testing.fleet",
}


def test_only_entry_points_fall_back_to_the_process_registry() -> None:
    callers = set()
    for module, path in _orch_modules():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "default_registry":
                callers.add(module)
    assert callers == DEFAULT_REGISTRY_CALLERS


def test_every_entry_point_is_a_known_plugin_unit() -> None:
    import configparser

    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    for line in config["options.entry_points"]["orch"].strip().splitlines():
        name, _, target = (part.strip() for part in line.partition("="))
        assert _unit(target.split(":")[0]) not in ("core", "cli", "tools", "other"), name


@pytest.mark.parametrize("distribution", sorted(
    p.parent.name for p in (ROOT / "contrib").glob("*/setup.cfg")))
def test_contrib_imports_only_the_facade(distribution: str) -> None:
    root = ROOT / "contrib" / distribution
    bad = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if relative.parts[0] in ("tests", "bench", "build") or path.name == "setup.py":
            continue
        for imported in _imports(path, ""):
            if imported.split(".")[0] == "orch" and not _within(imported, ("orch.plugin",)) \
                    and imported != "orch":
                bad.append(f"{relative}: {imported}")
    assert bad == []


def test_importing_the_hook_marker_imports_nothing_else() -> None:
    import subprocess
    import sys

    code = ("import sys; from orch.plugin import hookimpl; "
            "print(sorted(m for m in sys.modules if m.startswith('orch')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['orch', 'orch.core', 'orch.core.markers', 'orch.plugin']"
