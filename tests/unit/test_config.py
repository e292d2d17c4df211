"""Settings: defaults < config file < ORCH_* environment < command-line flags, and errors that
name the key, the source and a fix."""

from __future__ import annotations

import dataclasses
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from orch.core.config import DEFAULT_BROKER, Settings, load_settings, read_config_file
from orch.core.errors import ConfigError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


# --------------------------------------------------------------------- defaults & precedence


def test_defaults() -> None:
    s = load_settings(environ={})
    assert s.collective == "orch"
    assert s.broker == [DEFAULT_BROKER]
    assert s.facts == []
    assert s.classes is None
    assert s.agents is None
    assert s.workers == 8
    assert s.action_timeout == 60.0
    assert s.timeout is None
    assert s.ttl == 60.0
    assert s.clock_skew == 5.0
    assert s.discovery_timeout == 2.0
    assert s.discovery_window == 0.2
    assert s.discovery_method == "auto"
    assert s.security == "x509"
    assert s.log_level == "info"
    assert s.identity and "." not in s.identity


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    config = write(tmp_path / "orch.yaml", "collective: fromfile\nworkers: 3\nttl: 30\n"
                                           "identity: filenode\n")
    env = {"ORCH_WORKERS": "4", "ORCH_TTL": "40"}
    s = load_settings(config, {"ttl": 50, "identity": None}, environ=env)
    assert s.collective == "fromfile"     # file over default
    assert s.workers == 4                 # env over file
    assert s.ttl == 50.0                  # flag over env
    assert s.identity == "filenode"       # a None flag hides nothing
    assert s.log_level == "info"          # untouched default


def test_config_file_from_environment(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "collective: viaenv\n")
    assert load_settings(environ={"ORCH_CONFIG": config}).collective == "viaenv"


def test_explicit_config_file_wins_over_orch_config(tmp_path: Path) -> None:
    one = write(tmp_path / "one.yaml", "collective: one\n")
    two = write(tmp_path / "two.yaml", "collective: two\n")
    assert load_settings(one, environ={"ORCH_CONFIG": two}).collective == "one"


