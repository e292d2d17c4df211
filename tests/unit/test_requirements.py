"""A transport that cannot load: one clear error naming the scheme and the package, exit 2.

The library half checks :mod:`orch.core.requirements` and the registry with a third-party
transport plugin whose library is missing (nothing here gives the built-in kombu plugin a
path of its own). The command-line half runs ``orch`` in a subprocess where an import hook
makes chosen modules uninstalled (``packaging``, ``redis``, ``amqp``), as in the clean
virtualenv of issue 15, and checks exit status 2, the message, and that no traceback is
printed. None of these tests reaches a broker: the check happens before connecting.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
import types
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from orch.cli.main import cli
from orch.core import requirements
from orch.core.config import Settings, load_settings
from orch.core.errors import ConfigError, MissingRequirementError, PluginError
from orch.core.hookspecs import hookimpl
from orch.core.plugins import PluginRegistry
from orch.core.requirements import Requirement
from orch.testing import bare_environment
from orch.transports.kombu import SCHEMES

#: A module name no environment has.
ABSENT = "orch_tests_absent_module_5b1f"


def transport_plugin(scheme: str, needs: list[Any] | None,
                     factory: Callable[[list[str], Settings], Any]) -> types.ModuleType:
    """A third-party transport plugin serving ``scheme``, declaring ``needs`` (if not None)."""
    module = types.ModuleType(f"orch_tests_{scheme}_transport")

    @hookimpl
    def orch_transports() -> Mapping[str, Any]:
        return {scheme: factory}

    module.orch_transports = orch_transports  # type: ignore[attr-defined]
    if needs is not None:
        @hookimpl
        def orch_transport_requirements() -> Mapping[str, Any]:
            return {scheme: needs}

        module.orch_transport_requirements = (  # type: ignore[attr-defined]
            orch_transport_requirements)
    return module


def never_called(urls: list[str], settings: Settings) -> Any:
    raise AssertionError("the factory must not run when a requirement is missing")


def registry_with(plugin: types.ModuleType, name: str = "fakemq") -> PluginRegistry:
    """Every installed plugin (the built-ins included) plus ``plugin``."""
    registry = PluginRegistry.from_entry_points()
    assert registry.register(plugin, name, "orch-fakemq", "1.2.3")
    return registry


def settings_for(broker: str) -> Settings:
    return load_settings(overrides={"broker": broker, "security": "insecure"}, environ={})


# --------------------------------------------------------------------- check()


def test_check_passes_importable_modules() -> None:
    assert requirements.check([Requirement("json", "json"),
                               Requirement("orch.core.errors", "orch")]) == []


def test_check_names_the_missing_module_and_its_package() -> None:
    [unmet] = requirements.check([Requirement("json", "json"),
                                  Requirement(ABSENT, "absent-dist")])
    assert unmet.requirement == Requirement(ABSENT, "absent-dist")
    assert unmet.missing == ABSENT
    assert unmet.reason == f"cannot import {ABSENT} (No module named {ABSENT!r})"


def test_a_module_failing_on_an_already_missing_one_is_not_reported_twice(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kombu.transport.redis without packaging: report packaging, not both."""
    (tmp_path / "orch_tests_wrapper_5b1f.py").write_text(f"import {ABSENT}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    unmet = requirements.check([Requirement(ABSENT, "absent-dist"),
                                Requirement("orch_tests_wrapper_5b1f", "wrapper[extra]")])
    assert [u.requirement.package for u in unmet] == ["absent-dist"]


