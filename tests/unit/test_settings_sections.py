"""Plugin settings sections (``orch_settings``): declared, layered, checked, and the old
top-level names of the settings the built-in plugins took over still work."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from orch.core.config import Settings, load_settings
from orch.core.errors import ConfigError, PluginError
from orch.core.plugins import PluginRegistry
from orch.plugin import convert, hookimpl, setting, setting_group


@dataclass(frozen=True)
class HelloSettings:
    greeting: str = setting("hello", convert.string, "What to say.")
    times: int = setting(1, convert.positive(int), "How often.", aliases=("hello_times",))
    paths: Mapping[str, str] = setting_group(("inbox", "outbox"), convert.optional_path,
                                             "Where letters go.")


class HelloPlugin:
    @hookimpl
    def orch_settings(self) -> Mapping[str, type]:
        return {"hello": HelloSettings}


@pytest.fixture
def registry() -> PluginRegistry:
    registry = PluginRegistry()
    assert registry.register(HelloPlugin(), "hello")
    return registry


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_defaults_when_the_section_is_absent(registry: PluginRegistry) -> None:
    section = load_settings(environ={}, registry=registry).section("hello", HelloSettings)
    assert section == HelloSettings()
    assert (section.greeting, section.times, section.paths) == ("hello", 1, {})


def test_file_then_environment_then_flags(registry: PluginRegistry, tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml",
                   "plugins:\n  hello:\n    greeting: hi\n    times: 2\n    inbox: /in\n")
    from_file = load_settings(config, environ={}, registry=registry)
    assert from_file.section("hello", HelloSettings) == HelloSettings(
        "hi", 2, {"inbox": "/in"})
    env = {"ORCH_HELLO_TIMES": "3", "ORCH_HELLO_GREETING": "hey"}
    from_env = load_settings(config, environ=env, registry=registry)
    assert from_env.section("hello", HelloSettings).times == 3
    assert from_env.section("hello", HelloSettings).greeting == "hey"
    flags = load_settings(config, {"hello.times": 4}, environ=env, registry=registry)
    assert flags.section("hello", HelloSettings).times == 4
    assert flags.section("hello", HelloSettings).greeting == "hey"


def test_a_top_level_alias_works_in_file_environment_and_flags(
    registry: PluginRegistry, tmp_path: Path
) -> None:
    config = write(tmp_path / "c.yaml", "hello_times: 5\n")
    assert load_settings(config, environ={}, registry=registry).section(
        "hello", HelloSettings).times == 5
    assert load_settings(environ={"ORCH_HELLO_TIMES": "6"}, registry=registry).section(
        "hello", HelloSettings).times == 6
    assert load_settings(overrides={"hello_times": 7}, environ={}, registry=registry).section(
        "hello", HelloSettings).times == 7


def test_unknown_key_names_its_source_and_suggests(
    registry: PluginRegistry, tmp_path: Path
) -> None:
    config = write(tmp_path / "c.yaml", "plugins:\n  hello:\n    greting: hi\n")
    settings = load_settings(config, environ={}, registry=registry)
    with pytest.raises(ConfigError, match=rf"{config}: unknown setting "
                                          r"'plugins.hello.greting' \(did you mean 'greeting'"):
        settings.section("hello", HelloSettings)
    with pytest.raises(ConfigError, match=r"plugins\.hello\.greting"):
        registry.check_settings(settings)


def test_bad_value_names_key_value_and_expectation(registry: PluginRegistry) -> None:
    settings = load_settings(environ={"ORCH_HELLO_TIMES": "-1"}, registry=registry)
    with pytest.raises(ConfigError, match=r"environment: bad value '-1' for "
                                          r"'plugins.hello.times': expected a positive int"):
        settings.section("hello", HelloSettings)


def test_unknown_top_level_key_suggests_an_alias(registry: PluginRegistry) -> None:
    with pytest.raises(ConfigError, match=r"unknown setting 'hello_time' "
                                          r"\(did you mean 'hello_times'\?\)"):
        load_settings(overrides={"hello_time": 1}, environ={}, registry=registry)


def test_two_plugins_claiming_one_alias_is_an_error(registry: PluginRegistry) -> None:
    @dataclass(frozen=True)
    class Other:
        times: int = setting(1, convert.positive(int), "Also how often.",
                             aliases=("hello_times",))

    class OtherPlugin:
        @hookimpl
        def orch_settings(self) -> Mapping[str, type]:
            return {"other": Other}

    assert registry.register(OtherPlugin(), "other")
    with pytest.raises(PluginError, match="both claim the top-level setting 'hello_times'"):
        registry.settings_sections()


def test_an_alias_may_not_shadow_a_core_setting() -> None:
    @dataclass(frozen=True)
    class Greedy:
        workers: int = setting(1, convert.positive(int), "Mine.", aliases=("workers",))

    class GreedyPlugin:
        @hookimpl
        def orch_settings(self) -> Mapping[str, type]:
            return {"greedy": Greedy}

    registry = PluginRegistry()
    assert registry.register(GreedyPlugin(), "greedy")
    with pytest.raises(PluginError, match="one of orch's own settings"):
        registry.setting_aliases()


# -- the built-in plugins' sections: a user's existing config still loads ------------------


LEGACY = """\
policy_dir: /etc/orch/policies
policy_default: allow
cert_cache: "off"
client_certnames: ["*.users"]
agents_dir: [/opt/agents]
audit_log: /var/log/orch/audit.log
"""


def test_an_existing_config_file_still_loads(tmp_path: Path) -> None:
    from orch.agents.external import ExternalSettings
    from orch.security.actionpolicy import ActionPolicySettings
    from orch.security.x509_settings import X509Settings

    settings = load_settings(write(tmp_path / "old.yaml", LEGACY), environ={})
    assert settings.section("actionpolicy", ActionPolicySettings) == ActionPolicySettings(
        "/etc/orch/policies", "allow")
    x509 = settings.section("x509", X509Settings)
    assert (x509.cert_cache, x509.client_certnames) == ("off", ["*.users"])
    assert settings.section("external", ExternalSettings).agents_dir == ["/opt/agents"]
    assert settings.audit_log == "/var/log/orch/audit.log"


def test_existing_environment_variables_still_work() -> None:
    from orch.security.actionpolicy import ActionPolicySettings

    settings = load_settings(environ={"ORCH_POLICY_DIR": "/p", "ORCH_POLICY_DEFAULT": "allow"})
    assert settings.section("actionpolicy", ActionPolicySettings) == ActionPolicySettings(
        "/p", "allow")


def test_a_bad_legacy_value_is_still_a_clear_error(tmp_path: Path) -> None:
    from orch.security.actionpolicy import ActionPolicySettings

    settings = load_settings(write(tmp_path / "c.yaml", "policy_default: maybe\n"), environ={})
    with pytest.raises(ConfigError, match=r"bad value 'maybe' for "
                                          r"'plugins.actionpolicy.policy_default'"):
        settings.section("actionpolicy", ActionPolicySettings)


def test_the_server_does_not_warn_about_policy_dir_itself() -> None:
    import inspect

    from orch.core import server

    assert "policy_dir" not in inspect.getsource(server)


def test_sections_are_cached_per_settings_object() -> None:
    from orch.security.actionpolicy import ActionPolicySettings

    settings = Settings()
    first = settings.section("actionpolicy", ActionPolicySettings)
    assert settings.section("actionpolicy", ActionPolicySettings) is first


def test_configuration_md_tables_match_the_declarations() -> None:
    """docs/configuration.md's settings tables (orch's own and the built-in plugins'
    sections) are generated; regenerate them with ``python -m orch.core.settingsdoc
    docs/configuration.md`` after changing a declaration."""
    from orch.core import settingsdoc

    doc = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    text = doc.read_text()
    assert settingsdoc.CORE_BEGIN in text and settingsdoc.BEGIN in text
    assert settingsdoc.generate(text) == text