def test_every_setting_is_read_from_its_environment_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``ORCH_<NAME>`` reaches ``with_values`` for every documented setting."""
    seen: dict[str, dict[str, Any]] = {}

    def record(self: Settings, values: Any, source: str, registry: Any = None) -> Settings:
        seen[source] = dict(values)
        return self

    monkeypatch.setattr(Settings, "with_values", record)
    names = list(Settings.documented())
    load_settings(environ={f"ORCH_{name.upper()}": f"v-{name}" for name in names})
    assert seen["environment"] == {name: f"v-{name}" for name in names}


def test_environment_values_are_converted() -> None:
    values = {
        "identity": "envnode", "collective": "envcoll", "broker": "memory://",
        "facts": "a.yaml", "classes": "/tmp/classes.txt", "agents": "rpcutil",
        "workers": "2", "action_timeout": "9", "timeout": "3", "ttl": "7",
        "clock_skew": "1.5", "discovery_timeout": "4", "discovery_window": "0.1",
        "discovery_method": "inventory", "security": "tls", "log_level": "debug",
    }
    s = load_settings(environ={f"ORCH_{k.upper()}": v for k, v in values.items()})
    assert {k: getattr(s, k) for k in values} == {
        "identity": "envnode", "collective": "envcoll", "broker": ["memory://"],
        "facts": ["a.yaml"], "classes": "/tmp/classes.txt", "agents": ["rpcutil"],
        "workers": 2, "action_timeout": 9.0, "timeout": 3.0, "ttl": 7.0,
        "clock_skew": 1.5, "discovery_timeout": 4.0, "discovery_window": 0.1,
        "discovery_method": "inventory", "security": "tls", "log_level": "debug",
    }


def test_unrelated_environment_is_ignored() -> None:
    s = load_settings(environ={"ORCH_UNKNOWN_THING": "x", "COLLECTIVE": "nope"})
    assert s.collective == "orch"


LAYERS = ("file", "env", "flag")
LAYERED_VALUES = {
    "collective": lambda layer: f"c-{layer}",
    "workers": lambda layer: LAYERS.index(layer) + 11,
    "ttl": lambda layer: float(LAYERS.index(layer) + 21),
}


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(LAYERED_VALUES)),
                       st.sets(st.sampled_from(LAYERS)), max_size=3))
def test_highest_layer_wins(layered: dict[str, set[str]]) -> None:
    """For any choice of the layers that set each key, the highest layer decides."""
    def chosen(layer: str) -> dict[str, Any]:
        return {k: LAYERED_VALUES[k](layer) for k, layers in layered.items() if layer in layers}

    env = {f"ORCH_{k.upper()}": str(v) for k, v in chosen("env").items()}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "orch.yaml"
        config.write_text(yaml.safe_dump(chosen("file")))
        s = load_settings(str(config), chosen("flag"), environ=env)
    for key, value_for in LAYERED_VALUES.items():
        layers = layered.get(key, set())
        expected = value_for(max(layers, key=LAYERS.index)) if layers \
            else getattr(Settings(), key)
        assert getattr(s, key) == expected


def test_highest_layer_wins_through_load_settings(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "workers: 11\nttl: 21\ncollective: c-file\n")
    s = load_settings(config, {"ttl": 23.0}, environ={"ORCH_WORKERS": "12", "ORCH_TTL": "22"})
    assert (s.collective, s.workers, s.ttl) == ("c-file", 12, 23.0)


# --------------------------------------------------------------------- unknown keys


def test_unknown_key_in_file_names_key_file_and_suggestion(tmp_path: Path) -> None:
    config = write(tmp_path / "orch.yaml", "colective: web\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ={})
    message = str(caught.value)
    assert config in message
    assert "unknown setting 'colective'" in message
    assert "did you mean 'collective'?" in message


def test_unknown_key_without_close_match_has_no_suggestion(tmp_path: Path) -> None:
    config = write(tmp_path / "orch.yaml", "zzzzqqq: 1\n")
    with pytest.raises(ConfigError, match="unknown setting 'zzzzqqq'") as caught:
        load_settings(config, environ={})
    assert "did you mean" not in str(caught.value)


def test_unknown_flag_names_command_line() -> None:
    with pytest.raises(ConfigError, match=r"command line: unknown setting 'wrokers' \(did you "
                                          r"mean 'workers'\?\)"):
        load_settings(overrides={"wrokers": 3}, environ={})


# --------------------------------------------------------------------- bad values


@pytest.mark.parametrize(("key", "value"), [
    ("workers", 0), ("workers", -1), ("workers", "many"), ("workers", True), ("workers", None),
    ("workers", [1]), ("ttl", 0), ("ttl", -5.5), ("ttl", "soon"), ("ttl", False),
    ("action_timeout", 0), ("discovery_timeout", "x"), ("discovery_window", -0.1),
    ("timeout", 0), ("timeout", "x"), ("clock_skew", -1),
    ("collective", "bad name"), ("collective", ""), ("collective", 5), ("identity", ".hidden"),
    ("discovery_method", "a/b"), ("security", None),
    ("log_level", "verbose"), ("log_level", "INFO"),
    ("broker", 5), ("broker", [1, 2]), ("broker", {"url": "x"}),
    ("facts", 3), ("classes", 1), ("classes", ["a"]),
])
def test_bad_values_name_key_source_and_expectation(key: str, value: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings().with_values({key: value}, "some.yaml")
    message = str(caught.value)
    assert message.startswith("some.yaml: bad value")
    assert repr(key) in message
    assert "expected" in message


def test_bad_value_in_file_names_file(tmp_path: Path) -> None:
    config = write(tmp_path / "orch.yaml", "workers: lots\n")
    with pytest.raises(ConfigError, match=re.escape(f"{config}: bad value 'lots' for 'workers'")):
        load_settings(config, environ={})


def test_bad_value_in_environment_says_environment() -> None:
    with pytest.raises(ConfigError, match="environment: bad value '-3' for 'ttl'"):
        load_settings(environ={"ORCH_TTL": "-3"})


@pytest.mark.parametrize(("key", "value", "expected"), [
    ("timeout", None, None), ("timeout", "2.5", 2.5), ("clock_skew", 0, 0.0),
    ("clock_skew", 2, 2.0), ("workers", "16", 16), ("ttl", "1e2", 100.0),
    ("classes", "", None), ("classes", None, None), ("agents", "all", None),
    ("agents", "", None), ("agents", None, None), ("agents", ["a", "b"], ["a", "b"]),
    ("facts", "", []),
])
def test_conversions(key: str, value: Any, expected: Any) -> None:
    assert getattr(Settings().with_values({key: value}, "x"), key) == expected


def test_clock_skew_zero_from_environment() -> None:
    """``clock_skew: 0`` works in a file; ``ORCH_CLOCK_SKEW=0`` (text) must work the same."""
    assert load_settings(environ={"ORCH_CLOCK_SKEW": "0"}).clock_skew == 0.0
    assert load_settings(environ={"ORCH_CLOCK_SKEW": "0.0"}).clock_skew == 0.0


# --------------------------------------------------------------------- broker lists


@pytest.mark.parametrize(("value", "expected"), [
    ("amqp://a//", ["amqp://a//"]),
    ("amqp://a//,amqp://b//", ["amqp://a//", "amqp://b//"]),
    (" amqp://a// , amqp://b// ,", ["amqp://a//", "amqp://b//"]),
    (["redis://r:6379/0", "redis://s:6379/0"], ["redis://r:6379/0", "redis://s:6379/0"]),
    ("memory://", ["memory://"]),
])
def test_broker_lists(value: Any, expected: list[str]) -> None:
    assert Settings().with_values({"broker": value}, "x").broker == expected


def test_broker_list_from_yaml_and_environment(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "broker:\n  - amqp://one//\n  - amqp://two//\n")
    assert load_settings(config, environ={}).broker == ["amqp://one//", "amqp://two//"]
    env = {"ORCH_BROKER": "redis://a/0,redis://b/0"}
    assert load_settings(config, environ=env).broker == ["redis://a/0", "redis://b/0"]


def test_facts_list_from_flag() -> None:
    s = load_settings(overrides={"facts": "a.yaml,b.json"}, environ={})
    assert s.facts == ["a.yaml", "b.json"]


# --------------------------------------------------------------------- the file itself


def test_missing_file_names_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=re.escape(f"cannot read config file {missing}: ")) as c:
        load_settings(missing, environ={})
    assert "No such file" in str(c.value)


def test_directory_as_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"cannot read config file {tmp_path}")):
        read_config_file(str(tmp_path))


def test_unreadable_file_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(tmp_path / "secret.yaml", "collective: x\n")

    def denied(self: Path, *args: Any, **kwargs: Any) -> str:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ={})
    assert str(caught.value) == f"cannot read config file {config}: Permission denied"


@pytest.mark.parametrize("text", ["collective: [unclosed\n", "a: b: c\n", "\tkey: x\n",
                                  "key: 'open\n"])
def test_invalid_yaml_names_file(tmp_path: Path, text: str) -> None:
    config = write(tmp_path / "bad.yaml", text)
    with pytest.raises(ConfigError, match=re.escape(f"{config}: not valid YAML")):
        load_settings(config, environ={})


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_non_mapping_yaml_names_file(tmp_path: Path, text: str) -> None:
    config = write(tmp_path / "list.yaml", text)
    with pytest.raises(ConfigError, match=re.escape(f"{config}: must be a mapping")):
        load_settings(config, environ={})


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_empty_file_is_no_settings(tmp_path: Path, text: str) -> None:
    config = write(tmp_path / "empty.yaml", text)
    assert read_config_file(config) == {}
    assert load_settings(config, environ={}).collective == "orch"


def test_non_string_keys_are_reported_as_unknown(tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", "1: 2\n")
    with pytest.raises(ConfigError, match="unknown setting '1'"):
        load_settings(config, environ={})


# --------------------------------------------------------------------- documentation


def test_documented_covers_every_field() -> None:
    documented = Settings.documented()
    assert list(documented) == [f.name for f in dataclasses.fields(Settings)
                                if "convert" in f.metadata]
    for name, doc in documented.items():
        assert doc.strip(), f"setting {name} has no description"


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().workers = 2  # type: ignore[misc]


def test_docs_configuration_mentions_every_setting() -> None:
    if not DOCS.exists():
        pytest.skip(f"{DOCS.relative_to(DOCS.parents[1])} does not exist yet "
                    "(being written concurrently)")
    text = DOCS.read_text()
    missing = [name for name in Settings.documented() if name not in text]
    assert not missing, f"docs/configuration.md does not mention: {', '.join(missing)}"