def test_a_module_failing_for_another_reason_is_reported(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "orch_tests_raises_5b1f.py").write_text("raise RuntimeError('no licence')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    [unmet] = requirements.check([Requirement("orch_tests_raises_5b1f", "raiser")])
    assert unmet.reason == ("importing orch_tests_raises_5b1f failed: "
                            "RuntimeError('no licence')")


def test_install_hint_quotes_extras_and_drops_repeats() -> None:
    assert (requirements.install_hint(["redis", "kombu[redis]", "redis"])
            == "pip install redis 'kombu[redis]'")


# --------------------------------------------------------------------- the registry


def test_missing_requirement_stops_before_the_factory() -> None:
    registry = registry_with(transport_plugin(
        "fakemq", [Requirement("json", "json"), Requirement(ABSENT, "fakemq-client")],
        never_called))
    with pytest.raises(MissingRequirementError) as caught:
        registry.transport_for(settings_for("fakemq://broker.example"))
    assert str(caught.value) == (
        f"the fakemq:// transport (plugin fakemq) cannot load: cannot import {ABSENT} "
        f"(No module named {ABSENT!r}). Install what it needs: pip install fakemq-client")
    assert isinstance(caught.value, PluginError)  # the CLI's usage error: exit 2


def test_present_requirements_reach_the_factory() -> None:
    made: list[list[str]] = []

    def factory(urls: list[str], settings: Settings) -> Any:
        made.append(urls)
        return "transport"

    registry = registry_with(transport_plugin("fakemq", [Requirement("json", "json")], factory))
    assert registry.transport_for(settings_for("fakemq://a")) == "transport"
    assert made == [["fakemq://a"]]


def test_undeclared_import_error_from_a_factory_names_the_module() -> None:
    def factory(urls: list[str], settings: Settings) -> Any:
        __import__(ABSENT)

    registry = registry_with(transport_plugin("fakemq", None, factory))
    with pytest.raises(MissingRequirementError) as caught:
        registry.transport_for(settings_for("fakemq://a"))
    message = str(caught.value)
    assert message.startswith("the fakemq:// transport (plugin fakemq) cannot load: "
                              f"No module named {ABSENT!r}.")
    assert f"install the distribution that provides the Python module {ABSENT!r}" in message


def test_requirement_items_must_be_requirements() -> None:
    registry = registry_with(transport_plugin("fakemq", [("redis", "redis")], never_called))
    with pytest.raises(PluginError, match=r"orch_transport_requirements for fakemq:// "
                                          r"returned .*orch.core.requirements.Requirement"):
        registry.transport_for(settings_for("fakemq://a"))


def test_unknown_scheme_names_it_the_installed_ones_and_broken_plugins() -> None:
    registry = PluginRegistry.from_entry_points()
    registry._broken("stomp", "orch-stomp", "0.1", "cannot import orch_stomp: "
                     "ModuleNotFoundError(\"No module named 'stomp'\")")
    with pytest.raises(ConfigError) as caught:
        registry.transport_for(settings_for("stomp://mq:61613"))
    message = str(caught.value)
    assert message.startswith("no transport for broker URL 'stomp://mq:61613': no installed "
                              "plugin serves stomp://; installed schemes: amqp, amqps, ")
    assert "pip install the distribution that provides stomp://" in message
    assert ("plugins that failed to load (see `orch plugins`): stomp (orch-stomp): "
            "cannot import orch_stomp") in message


def test_url_without_scheme_says_how_to_write_one() -> None:
    with pytest.raises(ConfigError, match=r"broker URL 'mq\.example\.net' has no scheme"):
        PluginRegistry.from_entry_points().transport_for(settings_for("mq.example.net"))


def test_every_builtin_scheme_declares_requirements_that_are_installed() -> None:
    """`pip install orch` serves every built-in scheme (this environment has orch's deps)."""
    statuses = {s.scheme: s for s in requirements.transport_statuses(
        PluginRegistry.from_entry_points())}
    assert set(SCHEMES) <= set(statuses)
    for scheme in SCHEMES:
        assert statuses[scheme].plugin == "kombu"
        assert statuses[scheme].requirements, scheme
        assert statuses[scheme].available, statuses[scheme].unmet
    redis_modules = {r.module for r in statuses["redis"].requirements}
    assert {"redis", "packaging", "kombu.transport.redis"} <= redis_modules


def test_statuses_report_a_third_party_scheme_missing_its_library() -> None:
    registry = registry_with(transport_plugin(
        "fakemq", [Requirement(ABSENT, "fakemq-client")], never_called))
    status = {s.scheme: s for s in requirements.transport_statuses(registry)}["fakemq"]
    assert status.plugin == "fakemq"
    assert not status.available
    assert [u.requirement.package for u in status.unmet] == ["fakemq-client"]


# --------------------------------------------------------------------- CLI, in process


@pytest.fixture
def fake_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[PluginRegistry]:
    """The process-wide registry with a transport plugin whose library is missing."""
    registry = registry_with(transport_plugin(
        "fakemq", [Requirement(ABSENT, "fakemq-client")], never_called))
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield registry
    root.handlers[:] = handlers  # the CLI group points logging at CliRunner's stderr
    root.setLevel(level)


def invoke(registry: PluginRegistry, *args: str) -> Result:
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ORCH_")}
    return CliRunner().invoke(cli, list(args), env=env, obj=registry)


def assert_usage_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        result.exception)
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.output


@pytest.mark.parametrize("command", [["ping"], ["rpc", "rpcutil", "ping"], ["find"]])
def test_client_commands_exit_2_naming_scheme_and_package(
        fake_registry: PluginRegistry, command: list[str]) -> None:
    result = invoke(fake_registry, *command, "--broker", "fakemq://mq", "--security", "insecure")
    assert_usage_error(result, "Error: the fakemq:// transport (plugin fakemq) cannot load",
                       "pip install fakemq-client")


def test_orch_plugins_lists_each_scheme_with_its_needs(fake_registry: PluginRegistry) -> None:
    result = invoke(fake_registry, "plugins")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "Transports (broker URL schemes):" in lines
    rows = {line.split()[0]: line for line in lines if line.startswith("  ")}
    assert rows["fakemq://"].split()[1:3] == ["fakemq", "fakemq-client"]
    assert "MISSING: cannot import" in rows["fakemq://"]
    assert rows["fakemq://"].endswith("pip install fakemq-client")
    assert rows["redis://"].split()[1:] == ["kombu", "redis,", "packaging,", "kombu[redis]",
                                            "available"]
    for scheme in SCHEMES:
        assert rows[f"{scheme}://"].endswith("available"), rows[f"{scheme}://"]


