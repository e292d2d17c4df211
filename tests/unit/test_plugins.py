"""Plugin discovery and validation: entry points, broken plugins, bad hooks, name clashes.

The first test installs the real test distribution ``tests/plugins/orch_testplugin`` into a
temporary virtual environment and checks that orch finds it there through the ``orch``
entry-point group. It is the slowest test of the unit suite (about a second: a venv without
its own pip, then one local ``pip install`` built by the plugin's in-tree backend).
"""

from __future__ import annotations

import json
import shutil
import site
import subprocess
import sys
import textwrap
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from orch.cli.main import cli
from orch.core.agent import Agent
from orch.core.config import Settings
from orch.core.errors import PluginError
from orch.core.hookspecs import hookimpl
from orch.core.plugins import PluginRegistry

PLUGIN_SOURCE = Path(__file__).resolve().parents[1] / "plugins" / "orch_testplugin"

BUILTIN_HOOKS = {
    "kombu": ("orch_transports",),
    "rpcutil": ("orch_agent_names", "orch_agents"),
    "filters": ("orch_filter_functions", "orch_filter_kinds"),
    "facts": ("orch_fact_sources",),
    "discovery": ("orch_discovery_methods",),
    "insecure": ("orch_security_providers",),
    "commands": ("orch_cli_commands",),
}


def make_plugin(name: str, **hooks: Callable[..., Any]) -> types.ModuleType:
    """A module object whose attributes are the given hook implementations."""
    module = types.ModuleType(name)
    for hook_name, function in hooks.items():
        setattr(module, hook_name, function)
    return module


def agent_class(agent_name: str) -> type[Agent]:
    return type(f"Agent_{agent_name}", (Agent,), {"name": agent_name})


def agents_plugin(module_name: str, *classes: type[Agent]) -> types.ModuleType:
    @hookimpl
    def orch_agents() -> Iterable[type[Agent]]:
        return list(classes)

    return make_plugin(module_name, orch_agents=orch_agents)


# --------------------------------------------------------------------- installed for real


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def _run(args: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=120, **kwargs
    )


def _see_our_site_packages(python: Path) -> None:
    """Make the test process's site-packages visible in the venv at ``python``.

    ``--system-site-packages`` reaches the *base* interpreter's site-packages. When the tests
    themselves run inside a virtualenv (where orch is installed), add that one too, with its
    ``.pth`` files (an editable orch install is one).
    """
    if sys.prefix == sys.base_prefix:
        return
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    assert purelib.returncode == 0, purelib.stderr
    ours = [d for d in site.getsitepackages() if Path(d).is_dir()]
    line = "import site; " + "; ".join(f"site.addsitedir({d!r})" for d in ours)
    Path(purelib.stdout.strip(), "_orch_tests_parent_env.pth").write_text(line + "\n")


def _make_venv(venv: Path, *options: str) -> Path:
    created = _run([sys.executable, "-m", "venv", "--system-site-packages", *options, venv])
    assert created.returncode == 0, created.stderr
    python = _venv_python(venv)
    _see_our_site_packages(python)
    return python