def test_orch_plugins_json_has_transports_per_plugin(fake_registry: PluginRegistry) -> None:
    result = invoke(fake_registry, "plugins", "--json")
    assert result.exit_code == 0, result.output
    by_name = {entry["name"]: entry for entry in json.loads(result.output)}
    assert by_name["fakemq"]["transports"] == [{
        "scheme": "fakemq", "available": False,
        "requires": [{"module": ABSENT, "package": "fakemq-client"}],
        "missing": [{"module": ABSENT, "package": "fakemq-client",
                     "reason": f"cannot import {ABSENT} (No module named {ABSENT!r})"}],
    }]
    kombu_schemes = {t["scheme"]: t for t in by_name["kombu"]["transports"]}
    assert set(kombu_schemes) == set(SCHEMES)
    assert all(t["available"] and not t["missing"] for t in kombu_schemes.values())
    assert by_name["rpcutil"]["transports"] == []


# --------------------------------------------------------------------- CLI, subprocess

#: Runs ``orch`` with the modules named in ORCH_TESTS_UNINSTALLED made unimportable, as if
#: they were not installed: an import hook raises ModuleNotFoundError for them (a ``None``
#: in sys.modules would raise a different error than a real absence does).
UNINSTALLED_ORCH = textwrap.dedent("""
    import os, sys

    BLOCKED = os.environ["ORCH_TESTS_UNINSTALLED"].split(",")

    class Uninstalled:
        def find_spec(self, name, path=None, target=None):
            if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Uninstalled())
    from orch.cli.main import main
    main(sys.argv[1:])
""")


def run_without(modules: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = bare_environment({"ORCH_TESTS_UNINSTALLED": modules})
    return subprocess.run([sys.executable, "-c", UNINSTALLED_ORCH, *args], env=env,
                          capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def assert_one_clear_error(ran: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert ran.returncode == 2, f"exit {ran.returncode}\n{ran.stdout}\n{ran.stderr}"
    assert "Traceback" not in ran.stderr + ran.stdout
    errors = [line for line in ran.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, ran.stderr
    for fragment in fragments:
        assert fragment in errors[0], ran.stderr


REDIS = "redis://127.0.0.1:6379/0"
NO_PACKAGING = ("Error: the redis:// transport (plugin kombu) cannot load: cannot import "
                "packaging (No module named 'packaging'). Install what it needs: "
                "pip install packaging")


def test_client_without_packaging_exits_2_naming_it() -> None:
    """Issue 15: the traceback a clean install printed, as one line instead."""
    ran = run_without("packaging", "ping", "--broker", REDIS, "--security", "insecure")
    assert_one_clear_error(ran, NO_PACKAGING)


def test_rpc_without_redis_exits_2_naming_it() -> None:
    ran = run_without("redis", "rpc", "rpcutil", "ping", "--broker", f"rediss://{REDIS[8:]}",
                      "--security", "insecure")
    assert_one_clear_error(ran, "the rediss:// transport (plugin kombu) cannot load: cannot "
                                "import redis (No module named 'redis')",
                           "pip install redis")


def test_server_without_packaging_exits_2_naming_it() -> None:
    ran = run_without("packaging", "server", "--identity", "n1", "--broker", REDIS,
                      "--security", "insecure")
    assert_one_clear_error(ran, NO_PACKAGING)


def test_server_without_amqp_exits_2_naming_it() -> None:
    ran = run_without("amqp", "server", "--identity", "n1", "--broker",
                      "amqp://guest:guest@127.0.0.1:5672//", "--security", "insecure")
    assert_one_clear_error(ran, "the amqp:// transport (plugin kombu) cannot load: cannot "
                                "import amqp (No module named 'amqp')", "pip install amqp")


def test_server_with_unknown_scheme_exits_2() -> None:
    ran = run_without("", "server", "--identity", "n1", "--broker", "stomp://mq:61613",
                      "--security", "insecure")
    assert_one_clear_error(ran, "no installed plugin serves stomp://")


def test_demo_without_packaging_exits_2_naming_it() -> None:
    ran = run_without("packaging", "demo", "--no-interactive", "--insecure", "--broker", REDIS)
    assert_one_clear_error(ran, NO_PACKAGING)


def test_orch_plugins_without_packaging_shows_redis_missing() -> None:
    ran = run_without("packaging", "plugins")
    assert ran.returncode == 0, ran.stderr
    assert "Traceback" not in ran.stderr
    rows = {line.split()[0]: line for line in ran.stdout.splitlines() if line.startswith("  ")}
    for scheme in ("redis://", "rediss://"):
        assert rows[scheme].endswith("MISSING: cannot import packaging (No module named "
                                     "'packaging'); pip install packaging"), rows[scheme]
    for scheme in ("amqp://", "amqps://", "memory://"):
        assert rows[scheme].endswith("available"), rows[scheme]