@pytest.fixture(scope="module")
def plugin_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv seeing the system site-packages (so orch), with orch-testplugin installed."""
    base = tmp_path_factory.mktemp("plugin-venv")
    source = base / "orch_testplugin"
    shutil.copytree(PLUGIN_SOURCE, source, ignore=shutil.ignore_patterns("__pycache__"))
    venv = base / "venv"
    # Without its own pip the venv is made in a fraction of a second; the outer pip is
    # importable through the system site-packages and installs into the venv (sys.prefix).
    python = _make_venv(venv, "--without-pip")
    if _run([python, "-m", "pip", "--version"]).returncode != 0:
        python = _make_venv(venv, "--clear")
    found = _run([python, "-c", "import orch"])
    assert found.returncode == 0, f"orch is not importable in the test venv: {found.stderr}"
    installed = _run([python, "-m", "pip", "install", "--no-deps", "--no-build-isolation",
                      "--no-input", "--disable-pip-version-check", source])
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return venv


def test_installed_plugin_is_discovered_in_a_temp_venv(plugin_venv: Path) -> None:
    """(slow-ish) A distribution with an ``orch`` entry point is loaded with its metadata."""
    snippet = textwrap.dedent("""
        import json
        from orch.core.plugins import PluginRegistry

        registry = PluginRegistry.from_entry_points()
        info = registry.infos["testplugin"]
        greeter = registry.agents()["greeter"]
        ddl = greeter.ddl()
        print(json.dumps({
            "info": [info.name, info.distribution, info.version, list(info.hooks), info.error],
            "names": sorted(registry.infos),
            "agents": sorted(registry.agents()),
            "functions": sorted(registry.filter_functions()),
            "ddl_actions": sorted(ddl.actions),
            "ddl_timeout": ddl.timeout,
            "greet_inputs": sorted(ddl.actions["greet"].inputs),
        }))
    """)
    ran = _run([_venv_python(plugin_venv), "-c", snippet])
    assert ran.returncode == 0, ran.stderr
    found = json.loads(ran.stdout)
    assert found["info"] == [
        "testplugin", "orch-testplugin", "0.3.1", ["orch_agents", "orch_filter_functions"],
        None,
    ]
    assert set(BUILTIN_HOOKS) | {"testplugin"} <= set(found["names"])
    assert {"greeter", "rpcutil"} <= set(found["agents"])
    assert "greeting_length" in found["functions"]
    # The DDL was read from the installed package's data, next to its module.
    assert found["ddl_actions"] == ["greet"]
    assert found["ddl_timeout"] == 3.0
    assert found["greet_inputs"] == ["greeting", "name"]


def test_installed_plugin_shows_in_orch_plugins_json(plugin_venv: Path) -> None:
    ran = _run([_venv_python(plugin_venv), "-c",
                "from orch.cli.main import main; main(['plugins', '--json'])"])
    assert ran.returncode == 0, ran.stderr
    by_name = {entry["name"]: entry for entry in json.loads(ran.stdout)}
    assert by_name["testplugin"] == {
        "name": "testplugin",
        "distribution": "orch-testplugin",
        "version": "0.3.1",
        "hooks": ["orch_agents", "orch_filter_functions"],
        "error": None,
        "transports": [],
    }
    assert by_name["rpcutil"]["hooks"] == ["orch_agent_names", "orch_agents"]


def test_installed_plugin_agent_help_comes_from_its_ddl(plugin_venv: Path) -> None:
    ran = _run([_venv_python(plugin_venv), "-c",
                "from orch.cli.main import main; main(['rpc', 'greeter', 'greet', '--help'])"])
    assert ran.returncode == 0, ran.stderr
    assert "Usage: orch rpc greeter greet name=VALUE [greeting=VALUE]" in ran.stdout
    assert "default 'hello'" in ran.stdout
    assert "message [Message]" in ran.stdout


# --------------------------------------------------------------------- registering objects


def test_register_module_object_records_hooks_and_contributes() -> None:
    hello = agent_class("hello")

    @hookimpl
    def orch_agents() -> Iterable[type[Agent]]:
        return [hello]

    @hookimpl
    def orch_filter_functions() -> Mapping[str, Callable[..., Any]]:
        return {"answer": lambda node: 42}

    registry = PluginRegistry()
    module = make_plugin("hello_plugin", orch_agents=orch_agents,
                         orch_filter_functions=orch_filter_functions)
    assert registry.register(module, "hello", "hello-dist", "1.2.3") is True
    info = registry.infos["hello"]
    assert (info.name, info.distribution, info.version, info.error) == (
        "hello", "hello-dist", "1.2.3", None)
    assert info.hooks == ("orch_agents", "orch_filter_functions")
    assert registry.agents() == {"hello": hello}
    assert registry.filter_functions()["answer"](None) == 42


def test_register_same_name_twice_is_rejected_and_first_kept() -> None:
    registry = PluginRegistry()
    first = agents_plugin("first", agent_class("one"))
    second = agents_plugin("second", agent_class("two"))
    assert registry.register(first, "dup")
    assert not registry.register(second, "dup")
    assert "duplicate plugin name 'dup'" in (registry.infos["dup"].error or "")
    assert sorted(registry.agents()) == ["one"]


def test_bad_hook_signature_is_rejected_with_clear_message() -> None:
    @hookimpl
    def orch_agents(unexpected: str) -> Iterable[type[Agent]]:
        return []

    registry = PluginRegistry()
    assert registry.register(make_plugin("bad_sig", orch_agents=orch_agents), "badsig") is False
    error = registry.infos["badsig"].error or ""
    assert error.startswith("invalid hook implementation")
    assert "orch_agents" in error
    assert "unexpected" in error
    assert registry.infos["badsig"].hooks == ()
    assert registry.agents() == {}


def test_rejected_plugin_contributes_nothing_even_from_its_valid_hooks() -> None:
    """A plugin refused for one bad hook must not leave its other hooks registered.

    pluggy registers hook implementations one by one (alphabetically) and raises on the
    first invalid one, so ``orch_agents`` below is already in place when ``orch_transports``
    fails validation.
    """
    half = agent_class("half")

    @hookimpl
    def orch_agents() -> Iterable[type[Agent]]:
        return [half]

    @hookimpl
    def orch_transports(bogus: str) -> Mapping[str, Any]:
        return {}

    registry = PluginRegistry()
    plugin = make_plugin("half_plugin", orch_agents=orch_agents, orch_transports=orch_transports)
    assert registry.register(plugin, "half") is False
    assert "bogus" in (registry.infos["half"].error or "")
    assert "half" not in registry.agents()
    assert registry.manager.get_plugin("half") is None


def test_unknown_orch_hook_is_rejected() -> None:
    @hookimpl
    def orch_agentz() -> Iterable[type[Agent]]:
        return []

    @hookimpl
    def orch_agents() -> Iterable[type[Agent]]:
        return [agent_class("typo")]

    registry = PluginRegistry()
    plugin = make_plugin("typo_plugin", orch_agentz=orch_agentz, orch_agents=orch_agents)
    assert registry.register(plugin, "typo") is False
    error = registry.infos["typo"].error or ""
    assert "unknown hook(s) orch_agentz" in error
    assert "orch.core.hookspecs" in error
    # Nothing of the rejected plugin stays registered.
    assert registry.agents() == {}
    assert registry.manager.get_plugin("typo") is None


def test_two_plugins_claiming_one_agent_name() -> None:
    registry = PluginRegistry()
    assert registry.register(agents_plugin("p1", agent_class("deploy")), "p1")
    assert registry.register(agents_plugin("p2", agent_class("deploy")), "p2")
    with pytest.raises(PluginError, match=r"agent 'deploy'") as caught:
        registry.agents()
    assert "orch plugins" in str(caught.value)


def test_same_agent_class_from_two_plugins_is_not_a_clash() -> None:
    shared = agent_class("shared")
    registry = PluginRegistry()
    registry.register(agents_plugin("p1", shared), "p1")
    registry.register(agents_plugin("p2", shared), "p2")
    assert registry.agents() == {"shared": shared}


def test_agents_for_names_missing_agents() -> None:
    registry = PluginRegistry()
    registry.register(agents_plugin("p", agent_class("present")), "p")
    assert list(registry.agents_for(Settings(agents=["present"]))) == ["present"]
    with pytest.raises(PluginError, match="absent"):
        registry.agents_for(Settings(agents=["present", "absent"]))


# --------------------------------------------------------------------- entry points


@dataclass
class FakeDist:
    name: str
    version: str


@dataclass
class FakeEntryPoint:
    """Enough of :class:`importlib.metadata.EntryPoint` for ``from_entry_points``."""

    name: str
    value: str
    loader: Callable[[], object]
    dist: FakeDist | None = None
    group: str = "orch"

    def load(self) -> object:
        return self.loader()


def _raise_import_error() -> object:
    raise ImportError("No module named 'requests_but_misspelled'")


def _interrupted_in_set_name() -> object:
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt as exc:  # what Python does to Ctrl-C inside __set_name__
        raise RuntimeError("Error calling __set_name__ on 'Field' instance") from exc


def test_ctrl_c_while_a_plugin_imports_is_an_interrupt_not_a_broken_plugin(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fakes = [FakeEntryPoint("slow", "slow_pkg", _interrupted_in_set_name,
                            FakeDist("slow-dist", "1.0"))]
    monkeypatch.setenv("ORCH_CACHE_DIR", "off")
    monkeypatch.setattr(metadata, "entry_points", lambda group=None, **_: list(fakes))
    with pytest.raises(KeyboardInterrupt):
        PluginRegistry.from_entry_points().infos  # noqa: B018 - loading them is the point


def test_broken_entry_point_is_recorded_and_others_still_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    good = agents_plugin("good_plugin", agent_class("good"))
    fakes = [
        FakeEntryPoint("zbroken", "broken_pkg.plugin", _raise_import_error,
                       FakeDist("broken-dist", "9.9")),
        FakeEntryPoint("agood", "good_pkg", lambda: good, FakeDist("good-dist", "1.0")),
        FakeEntryPoint("nodist", "nodist_pkg", lambda: agents_plugin("nd", agent_class("nd"))),
    ]
    seen_groups: list[str | None] = []

    def fake_entry_points(group: str | None = None, **_: Any) -> list[FakeEntryPoint]:
        seen_groups.append(group)
        return list(fakes)

    monkeypatch.setenv("ORCH_CACHE_DIR", "off")  # scan the (fake) metadata, not the index
    monkeypatch.setattr(metadata, "entry_points", fake_entry_points)
    registry = PluginRegistry.from_entry_points()
    assert seen_groups == ["orch"]

    broken = registry.infos["zbroken"]
    assert (broken.distribution, broken.version, broken.hooks) == ("broken-dist", "9.9", ())
    assert broken.error is not None
    assert "broken_pkg.plugin" in broken.error
    assert "requests_but_misspelled" in broken.error

    assert registry.infos["agood"].error is None
    assert registry.infos["agood"].hooks == ("orch_agents",)
    assert (registry.infos["nodist"].distribution, registry.infos["nodist"].version) == ("?", "?")
    assert sorted(registry.agents()) == ["good", "nd"]


def test_entry_point_whose_module_raises_at_import(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "orch_exploding_plugin.py").write_text("raise RuntimeError('kaboom at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    real = metadata.EntryPoint(name="exploding", value="orch_exploding_plugin", group="orch")
    monkeypatch.setenv("ORCH_CACHE_DIR", "off")
    monkeypatch.setattr(metadata, "entry_points", lambda group=None, **_: [real])
    registry = PluginRegistry.from_entry_points()
    error = registry.infos["exploding"].error or ""
    assert "cannot import orch_exploding_plugin" in error
    assert "kaboom at import" in error


def test_default_entry_points_load_every_builtin_cleanly() -> None:
    registry = PluginRegistry.from_entry_points()
    for name, hooks in BUILTIN_HOOKS.items():
        info = registry.infos[name]
        assert info.error is None, info.error
        assert set(hooks) <= set(info.hooks)
        assert info.distribution == "orch"


# --------------------------------------------------------------------- orch plugins


def test_orch_plugins_lists_builtins_with_hooks() -> None:
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    for name, hooks in BUILTIN_HOOKS.items():
        assert name in lines, result.stdout
        assert "orch" in lines[name]
        assert all(hook in lines[name] for hook in hooks)


def test_orch_plugins_json_lists_builtins() -> None:
    result = CliRunner().invoke(cli, ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    by_name = {entry["name"]: entry for entry in json.loads(result.stdout)}
    for name, hooks in BUILTIN_HOOKS.items():
        assert set(hooks) <= set(by_name[name]["hooks"])
        assert by_name[name]["error"] is None
        assert by_name[name]["distribution"] == "orch"


def test_orch_plugins_shows_broken_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = PluginRegistry.from_entry_points()
    registry._broken("ghost", "ghost-dist", "0.0.1", "cannot import ghost: boom")
    result = CliRunner().invoke(cli, ["plugins"], obj=registry)
    assert result.exit_code == 0, result.output
    ghost = next(line for line in result.stdout.splitlines() if line.startswith("ghost"))
    assert "ghost-dist 0.0.1" in ghost
    assert "BROKEN: cannot import ghost: boom" in ghost


# -- hook contract details (issue 9, item 7) -----------------------------------------------


def _command_plugin(command_name: str) -> object:
    import click as click_module

    class CommandPlugin:
        @hookimpl
        def orch_cli_commands(self) -> list[click_module.Command]:
            return [click_module.Command(command_name, callback=lambda: None)]

    return CommandPlugin()


def test_a_command_name_claimed_twice_is_an_error() -> None:
    registry = PluginRegistry()
    assert registry.register(_command_plugin("hello"), "one")
    assert registry.register(_command_plugin("hello"), "two")
    with pytest.raises(PluginError, match="two plugins provide the command 'hello'"):
        registry.cli_commands()
    result = CliRunner().invoke(cli, ["hello"], obj=registry)
    assert result.exit_code == 2
    assert "two plugins provide the command 'hello'" in result.output
    assert "Traceback" not in result.output


def test_orch_reload_is_a_notification() -> None:
    calls: list[str] = []

    class Broken:
        @hookimpl
        def orch_reload(self, settings: Settings) -> object:
            calls.append("broken")
            raise RuntimeError("boom")

    class Fine:
        @hookimpl
        def orch_reload(self) -> object:
            calls.append("fine")
            return "ignored"

    registry = PluginRegistry()
    assert registry.register(Broken(), "broken")
    assert registry.register(Fine(), "fine")
    assert registry.notify_reload(Settings()) is None  # type: ignore[func-returns-value]
    assert calls == ["broken", "fine"]
